import * as React from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import { describe, expect, it } from 'vitest';

import { nullTranslator } from '@jupyterlab/translation';

import type { AuditTrailModel } from '../model';
import { exportPath, unexportableFilters } from '../query';
import type { ITraceFilter } from '../tokens';
import { exportTitle, TraceList } from '../traceListView';
import type { IViewServices } from '../viewServices';

const trans = nullTranslator.load('jupyter-audit');

/** The Export button as the list draws it for `filter`. */
function exportButton(filter: ITraceFilter): string {
  const model = {
    filter,
    traces: [],
    tracesError: null,
    userGeneration: 0,
    hasMoreTraces: false,
    loadingMore: false
  } as unknown as AuditTrailModel;
  const services = {
    trans,
    languages: null,
    openCell: null,
    download: async () => undefined
  } as unknown as IViewServices;
  const html = renderToStaticMarkup(
    React.createElement(TraceList, { model, services })
  );
  const match = html.match(/<button[^>]*jp-AuditTrail-export[^>]*>/);
  expect(match).not.toBeNull();
  return match![0];
}

describe('Export of a filtered list', () => {
  it('names the filters export cannot apply', () => {
    expect(unexportableFilters({})).toEqual([]);
    expect(unexportableFilters({ user: 'a', notebook: 'n.ipynb' })).toEqual([]);
    expect(
      unexportableFilters({ q: 'secret', kind: 'op.sql', flags: ['risky'] })
    ).toEqual(['kind', 'flag', 'q']);
    expect(unexportableFilters({ q: '   ' })).toEqual([]);
  });

  it('is disabled, saying why, when search, kind or flags filter the list', () => {
    for (const filter of [
      { q: 'salary' },
      { kind: 'op.http' },
      { flags: ['risky'] },
      { user: 'alice', q: 'x' }
    ]) {
      const button = exportButton(filter);
      expect(button).toContain('disabled');
      expect(button).toMatch(/cannot apply the (search|kind|flags) filter/);
    }
  });

  it('says exactly what it downloads otherwise', () => {
    const whole = exportButton({});
    expect(whole).not.toContain('disabled');
    expect(whole).toContain('of the whole trail');
    const some = exportButton({ user: 'alice', notebook: 'a.ipynb' });
    expect(some).not.toContain('disabled');
    expect(some).toContain('user=alice, notebook=a.ipynb');
    expect(exportPath({ filter: { user: 'alice', notebook: 'a.ipynb' } })).toBe(
      'export?user=alice&notebook=a.ipynb'
    );
    expect(exportTitle({ user: 'x\u202e' }, [], trans)).toContain(
      'user=x⟦U+202E⟧'
    );
  });
});
