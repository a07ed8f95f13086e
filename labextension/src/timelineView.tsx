/**
 * The trace view: header (notebook names, participants, counts, flags,
 * integrity badge, export), then the loaded window of steps in the order they
 * ran in the kernel: cells with their operations nested, folded repeats that
 * expand, other records on their own, and a detail pane under the step
 * clicked. Pages load as the reviewer scrolls. Text only, never HTML.
 */
import * as React from 'react';

import type { TranslationBundle } from '@jupyterlab/translation';
import { caretLeftIcon } from '@jupyterlab/ui-components';

import { HighlightedCode } from './code';
import type { CodeLanguage } from './code';
import { firstLine, formatTime, summarizeEvent } from './format';
import { revealText } from './reveal';
import {
  actorLabel,
  counts,
  factLabel,
  isServerIdentity,
  traceIntegrityLabel
} from './labels';
import type { AuditTrailModel } from './model';
import {
  cellFailed,
  errorText,
  formatDurationUs,
  formatSeconds,
  opFacts
} from './steps';
import type { ICellStep, Step } from './steps';
import type { IIdentity, ITraceEvent } from './tokens';
import {
  Flags,
  NotebookNames,
  Participants,
  StatusBadge
} from './traceListView';
import { ErrorBox } from './viewParts';
import type { IViewServices } from './viewServices';

const OP_LABELS: { [kind: string]: string } = {
  'op.sql': 'SQL',
  'op.http': 'HTTP',
  'op.shell': 'shell',
  'op.uncaptured': 'uncaptured',
  'op.unattributed': 'unattributed'
};

function languageOf(kind: string): CodeLanguage {
  return kind === 'op.sql' ? 'sql' : kind === 'op.shell' ? 'shell' : 'python';
}

/** The kernel's time, and the server's beside it when they differ as shown. */
function Times(props: {
  kernelTime: string | null | undefined;
  time: string;
  trans: TranslationBundle;
}): React.ReactElement {
  const { kernelTime, time, trans } = props;
  const kernel = kernelTime ? formatTime(kernelTime) : '';
  const server = formatTime(time);
  if (!kernel) {
    return (
      <time className="jp-AuditTrail-time" dateTime={time}>
        {server}
      </time>
    );
  }
  return (
    <span className="jp-AuditTrail-times">
      <time
        className="jp-AuditTrail-time jp-mod-kernel"
        dateTime={kernelTime ?? undefined}
        title={trans.__('When it ran in the kernel')}
      >
        {kernel}
      </time>
      {server !== kernel && (
        <time
          className="jp-AuditTrail-serverTime"
          dateTime={time}
          title={trans.__('When the server recorded it')}
        >
          {trans.__('recorded %1', server)}
        </time>
      )}
    </span>
  );
}

function Who(props: {
  identity: IIdentity | null;
  trans: TranslationBundle;
}): React.ReactElement {
  return (
    <span
      className={`jp-AuditTrail-who${isServerIdentity(props.identity) ? ' jp-mod-system' : ''}`}
    >
      {actorLabel(props.identity, props.trans)}
    </span>
  );
}

function Broken(props: { trans: TranslationBundle }): React.ReactElement {
  return (
    <span className="jp-AuditTrail-brokenMark">
      <span aria-hidden="true">⊘ </span>
      {props.trans.__('fails verification')}
    </span>
  );
}

/**
 * Label/value rows of the detail pane; empty values are left out, text values
 * have their hidden characters revealed (revealing twice changes nothing).
 */
function Facts(props: {
  rows: [string, React.ReactNode][];
}): React.ReactElement {
  return (
    <dl className="jp-AuditTrail-facts">
      {props.rows
        .filter(
          ([, value]) => value !== null && value !== '' && value !== undefined
        )
        .map(([label, value]) => (
          <React.Fragment key={label}>
            <dt>{label}</dt>
            <dd>{typeof value === 'string' ? revealText(value) : value}</dd>
          </React.Fragment>
        ))}
    </dl>
  );
}

function identityRows(
  identity: IIdentity | null,
  trans: TranslationBundle
): [string, React.ReactNode][] {
  if (!identity) {
    return [[trans.__('Who'), trans.__('(no identity)')]];
  }
  return [
    [trans.__('Who'), actorLabel(identity, trans)],
    [trans.__('Name'), revealText(identity.display_name ?? '')],
    [trans.__('Signed in via'), revealText(identity.auth_method ?? '')],
    [trans.__('Token of'), revealText(identity.token_owner ?? '')],
    [trans.__('Groups'), revealText((identity.groups ?? []).join(', '))]
  ];
}

function json(value: unknown): string {
  try {
    return revealText(JSON.stringify(value, null, 2) ?? String(value));
  } catch {
    return revealText(String(value));
  }
}

/** The detail pane of one record. */
function EventDetail(props: {
  event: ITraceEvent;
  services: IViewServices;
}): React.ReactElement {
  const { event, services } = props;
  const trans = services.trans;
  const p = event.payload ?? {};
  const code =
    typeof p.statement === 'string'
      ? p.statement
      : typeof p.command === 'string'
        ? p.command
        : typeof p.code === 'string'
          ? p.code
          : null;
  const facts = opFacts(event).map(
    ([label, value]): [string, React.ReactNode] => [
      factLabel(label, trans),
      value
    ]
  );
  const shown = new Set(['statement', 'command', 'code']);
  return (
    <div
      className="jp-AuditTrail-detail"
      role="region"
      aria-label={trans.__('Details of record #%1', event.seq)}
    >
      {event.broken && <Broken trans={trans} />}
      {code !== null && (
        <HighlightedCode
          code={code}
          language={languageOf(event.kind)}
          languages={services.languages}
        />
      )}
      <Facts
        rows={[
          [trans.__('Record'), `#${event.seq}`],
          [trans.__('Kind'), event.kind],
          ...identityRows(event.identity, trans),
          [trans.__('Kernel time'), formatTime(event.kernel_time)],
          [trans.__('Server time'), formatTime(event.time)],
          [trans.__('Notebook'), event.notebook ?? ''],
          ...facts,
          [
            trans.__('Repeated'),
            event.repeat
              ? trans.__(
                  '%1 times (#%2–#%3), %4 failed',
                  event.repeat.count,
                  event.repeat.first_seq,
                  event.repeat.last_seq,
                  event.repeat.errors
                )
              : ''
          ],
          [
            trans.__('Policy'),
            event.risk
              ? `${event.risk.decision}: ${event.risk.rules.join(', ')}`
              : ''
          ],
          [trans.__('Hash'), event.hash]
        ]}
      />
      {Object.keys(p).some(k => !shown.has(k)) && (
        <details className="jp-AuditTrail-payload">
          <summary>{trans.__('Recorded fields')}</summary>
          <pre>{json(rest(p, shown))}</pre>
        </details>
      )}
    </div>
  );
}

/** The payload without the fields shown above it. */
function rest(
  payload: { [key: string]: unknown },
  shown: Set<string>
): { [key: string]: unknown } {
  const out: { [key: string]: unknown } = {};
  for (const [key, value] of Object.entries(payload)) {
    if (!shown.has(key)) {
      out[key] = value;
    }
  }
  return out;
}

function outputsText(events: ITraceEvent[]): string | null {
  const finished = events.find(e => e.kind === 'cell.finished');
  const outputs = finished?.payload?.outputs;
  return Array.isArray(outputs) && outputs.length > 0 ? json(outputs) : null;
}

/** The detail pane of a cell: its code, who ran it, when, the outcome. */
function CellDetail(props: {
  cell: ICellStep;
  services: IViewServices;
}): React.ReactElement {
  const { cell, services } = props;
  const trans = services.trans;
  const [openError, setOpenError] = React.useState<string | null>(null);
  const outputs = outputsText(cell.events);
  const openCell = services.openCell;
  return (
    <div
      className="jp-AuditTrail-detail"
      role="region"
      aria-label={trans.__('Details of the cell')}
    >
      {cell.broken && <Broken trans={trans} />}
      {cell.code !== null && (
        <HighlightedCode
          code={cell.code}
          language="python"
          languages={services.languages}
        />
      )}
      <Facts
        rows={[
          ...identityRows(cell.identity, trans),
          [trans.__('Kernel time'), formatTime(cell.kernelTime)],
          [trans.__('Server time'), formatTime(cell.time)],
          [trans.__('Notebook'), cell.notebook ?? ''],
          [trans.__('Cell id'), cell.cellId ?? ''],
          [
            trans.__('Execution count'),
            cell.executionCount === null ? '' : String(cell.executionCount)
          ],
          [trans.__('Status'), cell.status ?? trans.__('running')],
          [trans.__('Duration'), formatDurationUs(cell.durationUs)],
          [trans.__('Error'), errorText(cell.error) ?? ''],
          [
            trans.__('Records'),
            cell.events.map(e => `#${e.seq} ${e.kind}`).join(', ')
          ]
        ]}
      />
      {outputs && (
        <details className="jp-AuditTrail-payload">
          <summary>{trans.__('Outputs (masked)')}</summary>
          <pre>{outputs}</pre>
        </details>
      )}
      {openCell && cell.notebook && (
        <button
          type="button"
          className="jp-AuditTrail-openCell jp-mod-styled"
          onClick={() => {
            setOpenError(null);
            openCell(cell.notebook as string, {
              id: cell.cellId,
              executionCount: cell.executionCount
            }).catch((reason: Error) => setOpenError(reason.message));
          }}
        >
          {trans.__('Open notebook at this cell')}
        </button>
      )}
      {openError && (
        <div className="jp-AuditTrail-error" role="alert">
          {revealText(openError)}
        </div>
      )}
    </div>
  );
}

function OpRow(props: {
  op: ITraceEvent;
  cell: ICellStep;
  model: AuditTrailModel;
  services: IViewServices;
}): React.ReactElement {
  const { op, cell, model, services } = props;
  const trans = services.trans;
  const p = op.payload ?? {};
  const failed = typeof p.error === 'string' || (op.repeat?.errors ?? 0) > 0;
  const selected =
    model.selectedEvent?.seq === op.seq && model.selectedCell === null;
  const expanded = model.expanded.get(op.seq);
  const summary = summarizeEvent(op);
  const classes = [
    'jp-AuditTrail-op',
    op.risk ? 'jp-mod-risky' : '',
    failed ? 'jp-mod-failed' : '',
    op.broken ? 'jp-mod-broken' : '',
    selected ? 'jp-mod-selected' : ''
  ]
    .filter(Boolean)
    .join(' ');
  return (
    <li className={classes} data-seq={op.seq}>
      <button
        type="button"
        className="jp-AuditTrail-event jp-AuditTrail-opHead"
        data-seq={op.seq}
        aria-expanded={selected}
        onClick={() => model.select(selected ? null : op)}
      >
        <span className="jp-AuditTrail-eventHead">
          <span className="jp-AuditTrail-seq">#{op.seq}</span>
          <span className="jp-AuditTrail-kind" title={revealText(op.kind)}>
            {OP_LABELS[op.kind] ?? revealText(op.kind)}
          </span>
          {op.identity?.username !== cell.identity?.username && (
            <Who identity={op.identity} trans={trans} />
          )}
          <Times kernelTime={op.kernel_time} time={op.time} trans={trans} />
        </span>
        <span className="jp-AuditTrail-summary" title={summary}>
          {summary}
        </span>
        <span className="jp-AuditTrail-opFacts">
          {opFacts(op)
            .filter(([label]) => label !== 'error')
            .map(([label, value]) => (
              <span key={label} className="jp-AuditTrail-fact">
                {`${factLabel(label, trans)} ${value}`}
              </span>
            ))}
        </span>
        {typeof p.error === 'string' && (
          <span className="jp-AuditTrail-opError">{revealText(p.error)}</span>
        )}
        {op.risk && (
          <span className="jp-AuditTrail-flag jp-mod-risky" data-flag="risky">
            <span aria-hidden="true">⚠ </span>
            {trans.__(
              'risky (%1): %2',
              op.risk.decision,
              op.risk.rules.join(', ')
            )}
          </span>
        )}
        {op.broken && <Broken trans={trans} />}
      </button>
      {op.repeat && op.repeat.count > 1 && (
        <button
          type="button"
          className="jp-AuditTrail-repeat jp-AuditTrail-linkButton"
          aria-expanded={expanded !== undefined}
          onClick={() => void model.toggleRepeat(op)}
        >
          {expanded !== undefined
            ? trans.__('Fold the %1 repeats', op.repeat.count)
            : op.repeat.errors > 0
              ? trans.__(
                  '×%1 (%2 failed): show each',
                  op.repeat.count,
                  op.repeat.errors
                )
              : trans.__('×%1: show each', op.repeat.count)}
        </button>
      )}
      {expanded === null && (
        <div className="jp-AuditTrail-placeholder">{trans.__('Loading…')}</div>
      )}
      {Array.isArray(expanded) && (
        <ol className="jp-AuditTrail-repeats">
          {expanded.map(e => (
            <li
              key={e.seq}
              className={`jp-AuditTrail-repeatRow${e.broken ? ' jp-mod-broken' : ''}`}
              data-seq={e.seq}
            >
              <span className="jp-AuditTrail-seq">#{e.seq}</span>
              <Times kernelTime={e.kernel_time} time={e.time} trans={trans} />
              <span className="jp-AuditTrail-opFacts">
                {opFacts(e)
                  .map(
                    ([label, value]) => `${factLabel(label, trans)} ${value}`
                  )
                  .join(' · ')}
              </span>
            </li>
          ))}
        </ol>
      )}
      {expanded !== undefined &&
        expanded !== null &&
        !Array.isArray(expanded) && <ErrorBox error={expanded} trans={trans} />}
      {selected && <EventDetail event={op} services={services} />}
    </li>
  );
}

function CellRow(props: {
  cell: ICellStep;
  model: AuditTrailModel;
  services: IViewServices;
}): React.ReactElement {
  const { cell, model, services } = props;
  const trans = services.trans;
  const failed = cellFailed(cell);
  const selected = model.selectedCell === cell.msgId;
  const first = cell.events[0];
  const error = failed ? errorText(cell.error) : null;
  const classes = [
    'jp-AuditTrail-step',
    'jp-AuditTrail-cell',
    failed ? 'jp-mod-failed' : '',
    cell.broken ? 'jp-mod-broken' : '',
    selected ? 'jp-mod-selected' : ''
  ]
    .filter(Boolean)
    .join(' ');
  return (
    <li className={classes} data-msg-id={cell.msgId} data-seq={first.seq}>
      <button
        type="button"
        className="jp-AuditTrail-event jp-AuditTrail-cellHead"
        data-seq={first.seq}
        aria-expanded={selected}
        onClick={() => model.select(selected ? null : first, cell.msgId)}
      >
        <span className="jp-AuditTrail-eventHead">
          <span className="jp-AuditTrail-seq">#{first.seq}</span>
          <span className="jp-AuditTrail-kind">
            {cell.executionCount !== null
              ? trans.__('cell [%1]', cell.executionCount)
              : trans.__('cell')}
          </span>
          <Who identity={cell.identity} trans={trans} />
          <Times kernelTime={cell.kernelTime} time={cell.time} trans={trans} />
        </span>
        <span className="jp-AuditTrail-summary">
          {cell.code !== null
            ? firstLine(cell.code) || trans.__('(empty cell)')
            : trans.__('(code not recorded)')}
        </span>
        {failed && (
          <span
            className="jp-AuditTrail-flag jp-mod-failed-cells"
            data-flag="failed_cells"
          >
            <span aria-hidden="true">✖ </span>
            {error
              ? trans.__(
                  'failed (%1): %2',
                  revealText(cell.status ?? ''),
                  error
                )
              : trans.__('failed (%1)', revealText(cell.status ?? ''))}
          </span>
        )}
        {cell.broken && <Broken trans={trans} />}
      </button>
      {selected && <CellDetail cell={cell} services={services} />}
      {cell.ops.length > 0 && (
        <ol
          className="jp-AuditTrail-ops"
          aria-label={trans.__('Operations of the cell')}
        >
          {cell.ops.map(op => (
            <OpRow
              key={op.seq}
              op={op}
              cell={cell}
              model={model}
              services={services}
            />
          ))}
        </ol>
      )}
    </li>
  );
}

function EventRow(props: {
  event: ITraceEvent;
  model: AuditTrailModel;
  services: IViewServices;
}): React.ReactElement {
  const { event, model, services } = props;
  const trans = services.trans;
  const summary = summarizeEvent(event);
  const selected =
    model.selectedEvent?.seq === event.seq && model.selectedCell === null;
  return (
    <li
      className={`jp-AuditTrail-step${event.broken ? ' jp-mod-broken' : ''}${selected ? ' jp-mod-selected' : ''}`}
      data-seq={event.seq}
    >
      <button
        type="button"
        className="jp-AuditTrail-event"
        data-seq={event.seq}
        aria-expanded={selected}
        onClick={() => model.select(selected ? null : event)}
      >
        <span className="jp-AuditTrail-eventHead">
          <span className="jp-AuditTrail-seq">#{event.seq}</span>
          <span className="jp-AuditTrail-kind">{revealText(event.kind)}</span>
          <Who identity={event.identity} trans={trans} />
          <Times
            kernelTime={event.kernel_time}
            time={event.time}
            trans={trans}
          />
        </span>
        <span
          className={`jp-AuditTrail-summary${summary === event.kind ? ' jp-mod-fallback' : ''}`}
          title={summary}
        >
          {summary}
        </span>
        {event.broken && <Broken trans={trans} />}
      </button>
      {selected && <EventDetail event={event} services={services} />}
    </li>
  );
}

function StepRow(props: {
  step: Step;
  model: AuditTrailModel;
  services: IViewServices;
}): React.ReactElement {
  const { step, model, services } = props;
  return step.type === 'cell' ? (
    <CellRow cell={step} model={model} services={services} />
  ) : (
    <EventRow event={step.event} model={model} services={services} />
  );
}

/** Loads the next page when the end of the window scrolls into view. */
function useLoadLaterOnScroll(
  model: AuditTrailModel,
  sentinel: React.RefObject<HTMLElement>,
  events: ITraceEvent[] | undefined
): void {
  React.useEffect(() => {
    const el = sentinel.current;
    if (!el || typeof IntersectionObserver === 'undefined') {
      return;
    }
    // A new observer per window: its first report says whether the end is
    // still in view after a page arrived, so short pages keep loading.
    const observer = new IntersectionObserver(entries => {
      if (entries.some(e => e.isIntersecting)) {
        void model.loadLater();
      }
    });
    observer.observe(el);
    return () => observer.disconnect();
  }, [model, sentinel, events]);
}

export function Timeline(props: {
  model: AuditTrailModel;
  services: IViewServices;
}): React.ReactElement {
  const { model, services } = props;
  const trans = services.trans;
  const detail = model.detail;
  const trace = detail?.trace ?? null;
  const heading = React.useRef<HTMLHeadingElement>(null);
  const sentinel = React.useRef<HTMLDivElement>(null);
  const list = React.useRef<HTMLOListElement>(null);
  const anchor = React.useRef<{ seq: string; top: number } | null>(null);

  // Focus moves into the opened trace (once its heading is there: a trace
  // opened by id, not from the list, has it only when its first page came).
  const hasHeading = trace !== null;
  React.useEffect(() => {
    heading.current?.focus();
  }, [model.selectedTraceId, hasHeading]);

  useLoadLaterOnScroll(model, sentinel, detail?.events);

  // Earlier events were put above: keep the step that was on top in place.
  React.useLayoutEffect(() => {
    const saved = anchor.current;
    if (!saved || !list.current) {
      return;
    }
    const el = list.current.querySelector<HTMLElement>(
      `:scope > li[data-seq="${saved.seq}"]`
    );
    const scroller = list.current.closest('.jp-AuditTrail-view');
    if (el && scroller) {
      scroller.scrollTop += el.getBoundingClientRect().top - saved.top;
    }
    anchor.current = null;
  }, [detail?.events]);

  const loadEarlier = (): void => {
    const first = list.current?.querySelector<HTMLElement>(':scope > li');
    anchor.current = first
      ? { seq: first.dataset.seq ?? '', top: first.getBoundingClientRect().top }
      : null;
    void model.loadEarlier();
  };

  // Never draw events beside an error: they may not be this user's to see.
  const steps = model.detailError ? [] : model.steps;
  const events = model.detailError ? [] : (detail?.events ?? []);
  const integrity = detail?.integrity ?? null;
  return (
    <section className="jp-AuditTrail-timeline">
      <button
        type="button"
        className="jp-AuditTrail-back"
        onClick={() => model.closeTrace()}
        title={trans.__('Back to traces (Escape)')}
      >
        <caretLeftIcon.react tag="span" className="jp-AuditTrail-backIcon" />
        {trans.__('Back to traces')}
      </button>
      {trace && (
        <div className="jp-AuditTrail-traceInfo">
          <h3 className="jp-AuditTrail-traceHead" tabIndex={-1} ref={heading}>
            <NotebookNames trace={trace} trans={trans} />
            <StatusBadge status={trace.status} />
          </h3>
          <Participants trace={trace} trans={trans} />
          <div className="jp-AuditTrail-traceMeta">
            <time dateTime={trace.started_at}>
              {formatTime(trace.started_at)}
            </time>
            {' – '}
            <time dateTime={trace.last_at}>{formatTime(trace.last_at)}</time>
            {typeof trace.duration_s === 'number' &&
              ` (${formatSeconds(trace.duration_s)})`}
          </div>
          <div className="jp-AuditTrail-counts">{counts(trace, trans)}</div>
          <Flags trace={trace} trans={trans} />
          <div
            className="jp-AuditTrail-traceId"
            title={revealText(trace.kernel_id ?? '')}
          >
            {trans.__('Trace %1', revealText(trace.trace_id))}
          </div>
          {integrity && (
            <div
              className={`jp-AuditTrail-integrityBadge ${integrity.ok ? 'jp-mod-ok' : 'jp-mod-broken'}`}
              role={integrity.ok ? undefined : 'alert'}
            >
              <span aria-hidden="true">{integrity.ok ? '✔ ' : '⊘ '}</span>
              {traceIntegrityLabel(integrity, trans)}
            </div>
          )}
          <div className="jp-AuditTrail-traceActions">
            <button
              type="button"
              className="jp-AuditTrail-export jp-mod-styled"
              onClick={() => void services.download({ trace: trace.trace_id })}
            >
              {trans.__('Export evidence bundle')}
            </button>
            <button
              type="button"
              className="jp-AuditTrail-jumpFirst jp-mod-styled"
              disabled={detail?.prevBeforeSeq === null}
              onClick={() => void model.jumpTo('first')}
            >
              {trans.__('Start')}
            </button>
            <button
              type="button"
              className="jp-AuditTrail-jumpLast jp-mod-styled"
              disabled={detail?.nextAfterSeq === null}
              onClick={() => void model.jumpTo('last')}
            >
              {trans.__('End')}
            </button>
          </div>
        </div>
      )}
      {model.detailError && (
        <ErrorBox error={model.detailError} trans={trans} />
      )}
      {!model.detailLoaded && !model.detailError && (
        <div className="jp-AuditTrail-placeholder">{trans.__('Loading…')}</div>
      )}
      {model.detailLoaded && events.length === 0 && (
        <div className="jp-AuditTrail-placeholder">
          {trans.__('This trace has no events.')}
        </div>
      )}
      {model.detailLoaded &&
        detail !== null &&
        detail.prevBeforeSeq !== null && (
          <button
            type="button"
            className="jp-AuditTrail-loadEarlier jp-mod-styled"
            onClick={loadEarlier}
          >
            {trans.__('Show earlier events')}
          </button>
        )}
      {events.length > 0 && (
        <>
          <div className="jp-AuditTrail-window" aria-live="polite">
            {detail?.total
              ? trans.__(
                  'Records #%1–#%2 of %3 in this trace',
                  events[0].seq,
                  events[events.length - 1].repeat?.last_seq ??
                    events[events.length - 1].seq,
                  detail.total
                )
              : ''}
          </div>
          <ol
            className="jp-AuditTrail-events"
            aria-label={trans.__('Timeline')}
            ref={list}
          >
            {steps.map(step => (
              <StepRow
                key={step.key}
                step={step}
                model={model}
                services={services}
              />
            ))}
          </ol>
        </>
      )}
      {model.detailLoaded &&
        detail !== null &&
        detail.nextAfterSeq !== null && (
          <div ref={sentinel} className="jp-AuditTrail-more">
            <button
              type="button"
              className="jp-AuditTrail-loadLater jp-mod-styled"
              onClick={() => void model.loadLater()}
            >
              {model.pageLoading
                ? trans.__('Loading…')
                : trans.__('Show later events')}
            </button>
          </div>
        )}
      {model.detailLoaded &&
        detail?.nextAfterSeq === null &&
        events.length > 0 && (
          <div className="jp-AuditTrail-end">
            {trans.__('End of the trace')}
          </div>
        )}
    </section>
  );
}
