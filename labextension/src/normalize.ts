/**
 * Pure functions that put the server's answers in the shape the model keeps:
 * the trace list newest first, a timeline's events in trail order. A missing
 * or malformed list becomes an empty one rather than an error.
 */
import { newestFirst } from './format';
import type {
  ITraceDetail,
  ITraceEvent,
  ITraceList,
  ITraceSummary
} from './tokens';

/** The traces of a `GET traces` answer, newest first. */
export function traceList(
  value: ITraceList | null | undefined
): ITraceSummary[] {
  const traces = value?.traces;
  return newestFirst(Array.isArray(traces) ? traces : []);
}

/** A `GET traces/{trace_id}` answer with its events in ascending `seq`. */
export function timeline(detail: ITraceDetail): ITraceDetail {
  return {
    trace: detail.trace,
    events: Array.isArray(detail.events)
      ? [...detail.events].sort((a, b) => a.seq - b.seq)
      : []
  };
}

/**
 * An event as the views can rely on it. A record that no longer reads as
 * JSON (tampered) comes as `{seq, kind: null, payload: null, broken: true}`:
 * it becomes kind `(unreadable record)` with no time, identity or cell.
 */
export function readableEvent(event: ITraceEvent): ITraceEvent {
  if (
    typeof event.kind === 'string' &&
    typeof event.time === 'string' &&
    event.identity !== undefined &&
    event.msg_id !== undefined
  ) {
    return event;
  }
  return {
    ...event,
    kind: typeof event.kind === 'string' ? event.kind : '(unreadable record)',
    time: typeof event.time === 'string' ? event.time : '',
    identity: event.identity ?? null,
    msg_id: event.msg_id ?? null,
    payload: event.payload ?? null,
    hash: event.hash ?? ''
  };
}
