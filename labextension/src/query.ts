/**
 * Pure builders of the audit API's query strings (`GET traces`, `GET
 * traces/{id}`, `GET export`) from the panel's filters and paging state, so
 * the one place that encodes user input into a URL is tested on its own.
 */
import type { ITraceFilter } from './tokens';

/** Most traces the server returns per page. */
export const MAX_TRACE_PAGE = 500;
/** Most events the server returns per page. */
export const MAX_EVENT_PAGE = 5000;

/** Which page of a trace's events to load. */
export type EventPage =
  | { at: 'first' }
  | { at: 'last' }
  | { at: 'after'; seq: number }
  | { at: 'before'; seq: number };

function clamp(value: number, max: number): number {
  return Math.max(1, Math.min(max, Math.floor(value) || 1));
}

/** `key=value&…` of the filter's set fields, in a fixed order; flags repeat. */
export function filterParams(filter: ITraceFilter): [string, string][] {
  const params: [string, string][] = [];
  for (const key of ['user', 'notebook', 'since', 'until', 'kind'] as const) {
    const value = filter[key]?.trim();
    if (value) {
      params.push([key, value]);
    }
  }
  for (const flag of filter.flags ?? []) {
    params.push(['flag', flag]);
  }
  const q = filter.q?.trim();
  if (q) {
    params.push(['q', q]);
  }
  return params;
}

function encode(params: [string, string][]): string {
  return params
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
    .join('&');
}

/** `traces?limit=…[&cursor=…][&filters]`. */
export function traceListPath(
  filter: ITraceFilter,
  limit: number,
  cursor: string | null = null
): string {
  const params: [string, string][] = [
    ['limit', String(clamp(limit, MAX_TRACE_PAGE))]
  ];
  if (cursor) {
    params.push(['cursor', cursor]);
  }
  return `traces?${encode([...params, ...filterParams(filter)])}`;
}

/** `traces/{id}?limit=…&fold=…[&after_seq|before_seq|page=last][&msg_id]`. */
export function tracePath(
  traceId: string,
  page: EventPage,
  options: { limit: number; fold: boolean; msgId?: string | null }
): string {
  const params: [string, string][] = [
    ['limit', String(clamp(options.limit, MAX_EVENT_PAGE))],
    ['fold', options.fold ? '1' : '0']
  ];
  if (page.at === 'last') {
    params.push(['page', 'last']);
  } else if (page.at === 'after') {
    params.push(['after_seq', String(page.seq)]);
  } else if (page.at === 'before') {
    params.push(['before_seq', String(page.seq)]);
  }
  if (options.msgId) {
    params.push(['msg_id', options.msgId]);
  }
  return `traces/${encodeURIComponent(traceId)}?${encode(params)}`;
}

/** What to export: one trace, or the traces a filter selects. */
export type ExportTarget = { trace: string } | { filter: ITraceFilter };

/** The filters `GET export` applies; it takes no search, kind or flag. */
const EXPORT_FILTERS = ['user', 'since', 'until', 'notebook'];

/**
 * The list filters set in `filter` that `GET export` cannot apply (`q`,
 * `kind`, `flag`): an export of such a list would hold more than it shows.
 */
export function unexportableFilters(filter: ITraceFilter): string[] {
  return [
    ...new Set(
      filterParams(filter)
        .map(([key]) => key)
        .filter(key => !EXPORT_FILTERS.includes(key))
    )
  ];
}

/** The filters an export of `filter` applies, as `[key, value]` pairs. */
export function exportFilters(filter: ITraceFilter): [string, string][] {
  return filterParams(filter).filter(([k]) => EXPORT_FILTERS.includes(k));
}

/** `export?trace=…`, or `export?<user, since, until, notebook>` (the filters export takes). */
export function exportPath(target: ExportTarget): string {
  if ('trace' in target) {
    return `export?${encode([['trace', target.trace]])}`;
  }
  const params = exportFilters(target.filter);
  return params.length > 0 ? `export?${encode(params)}` : 'export';
}

/**
 * `jupyter-audit-<trace or filter>.json`: the name the bundle is saved as,
 * with anything but letters, digits, `.`, `_` and `-` replaced, so a
 * notebook name cannot steer the download elsewhere.
 */
export function exportFileName(target: ExportTarget): string {
  let label: string;
  if ('trace' in target) {
    label = target.trace;
  } else {
    const params = filterParams(target.filter).filter(([k]) =>
      ['user', 'since', 'until', 'notebook'].includes(k)
    );
    label = params.length
      ? params.map(([k, v]) => `${k}-${v}`).join('_')
      : 'all';
  }
  const safe = label
    .replace(/[^A-Za-z0-9._-]+/g, '_')
    .replace(/^[._]+/, '')
    .slice(0, 100);
  return `jupyter-audit-${safe || 'export'}.json`;
}

/** Whether a filter selects anything narrower than every trace. */
export function isFiltered(filter: ITraceFilter): boolean {
  return filterParams(filter).length > 0;
}
