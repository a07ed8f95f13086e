import { describe, expect, it } from 'vitest';

import {
  exportFileName,
  exportPath,
  isFiltered,
  traceListPath,
  tracePath
} from '../query';

describe('traceListPath', () => {
  it('asks for a page of traces with only the filters that are set', () => {
    expect(traceListPath({}, 50)).toBe('traces?limit=50');
    expect(
      traceListPath(
        {
          user: ' alice ',
          notebook: '',
          kind: 'op.sql',
          flags: ['risky', 'failed_cells'],
          q: 'DELETE customers'
        },
        20,
        'c:42'
      )
    ).toBe(
      'traces?limit=20&cursor=c%3A42&user=alice&kind=op.sql&flag=risky&flag=failed_cells&q=DELETE%20customers'
    );
  });

  it('encodes what a user typed so it cannot add parameters', () => {
    const path = traceListPath({ q: 'x&user=bob#', notebook: 'a/b?.ipynb' }, 5);
    expect(path).toBe(
      'traces?limit=5&notebook=a%2Fb%3F.ipynb&q=x%26user%3Dbob%23'
    );
    expect(new URLSearchParams(path.split('?')[1]).getAll('user')).toEqual([]);
  });

  it('keeps the limit within what the server allows', () => {
    expect(traceListPath({}, 100000)).toBe('traces?limit=500');
    expect(traceListPath({}, 0)).toBe('traces?limit=1');
  });
});

describe('tracePath', () => {
  const opts = { limit: 500, fold: true };
  it('names each page of a trace', () => {
    expect(tracePath('t/1', { at: 'first' }, opts)).toBe(
      'traces/t%2F1?limit=500&fold=1'
    );
    expect(tracePath('t', { at: 'last' }, opts)).toBe(
      'traces/t?limit=500&fold=1&page=last'
    );
    expect(tracePath('t', { at: 'after', seq: 10 }, opts)).toBe(
      'traces/t?limit=500&fold=1&after_seq=10'
    );
    expect(tracePath('t', { at: 'before', seq: 7 }, opts)).toBe(
      'traces/t?limit=500&fold=1&before_seq=7'
    );
  });

  it('expands one cell unfolded', () => {
    expect(
      tracePath(
        't',
        { at: 'after', seq: 3 },
        { limit: 9000, fold: false, msgId: 'm&1' }
      )
    ).toBe('traces/t?limit=5000&fold=0&after_seq=3&msg_id=m%261');
  });
});

describe('export', () => {
  it('exports one trace, or the filters export takes', () => {
    expect(exportPath({ trace: 'trace-1' })).toBe('export?trace=trace-1');
    expect(
      exportPath({
        filter: { user: 'al', q: 'x', kind: 'op.sql', since: '2024-01-01' }
      })
    ).toBe('export?user=al&since=2024-01-01');
    expect(exportPath({ filter: {} })).toBe('export');
  });

  it('names the file safely whatever the notebook is called', () => {
    expect(exportFileName({ trace: 'trace-ab12' })).toBe(
      'jupyter-audit-trace-ab12.json'
    );
    expect(
      exportFileName({ filter: { notebook: '../../etc/<img>.ipynb' } })
    ).toBe('jupyter-audit-notebook-.._.._etc_img_.ipynb.json');
    expect(exportFileName({ filter: {} })).toBe('jupyter-audit-all.json');
    expect(exportFileName({ trace: '...' })).toBe('jupyter-audit-export.json');
  });
});

describe('isFiltered', () => {
  it('ignores blank filters', () => {
    expect(isFiltered({ user: ' ', flags: [] })).toBe(false);
    expect(isFiltered({ flags: ['risky'] })).toBe(true);
  });
});
