/**
 * Pure grouping of a trace's events into the steps the timeline shows: one
 * step per cell (its `cell.*` records, with its operations nested under it)
 * and one per other record, in the order they happened in the kernel. Also
 * the facts an operation row shows. Returns data and plain text only.
 */
import { revealText } from './reveal';
import type { IIdentity, ITraceEvent } from './tokens';

/** A cell run: its records merged, its operations in trail order. */
export interface ICellStep {
  type: 'cell';
  /** Stable React key. */
  key: string;
  msgId: string;
  /** JupyterLab's cell id, when the frontend sent it. */
  cellId: string | null;
  code: string | null;
  executionCount: number | null;
  /** `ok`, `error`, `aborted`… from `cell.finished`; null while running. */
  status: string | null;
  error: unknown;
  durationUs: number | null;
  identity: IIdentity | null;
  /** When the cell ran in the kernel, or null if the kernel did not say. */
  kernelTime: string | null;
  /** When the server recorded its first record. */
  time: string;
  notebook: string | null;
  /** Every record of the cell (cell.* and operations), in `seq` order. */
  events: ITraceEvent[];
  /** The operations (`op.*`, `approval.*`) only. */
  ops: ITraceEvent[];
  /** Whether any of its records fails verification. */
  broken: boolean;
  /** Any record of the cell was folded, flagged or failed: worth a look. */
  risky: boolean;
}

/** Any record that belongs to no cell: a session's start, a save, an access. */
export interface IEventStep {
  type: 'event';
  key: string;
  event: ITraceEvent;
}

export type Step = ICellStep | IEventStep;

/**
 * Milliseconds since the epoch of an ISO 8601 time, keeping microseconds as
 * a fraction (the trail records them; `Date.parse` keeps only milliseconds).
 * NaN for anything unparsable.
 */
export function timeValue(iso: string | null | undefined): number {
  if (!iso) {
    return NaN;
  }
  const match = /^(.*T\d\d:\d\d:\d\d)(?:[.,](\d+))?(.*)$/.exec(iso);
  if (!match) {
    return Date.parse(iso);
  }
  const [, head, fraction = '', zone] = match;
  const base = Date.parse(`${head}${zone}`);
  const ms = fraction ? Number(`0.${fraction}`) * 1000 : 0;
  return base + ms;
}

/** When a step happened: the kernel's time when known, else the server's. */
export function stepTime(step: Step): string {
  if (step.type === 'cell') {
    return step.kernelTime ?? step.time;
  }
  return step.event.kernel_time ?? step.event.time;
}

function firstSeq(step: Step): number {
  return step.type === 'cell' ? step.events[0].seq : step.event.seq;
}

function isCellRecord(kind: string): boolean {
  return kind.startsWith('cell.') && kind !== 'cell.unreported';
}

function num(value: unknown): number | null {
  return typeof value === 'number' && isFinite(value) ? value : null;
}

function str(value: unknown): string | null {
  return typeof value === 'string' ? value : null;
}

function earliest(
  a: string | null,
  b: string | null | undefined
): string | null {
  if (!b) {
    return a;
  }
  if (a === null) {
    return b;
  }
  return timeValue(b) < timeValue(a) ? b : a;
}

/**
 * The steps of a run of events: records sharing a `msg_id` that include a
 * `cell.*` record form one cell (an operation of a cell whose `cell.*`
 * records are on another page still joins a cell step of its own, so no
 * record is ever dropped); the rest stand alone. Sorted by kernel time (the
 * server's time where the kernel gave none), then by `seq`.
 */
export function buildSteps(events: ITraceEvent[]): Step[] {
  const cellIds = new Set<string>();
  for (const event of events) {
    if (
      event.msg_id &&
      (isCellRecord(event.kind) || event.kind.startsWith('op.'))
    ) {
      cellIds.add(event.msg_id);
    }
  }
  const cells = new Map<string, ICellStep>();
  const steps: Step[] = [];
  for (const event of [...events].sort((a, b) => a.seq - b.seq)) {
    const msgId = event.msg_id;
    if (!msgId || !cellIds.has(msgId)) {
      steps.push({ type: 'event', key: `e${event.seq}`, event });
      continue;
    }
    let cell = cells.get(msgId);
    if (!cell) {
      cell = {
        type: 'cell',
        key: `c${msgId}`,
        msgId,
        cellId: null,
        code: null,
        executionCount: null,
        status: null,
        error: null,
        durationUs: null,
        identity: event.identity,
        kernelTime: null,
        time: event.time,
        notebook: event.notebook ?? null,
        events: [],
        ops: [],
        broken: false,
        risky: false
      };
      cells.set(msgId, cell);
      steps.push(cell);
    }
    addToCell(cell, event);
  }
  return steps.sort((a, b) => {
    const delta = timeValue(stepTime(a)) - timeValue(stepTime(b));
    return isNaN(delta) || delta === 0 ? firstSeq(a) - firstSeq(b) : delta;
  });
}

function addToCell(cell: ICellStep, event: ITraceEvent): void {
  const payload = event.payload ?? {};
  cell.events.push(event);
  cell.broken = cell.broken || event.broken === true;
  cell.kernelTime = earliest(cell.kernelTime, event.kernel_time);
  if (!isCellRecord(event.kind)) {
    cell.ops.push(event);
    if (event.risk || (event.repeat?.errors ?? 0) > 0 || str(payload.error)) {
      cell.risky = true;
    }
    return;
  }
  if (event.kind === 'cell.requested' || event.kind === 'cell.started') {
    // The requester is who asked the kernel to run it.
    cell.identity =
      event.kind === 'cell.requested'
        ? event.identity
        : (cell.identity ?? event.identity);
  }
  cell.code = cell.code ?? str(payload.code);
  cell.cellId = cell.cellId ?? str(payload.cell_id);
  cell.executionCount = cell.executionCount ?? num(payload.execution_count);
  if (event.kind === 'cell.finished') {
    cell.status = str(payload.status);
    cell.error = payload.error ?? null;
    cell.durationUs = num(payload.duration_us);
  }
}

/** Whether a cell failed (`cell.finished` with a status other than ok). */
export function cellFailed(cell: ICellStep): boolean {
  return cell.status !== null && cell.status !== 'ok';
}

/** The host of a URL, or the URL itself when it does not parse. */
export function hostOf(url: string): string {
  try {
    return new URL(url).host || url;
  } catch {
    return url;
  }
}

/** `812 µs`, `35.1 ms`, `4.20 s`, `3 min 5 s`; empty for no value. */
export function formatDurationUs(us: number | null | undefined): string {
  if (us === null || us === undefined || !isFinite(us) || us < 0) {
    return '';
  }
  if (us < 1000) {
    return `${Math.round(us)} µs`;
  }
  if (us < 1e6) {
    return `${(us / 1000).toFixed(us < 1e4 ? 2 : 1)} ms`;
  }
  return formatSeconds(us / 1e6);
}

/** `4.20 s`, `3 min 5 s`, `2 h 4 min`; empty for no value. */
export function formatSeconds(s: number | null | undefined): string {
  if (s === null || s === undefined || !isFinite(s) || s < 0) {
    return '';
  }
  if (s < 60) {
    return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  }
  const minutes = Math.floor(s / 60);
  if (minutes < 60) {
    return `${minutes} min ${Math.floor(s % 60)} s`;
  }
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/** One labelled fact of an operation, e.g. `['rows', '42']`. */
export type Fact = [label: string, value: string];

/**
 * What an operation row shows beside its statement: SQL type, tables, rows,
 * duration, error; HTTP method, host, status, duration, error; shell exit
 * code, duration, error. Labels are English keys the view translates.
 */
export function opFacts(event: Pick<ITraceEvent, 'kind' | 'payload'>): Fact[] {
  const p = event.payload ?? {};
  const facts: Fact[] = [];
  const add = (label: string, value: string | null): void => {
    if (value !== null && value !== '') {
      facts.push([label, revealText(value)]);
    }
  };
  const number = (v: unknown): string | null => {
    const n = num(v);
    return n === null ? null : String(n);
  };
  if (event.kind === 'op.sql') {
    add('type', str(p.statement_type));
    const tables = Array.isArray(p.tables)
      ? p.tables.filter(t => typeof t === 'string')
      : [];
    add('tables', tables.join(', '));
    add('rows', number(p.rowcount));
  } else if (event.kind === 'op.http') {
    add('method', str(p.method));
    const url = str(p.url);
    add('host', url === null ? null : hostOf(url));
    add('status', number(p.status));
  } else if (event.kind === 'op.shell') {
    add('exit code', number(p.exit_code));
  }
  add('duration', formatDurationUs(num(p.duration_us)));
  add('error', str(p.error));
  return facts;
}

/** The text of a cell's error as the kernel reported it (`ename: evalue`). */
export function errorText(error: unknown): string | null {
  if (typeof error === 'string') {
    return revealText(error);
  }
  if (error && typeof error === 'object') {
    const e = error as { [key: string]: unknown };
    const name = str(e.ename);
    const value = str(e.evalue);
    if (name || value) {
      return revealText([name, value].filter(Boolean).join(': '));
    }
    return revealText(JSON.stringify(error));
  }
  return null;
}

/** The highest `seq` a run of events covers, counting folded repeats. */
export function lastCoveredSeq(events: ITraceEvent[]): number | null {
  let last: number | null = null;
  for (const event of events) {
    const seq = Math.max(event.seq, event.repeat?.last_seq ?? event.seq);
    last = last === null ? seq : Math.max(last, seq);
  }
  return last;
}
