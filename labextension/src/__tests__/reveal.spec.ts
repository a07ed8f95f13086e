import * as React from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import { describe, expect, it } from 'vitest';

import { nullTranslator } from '@jupyterlab/translation';

import { firstLine, summarizeEvent } from '../format';
import { actorLabel, notebookLabel } from '../labels';
import { revealText } from '../reveal';
import { errorText, opFacts } from '../steps';
import type { ITraceSummary } from '../tokens';
import { NotebookNames, Participants } from '../traceListView';

describe('revealText', () => {
  it('shows bidi controls and zero-width characters as markers', () => {
    // "Trojan Source": U+202E makes the rest of the line display reversed.
    expect(revealText('DELETE FROM t -- \u202e1=1 EREHW')).toBe(
      'DELETE FROM t -- ⟦U+202E⟧1=1 EREHW'
    );
    expect(revealText('DR\u200bOP TABLE\ufeff t\u2066')).toBe(
      'DR⟦U+200B⟧OP TABLE⟦U+FEFF⟧ t⟦U+2066⟧'
    );
    expect(revealText('SELECT \'é\', "naïve" -- ü')).toBe(
      'SELECT \'é\', "naïve" -- ü'
    );
  });

  it('shows a lone carriage return as a marker and a line break', () => {
    // pre-wrap draws a lone CR as nothing; Python and SQL end the line there.
    expect(revealText('SELECT 1\r-- DROP')).toBe('SELECT 1⟦U+000D⟧\n-- DROP');
    expect(revealText('a\r\nb\nc\td')).toBe('a\r\nb\nc\td');
    expect(revealText('x\r')).toBe('x⟦U+000D⟧\n');
  });

  it('ends the line after NEL and the line/paragraph separators', () => {
    expect(revealText('SELECT 1\u2028; DROP TABLE x')).toBe(
      'SELECT 1⟦U+2028⟧\n; DROP TABLE x'
    );
    expect(revealText('a\u2029b\u0085c')).toBe('a⟦U+2029⟧\nb⟦U+0085⟧\nc');
  });

  it('reveals every character the CLI escapes', () => {
    for (const [input, marker] of [
      ['\u0000', 'U+0000'],
      ['\u001b', 'U+001B'],
      ['\u007f', 'U+007F'],
      ['\u009b', 'U+009B'],
      ['\u00ad', 'U+00AD'],
      ['\u034f', 'U+034F'],
      ['\u061c', 'U+061C'],
      ['\u115f', 'U+115F'],
      ['\u17b4', 'U+17B4'],
      ['\u17b5', 'U+17B5'],
      ['\u180b', 'U+180B'],
      ['\u180f', 'U+180F'],
      ['\u200f', 'U+200F'],
      ['\u2069', 'U+2069'],
      ['\u3164', 'U+3164'],
      ['\ufe0f', 'U+FE0F'],
      ['\uffa0', 'U+FFA0'],
      ['\u{e0020}', 'U+E0020'],
      ['\u{e0fff}', 'U+E0FFF']
    ]) {
      expect(revealText(`x${input}y`)).toBe(`x⟦${marker}⟧y`);
    }
  });

  it('reveals a hidden WHERE written in tag characters', () => {
    expect(
      revealText('DELETE FROM t\u{E0020}\u{E0057}\u{E0048}\u{E0045}')
    ).toBe('DELETE FROM t⟦U+E0020⟧⟦U+E0057⟧⟦U+E0048⟧⟦U+E0045⟧');
  });
});

describe('firstLine and summaries with hidden line ends', () => {
  it('splits a cell at a lone carriage return', () => {
    expect(firstLine('print(1)\rimport os; os.remove("x")')).toBe('print(1)');
    expect(firstLine('\r\n\r  a = 1\rb')).toBe('a = 1');
  });

  it('shows the lone CR and hidden characters in an SQL summary', () => {
    expect(
      summarizeEvent({
        kind: 'op.sql',
        payload: { statement: 'SELECT 1\r-- \u202eDROP' }
      })
    ).toBe('SELECT 1⟦U+000D⟧ -- ⟦U+202E⟧DROP');
  });

  it('reveals hidden characters in a cell summary', () => {
    expect(
      summarizeEvent({
        kind: 'cell.executed',
        payload: { code: 'x\u200b = 1' }
      })
    ).toBe('x⟦U+200B⟧ = 1');
  });
});

describe('every record string the panel renders is revealed', () => {
  const trans = nullTranslator.load('jupyter-audit');
  const RLO = '\u202e';
  const trace: ITraceSummary = {
    trace_id: 't',
    kernel_id: null,
    notebook: `report${RLO}bpyi.ipynb`,
    notebooks: [`old\u200b.ipynb`, `report${RLO}bpyi.ipynb`],
    started_at: '2024-01-01T00:00:00Z',
    last_at: '2024-01-01T00:00:00Z',
    events: 0,
    cells: 0,
    operations: 0,
    users: [],
    participants: [
      {
        username: `mallory${RLO}`,
        service_account: false,
        token_owner: null,
        display_name: null
      },
      {
        username: 'bot\u2066',
        service_account: true,
        token_owner: 'carol\u00ad',
        display_name: null
      }
    ],
    status: 'ended'
  };

  it('notebook names, earlier names and participants', () => {
    const html = renderToStaticMarkup(
      React.createElement(
        'div',
        null,
        React.createElement(NotebookNames, { trace, trans }),
        React.createElement(Participants, { trace, trans })
      )
    );
    expect(html).toContain('report⟦U+202E⟧bpyi.ipynb');
    expect(html).toContain('old⟦U+200B⟧.ipynb');
    expect(html).toContain('mallory⟦U+202E⟧');
    expect(html).toContain('bot⟦U+2066⟧ (service account of carol⟦U+00AD⟧)');
    expect(html).not.toMatch(/[\u202e\u200b\u2066\u00ad]/u);
  });

  it('identities, op facts and errors', () => {
    expect(actorLabel({ username: `eve${RLO}` }, trans)).toBe('eve⟦U+202E⟧');
    expect(notebookLabel(trace, trans)).toBe('report⟦U+202E⟧bpyi.ipynb');
    const facts = opFacts({
      kind: 'op.http',
      payload: {
        method: 'GET',
        url: 'https://exa\u200bmple.org/',
        error: 'boom\rhidden'
      }
    });
    expect(
      opFacts({ kind: 'op.sql', payload: { tables: ['t\u200b', 'u'] } })
    ).toContainEqual(['tables', 't⟦U+200B⟧, u']);
    expect(facts).toContainEqual(['error', 'boom⟦U+000D⟧\nhidden']);
    expect(errorText({ ename: 'E', evalue: `x${RLO}` })).toBe('E: x⟦U+202E⟧');
  });

  it('is idempotent, so revealing twice changes nothing', () => {
    const once = revealText(`a\rb${RLO}\u{e0041}\u2028`);
    expect(revealText(once)).toBe(once);
  });
});
