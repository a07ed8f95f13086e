/**
 * The traces list: search box, filters, trace cards (participants, notebook
 * names, times, counts, flags) and "load more". Every string from the trail
 * is rendered as React text, never as HTML.
 */
import * as React from 'react';

import type { TranslationBundle } from '@jupyterlab/translation';

import { formatTime } from './format';
import { revealText } from './reveal';
import {
  counts,
  earlierNotebooks,
  flagLabel,
  flagName,
  notebookLabel,
  participantLabel,
  participants,
  recordedByLabel
} from './labels';
import type { AuditTrailModel } from './model';
import { exportFilters, isFiltered, unexportableFilters } from './query';
import { formatSeconds } from './steps';
import { TRACE_FLAGS } from './tokens';
import type { ITraceFilter, ITraceSummary } from './tokens';
import type { IViewServices } from './viewServices';
import { ErrorBox } from './viewParts';

/** Milliseconds the search box waits for more typing before it asks the server. */
export const SEARCH_DEBOUNCE_MS = 300;

/** Event kinds offered in the kind filter. */
const KINDS = [
  'op.sql',
  'op.http',
  'op.shell',
  'cell.finished',
  'cell.unreported',
  'op.unattributed',
  'approval.requested',
  'session.renamed',
  'file.saved'
];

/** A fixed symbol per flag (aria-hidden: the words beside it say it). */
const FLAG_SYMBOLS: { [flag: string]: string } = {
  integrity: '⊘',
  failed_cells: '✖',
  risky: '⚠',
  approvals: '✋',
  capture_gaps: '◌',
  unattributed: '?'
};

export function StatusBadge(props: { status: string }): React.ReactElement {
  // The class comes from a fixed set, never from the server's string.
  const running = props.status === 'running';
  return (
    <span
      className={`jp-AuditTrail-status ${running ? 'jp-mod-running' : 'jp-mod-ended'}`}
    >
      {props.status}
    </span>
  );
}

/** A trace's flags as symbol + words, in `TRACE_FLAGS` order. */
export function Flags(props: {
  trace: ITraceSummary;
  trans: TranslationBundle;
}): React.ReactElement | null {
  const { trace, trans } = props;
  const flags = Array.isArray(trace.flags) ? trace.flags : [];
  const shown = [
    ...TRACE_FLAGS.filter(f => flags.includes(f)),
    ...flags.filter(f => !(TRACE_FLAGS as readonly string[]).includes(f))
  ];
  if (shown.length === 0) {
    return null;
  }
  return (
    <span className="jp-AuditTrail-flags">
      {shown.map(flag => (
        <span
          key={flag}
          className={`jp-AuditTrail-flag${(TRACE_FLAGS as readonly string[]).includes(flag) ? ` jp-mod-${flag.replace('_', '-')}` : ''}`}
          data-flag={flag}
        >
          <span aria-hidden="true" className="jp-AuditTrail-flagIcon">
            {FLAG_SYMBOLS[flag] ?? '•'}
          </span>
          {flagLabel(flag, trace, trans)}
        </span>
      ))}
    </span>
  );
}

/** The notebook's current name, and its earlier ones. */
export function NotebookNames(props: {
  trace: ITraceSummary;
  trans: TranslationBundle;
}): React.ReactElement {
  const { trace, trans } = props;
  const earlier = earlierNotebooks(trace);
  return (
    <span className="jp-AuditTrail-notebookNames">
      <span
        className={`jp-AuditTrail-notebook${trace.notebook ? '' : ' jp-mod-none'}`}
      >
        {notebookLabel(trace, trans)}
      </span>
      {earlier.length > 0 && (
        <span className="jp-AuditTrail-earlierNames">
          {trans.__('formerly %1', earlier.map(revealText).join(', '))}
        </span>
      )}
    </span>
  );
}

export function Participants(props: {
  trace: ITraceSummary;
  trans: TranslationBundle;
}): React.ReactElement {
  const { trace, trans } = props;
  return (
    <span className="jp-AuditTrail-traceUsers">
      {participants(trace)
        .map(p => participantLabel(p, trans))
        .join(', ')}
    </span>
  );
}

function TraceCard(props: {
  trace: ITraceSummary;
  model: AuditTrailModel;
  trans: TranslationBundle;
}): React.ReactElement {
  const { trace, model, trans } = props;
  const duration = formatSeconds(trace.duration_s);
  const flags = trace.flags ?? [];
  const recordedBy = recordedByLabel(trace, trans);
  return (
    <li>
      <button
        type="button"
        className={`jp-AuditTrail-trace${flags.includes('integrity') ? ' jp-mod-broken' : ''}`}
        data-trace-id={trace.trace_id}
        title={trans.__('Show the timeline of trace %1', trace.trace_id)}
        onClick={() => void model.openTrace(trace.trace_id)}
      >
        <span className="jp-AuditTrail-traceHead">
          <NotebookNames trace={trace} trans={trans} />
          <StatusBadge status={trace.status} />
        </span>
        <Participants trace={trace} trans={trans} />
        {recordedBy && (
          <span className="jp-AuditTrail-recordedBy">{recordedBy}</span>
        )}
        <span className="jp-AuditTrail-traceMeta">
          <time className="jp-AuditTrail-started" dateTime={trace.started_at}>
            {formatTime(trace.started_at)}
          </time>
          {duration && (
            <span className="jp-AuditTrail-duration">
              {trans.__('for %1', duration)}
            </span>
          )}
        </span>
        <span className="jp-AuditTrail-counts">{counts(trace, trans)}</span>
        {typeof trace.matches === 'number' && (
          <span className="jp-AuditTrail-matches">
            {trans._n(
              '%1 matching record',
              '%1 matching records',
              trace.matches
            )}
          </span>
        )}
        <Flags trace={trace} trans={trans} />
      </button>
    </li>
  );
}

/** `datetime-local` value (the browser's local time) → ISO 8601 UTC, or ''. */
function localToIso(value: string): string {
  if (!value) {
    return '';
  }
  const date = new Date(value);
  return isNaN(date.getTime()) ? '' : date.toISOString();
}

/** ISO 8601 → `datetime-local` value in the browser's local time, or ''. */
function isoToLocal(iso: string | undefined): string {
  if (!iso) {
    return '';
  }
  const date = new Date(iso);
  if (isNaN(date.getTime())) {
    return '';
  }
  const local = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
  return local.toISOString().slice(0, 16);
}

function TraceFilters(props: {
  model: AuditTrailModel;
  services: IViewServices;
}): React.ReactElement {
  const { model, services } = props;
  const trans = services.trans;
  const applied = model.filter;
  const [q, setQ] = React.useState(applied.q ?? '');
  const [draft, setDraft] = React.useState<ITraceFilter>(applied);
  const timer = React.useRef<number | null>(null);

  React.useEffect(
    () => () => {
      if (timer.current !== null) {
        window.clearTimeout(timer.current);
      }
    },
    []
  );

  const onSearch = (value: string): void => {
    setQ(value);
    if (timer.current !== null) {
      window.clearTimeout(timer.current);
    }
    timer.current = window.setTimeout(() => {
      timer.current = null;
      void model.setFilter({ ...model.filter, q: value });
    }, SEARCH_DEBOUNCE_MS);
  };

  const apply = (event: React.FormEvent): void => {
    event.preventDefault();
    void model.setFilter({ ...draft, q });
  };
  const clear = (): void => {
    setDraft({});
    setQ('');
    void model.setFilter({});
  };
  const toggleFlag = (flag: string, on: boolean): void => {
    const flags = (draft.flags ?? []).filter(f => f !== flag);
    setDraft({ ...draft, flags: on ? [...flags, flag] : flags });
  };
  const text = (key: 'user' | 'notebook'): React.ReactElement => (
    <input
      type="text"
      className={`jp-AuditTrail-filter-${key}`}
      value={draft[key] ?? ''}
      onChange={e => setDraft({ ...draft, [key]: e.target.value })}
    />
  );

  return (
    <div className="jp-AuditTrail-filters">
      <input
        type="search"
        className="jp-AuditTrail-search"
        placeholder={trans.__('Search code, queries, URLs, commands…')}
        aria-label={trans.__('Search the traces')}
        value={q}
        onChange={e => onSearch(e.target.value)}
        onKeyDown={e => {
          if (e.key === 'Enter') {
            if (timer.current !== null) {
              window.clearTimeout(timer.current);
              timer.current = null;
            }
            void model.setFilter({ ...model.filter, q });
          }
        }}
      />
      <details className="jp-AuditTrail-filterMore">
        <summary>
          {isFiltered({ ...applied, q: '' })
            ? trans.__('Filters (on)')
            : trans.__('Filters')}
        </summary>
        <form className="jp-AuditTrail-filterForm" onSubmit={apply}>
          <label>
            {trans.__('User')}
            {text('user')}
          </label>
          <label>
            {trans.__('Notebook')}
            {text('notebook')}
          </label>
          <label>
            {trans.__('From')}
            <input
              type="datetime-local"
              className="jp-AuditTrail-filter-since"
              value={isoToLocal(draft.since)}
              onChange={e =>
                setDraft({ ...draft, since: localToIso(e.target.value) })
              }
            />
          </label>
          <label>
            {trans.__('To')}
            <input
              type="datetime-local"
              className="jp-AuditTrail-filter-until"
              value={isoToLocal(draft.until)}
              onChange={e =>
                setDraft({ ...draft, until: localToIso(e.target.value) })
              }
            />
          </label>
          <label>
            {trans.__('Contains')}
            <select
              className="jp-AuditTrail-filter-kind"
              value={draft.kind ?? ''}
              onChange={e => setDraft({ ...draft, kind: e.target.value })}
            >
              <option value="">{trans.__('any event')}</option>
              {KINDS.map(kind => (
                <option key={kind} value={kind}>
                  {kind}
                </option>
              ))}
            </select>
          </label>
          <fieldset className="jp-AuditTrail-filterFlags">
            <legend>{trans.__('Flagged with')}</legend>
            {TRACE_FLAGS.map(flag => (
              <label key={flag}>
                <input
                  type="checkbox"
                  data-flag={flag}
                  checked={(draft.flags ?? []).includes(flag)}
                  onChange={e => toggleFlag(flag, e.target.checked)}
                />
                {flagName(flag, trans)}
              </label>
            ))}
          </fieldset>
          <div className="jp-AuditTrail-filterButtons">
            <button type="submit" className="jp-mod-styled jp-mod-accept">
              {trans.__('Apply')}
            </button>
            <button type="button" className="jp-mod-styled" onClick={clear}>
              {trans.__('Clear')}
            </button>
          </div>
        </form>
      </details>
    </div>
  );
}

/**
 * What the Export button downloads, exactly; or, when the list is filtered
 * by what export cannot apply (search, kind, flags), why it is disabled.
 */
export function exportTitle(
  filter: ITraceFilter,
  unexportable: string[],
  trans: TranslationBundle
): string {
  if (unexportable.length > 0) {
    const names = unexportable.map(key =>
      key === 'q'
        ? trans.__('search')
        : key === 'flag'
          ? trans.__('flags')
          : trans.__('kind')
    );
    return trans.__(
      'Export cannot apply the %1 filter, so it would download more than the list shows: clear it to export (export filters by user, notebook and time only).',
      names.join(', ')
    );
  }
  const applied = exportFilters(filter);
  if (applied.length === 0) {
    return trans.__('Download the evidence bundle of the whole trail');
  }
  return trans.__(
    'Download the evidence bundle of every trace matching %1 (the list shows the same traces)',
    applied.map(([k, v]) => `${k}=${revealText(v)}`).join(', ')
  );
}

export function TraceList(props: {
  model: AuditTrailModel;
  services: IViewServices;
}): React.ReactElement {
  const { model, services } = props;
  const trans = services.trans;
  const traces = model.traces;
  const filtered = isFiltered(model.filter);
  const unexportable = unexportableFilters(model.filter);
  return (
    <section className="jp-AuditTrail-traces">
      <div className="jp-AuditTrail-sectionHead">
        <h3 className="jp-AuditTrail-sectionTitle">{trans.__('Traces')}</h3>
        <button
          type="button"
          className="jp-AuditTrail-export jp-AuditTrail-linkButton"
          disabled={unexportable.length > 0}
          title={exportTitle(model.filter, unexportable, trans)}
          onClick={() => void services.download({ filter: model.filter })}
        >
          {trans.__('Export')}
        </button>
      </div>
      <TraceFilters
        key={model.userGeneration}
        model={model}
        services={services}
      />
      {model.tracesError && (
        <ErrorBox error={model.tracesError} trans={trans} />
      )}
      {traces === null && !model.tracesError && (
        <div className="jp-AuditTrail-placeholder">{trans.__('Loading…')}</div>
      )}
      {traces !== null && traces.length === 0 && (
        <div className="jp-AuditTrail-placeholder">
          {filtered
            ? trans.__('No trace matches.')
            : trans.__('No traces yet.')}
        </div>
      )}
      {traces !== null && traces.length > 0 && (
        <ul className="jp-AuditTrail-traceList">
          {traces.map(trace => (
            <TraceCard
              key={trace.trace_id}
              trace={trace}
              model={model}
              trans={trans}
            />
          ))}
        </ul>
      )}
      {model.hasMoreTraces && (
        <button
          type="button"
          className="jp-AuditTrail-loadMore jp-mod-styled"
          onClick={() => void model.loadMoreTraces()}
        >
          {trans.__('Load more traces')}
        </button>
      )}
    </section>
  );
}
