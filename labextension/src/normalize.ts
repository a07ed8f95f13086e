/**
 * Pure functions that put the server's answers in the shape the model keeps:
 * the trace list newest first, a timeline's events in trail order. A missing
 * or malformed list becomes an empty one rather than an error.
 */
import { newestFirst } from './format';
import type { ITraceDetail, ITraceList, ITraceSummary } from './tokens';

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
