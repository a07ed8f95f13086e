import { describe, expect, it } from 'vitest';

import { exportPath, unexportableFilters } from '../query';
import type { ITraceFilter } from '../tokens';
import { exportTitle } from '../traceListView';

import { traceListHtml, trans } from './factories';

/** The Export button as the list draws it for `filter`. */
function exportButton(filter: ITraceFilter): string {
  const html = traceListHtml([], filter);
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
