import { describe, expect, it } from 'vitest';

import {
  firstLine,
  formatTime,
  newestFirst,
  oneLine,
  summarizeEvent
} from '../format';

/** Shorthand for the part of an event `summarizeEvent` reads. */
function summary(kind: string, payload: { [key: string]: unknown } | null) {
  return summarizeEvent({ kind, payload });
}

const XSS = '<img src=x onerror=alert(1)>';

describe('oneLine', () => {
  it('collapses every kind of whitespace run into one space', () => {
    expect(oneLine('a\n\nb\tc\r\nd    e')).toBe('a b c d e');
  });

  it('trims both ends', () => {
    expect(oneLine('  \n\t x \n ')).toBe('x');
  });

  it('turns empty and blank text into the empty string', () => {
    expect(oneLine('')).toBe('');
    expect(oneLine(' \n\t\r ')).toBe('');
  });

  it('treats Unicode line and paragraph separators and NBSP as whitespace', () => {
    expect(oneLine('a\u2028b\u2029c\u00a0d\u3000e\ufefff')).toBe('a b c d e f');
  });

  it('keeps characters that are not whitespace, even invisible ones', () => {
    // Zero-width space and joiner, an RTL override, a combining accent.
    const text = 'a\u200bb\u200dc\u202ed e\u0301';
    expect(oneLine(text)).toBe(text);
  });

  it('leaves markup and entities alone: escaping is React’s job', () => {
    expect(oneLine(`${XSS}\n&amp; &lt;`)).toBe(`${XSS} &amp; &lt;`);
  });
});

describe('firstLine', () => {
  it('returns the first line that is not blank, trimmed', () => {
    expect(firstLine('\n   \n\t\n  import os  \nprint(1)')).toBe('import os');
  });

  it('splits Windows line endings', () => {
    expect(firstLine('\r\n\r\nx = 1\r\ny = 2')).toBe('x = 1');
  });

  it('returns the empty string for empty or blank code', () => {
    expect(firstLine('')).toBe('');
    expect(firstLine('\n \n\t\n')).toBe('');
  });

  it('returns a single line unchanged apart from trimming', () => {
    expect(firstLine('  %%time  ')).toBe('%%time');
  });
});

describe('summarizeEvent', () => {
  describe('cells', () => {
    it('shows the first non-blank line of any cell.* event', () => {
      const code = '\n# load\nimport pandas as pd\n';
      expect(summary('cell.requested', { code })).toBe('# load');
      expect(summary('cell.executed', { code })).toBe('# load');
    });

    it('falls back to the kind when the code is missing, blank or not text', () => {
      expect(summary('cell.executed', {})).toBe('cell.executed');
      expect(summary('cell.executed', { code: null })).toBe('cell.executed');
      expect(summary('cell.executed', { code: '  \n \n' })).toBe(
        'cell.executed'
      );
      expect(summary('cell.executed', { code: ['x = 1'] })).toBe(
        'cell.executed'
      );
      expect(summary('cell.executed', { code: { text: 'x' } })).toBe(
        'cell.executed'
      );
    });

    it('shows a number or boolean as text', () => {
      expect(summary('cell.executed', { code: 42 })).toBe('42');
      expect(summary('cell.executed', { code: false })).toBe('false');
    });

    it('only matches the "cell." prefix, not a kind that merely starts alike', () => {
      expect(summary('cells', { code: 'x = 1' })).toBe('cells');
      expect(summary('cell', { code: 'x = 1' })).toBe('cell');
    });
  });

  describe('operations', () => {
    it('shows an SQL statement on one line', () => {
      expect(
        summary('op.sql', {
          statement: 'SELECT *\n  FROM users\n WHERE id = 1'
        })
      ).toBe('SELECT * FROM users WHERE id = 1');
    });

    it('shows HTTP calls as "METHOD url → status"', () => {
      expect(
        summary('op.http', {
          method: 'GET',
          url: 'https://example.org/a?b=c&d=e',
          status: 200
        })
      ).toBe('GET https://example.org/a?b=c&d=e → 200');
    });

    it('shows "?" for an HTTP status that is missing or not a scalar', () => {
      expect(summary('op.http', { method: 'POST', url: '/x' })).toBe(
        'POST /x → ?'
      );
      expect(
        summary('op.http', { method: 'POST', url: '/x', status: null })
      ).toBe('POST /x → ?');
      expect(
        summary('op.http', { method: 'POST', url: '/x', status: { c: 1 } })
      ).toBe('POST /x → ?');
    });

    it('keeps an HTTP summary with only the method or only the URL', () => {
      expect(summary('op.http', { method: 'DELETE', status: 204 })).toBe(
        'DELETE → 204'
      );
      expect(summary('op.http', { url: 'https://a.b/', status: '503' })).toBe(
        'https://a.b/ → 503'
      );
      expect(summary('op.http', { method: null, url: 7 })).toBe('7 → ?');
    });

    it('falls back to the kind for HTTP without method and URL', () => {
      expect(summary('op.http', { status: 200 })).toBe('op.http');
      expect(summary('op.http', { method: null, url: ['/x'] })).toBe('op.http');
    });

    it('shows a shell command on one line', () => {
      expect(summary('op.shell', { command: 'ls -la \\\n  /tmp' })).toBe(
        'ls -la \\ /tmp'
      );
    });

    it('falls back to the kind when the expected field was withheld', () => {
      // Masking may drop a field or replace the whole payload.
      expect(summary('op.sql', { statement_hash: 'abc' })).toBe('op.sql');
      expect(summary('op.shell', {})).toBe('op.shell');
      expect(summary('op.sql', null)).toBe('op.sql');
      expect(summary('cell.executed', null)).toBe('cell.executed');
    });

    it('does not read another kind’s field', () => {
      expect(summary('op.sql', { command: 'rm -rf /', code: 'x' })).toBe(
        'op.sql'
      );
      expect(summary('op.shell', { statement: 'SELECT 1' })).toBe('op.shell');
    });
  });

  it('shows the kind of any other event, whatever its payload', () => {
    expect(summary('kernel.started', { code: 'x = 1' })).toBe('kernel.started');
    expect(summary('trace.ended', null)).toBe('trace.ended');
  });

  it('returns markup and entities verbatim, for React to escape', () => {
    expect(summary('cell.executed', { code: `${XSS}\nmore` })).toBe(XSS);
    expect(summary('op.sql', { statement: "SELECT '&lt;b&gt;'" })).toBe(
      "SELECT '&lt;b&gt;'"
    );
    expect(summary(XSS, null)).toBe(XSS);
  });

  it('keeps non-ASCII text intact', () => {
    const code = 'print("héllo wörld — 日本語 🎉 e\u0301")';
    expect(summary('cell.executed', { code })).toBe(code);
  });

  describe('length', () => {
    it('keeps a summary of exactly 240 characters whole', () => {
      const code = 'x'.repeat(240);
      expect(summary('cell.executed', { code })).toBe(code);
    });

    it('cuts a longer summary to 240 characters ending in an ellipsis', () => {
      const result = summary('cell.executed', { code: 'y'.repeat(241) });
      expect(result).toHaveLength(240);
      expect(result).toBe(`${'y'.repeat(239)}…`);
    });

    it('cuts a huge statement without choking on it', () => {
      const statement = `SELECT ${'col, '.repeat(250_000)}1`; // ~1 MB
      const result = summary('op.sql', { statement });
      expect(result).toHaveLength(240);
      expect(result.startsWith('SELECT col, col,')).toBe(true);
      expect(result.endsWith('…')).toBe(true);
    });

    it('measures the length after collapsing whitespace', () => {
      // 200 words separated by long whitespace runs: too long either way.
      const code = Array(200).fill('a').join(' \n\t'.repeat(6));
      const collapsed = Array(200).fill('a').join(' ');
      expect(summary('op.shell', { command: code })).toBe(
        `${collapsed.slice(0, 239)}…`
      );
      // 496 characters raw, 199 once collapsed: shown whole.
      const short = Array(100).fill('b').join('\n\n\n\n');
      expect(summary('op.shell', { command: short })).toBe(
        Array(100).fill('b').join(' ')
      );
    });

    it('cuts a long kind as well', () => {
      const kind = `custom.${'k'.repeat(300)}`;
      const result = summary(kind, null);
      expect(result).toHaveLength(240);
      expect(result).toBe(`${kind.slice(0, 239)}…`);
    });
  });

  it('returns the empty string only for an empty kind without summary', () => {
    expect(summary('', null)).toBe('');
  });
});

describe('formatTime', () => {
  it('returns the empty string for no time', () => {
    expect(formatTime('')).toBe('');
    expect(formatTime(null)).toBe('');
    expect(formatTime(undefined)).toBe('');
  });

  it('returns a string it cannot parse unchanged', () => {
    expect(formatTime('not a date')).toBe('not a date');
    expect(formatTime(XSS)).toBe(XSS);
    expect(formatTime('2024-13-45T99:00:00Z')).toBe('2024-13-45T99:00:00Z');
  });

  it('formats a valid time in the user’s locale and time zone', () => {
    const iso = '2024-03-05T14:07:09.123Z';
    expect(formatTime(iso)).toBe(new Date(iso).toLocaleString());
    expect(formatTime(iso)).not.toBe(iso);
  });

  it('honours the offset of the server’s timestamp', () => {
    expect(formatTime('2024-01-01T00:30:00+02:00')).toBe(
      formatTime('2023-12-31T22:30:00Z')
    );
  });
});

describe('newestFirst', () => {
  const item = (id: string, started_at: string) => ({ id, started_at });

  it('sorts by start time, newest first, across time zone offsets', () => {
    const items = [
      item('a', '2024-01-01T10:00:00Z'),
      item('b', '2024-01-02T10:00:00Z'),
      item('c', '2024-01-01T12:00:00+01:00'), // 11:00Z
      item('d', '2023-12-31T23:59:59Z')
    ];
    expect(newestFirst(items).map(i => i.id)).toEqual(['b', 'c', 'a', 'd']);
  });

  it('puts unparsable and empty times last, keeping their order', () => {
    const items = [
      item('bad1', 'yesterday'),
      item('old', '2020-01-01T00:00:00Z'),
      item('empty', ''),
      item('new', '2025-01-01T00:00:00Z'),
      item('bad2', XSS)
    ];
    expect(newestFirst(items).map(i => i.id)).toEqual([
      'new',
      'old',
      'bad1',
      'empty',
      'bad2'
    ]);
  });

  it('keeps the order of items that started at the same time', () => {
    const same = '2024-05-05T05:05:05Z';
    const items = ['x', 'y', 'z'].map(id => item(id, same));
    expect(newestFirst(items).map(i => i.id)).toEqual(['x', 'y', 'z']);
  });

  it('returns a new array and leaves its input alone', () => {
    const items = [
      item('a', '2024-01-01T00:00:00Z'),
      item('b', '2024-06-01T00:00:00Z')
    ];
    const copy = [...items];
    const sorted = newestFirst(items);
    expect(sorted).not.toBe(items);
    expect(items).toEqual(copy);
    expect(sorted[0]).toBe(items[1]); // the same objects, reordered
  });

  it('handles an empty list', () => {
    expect(newestFirst([])).toEqual([]);
  });
});
