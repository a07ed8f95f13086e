import { describe, expect, it } from 'vitest';

import { timeline, traceList } from '../normalize';
import type {
  ITraceDetail,
  ITraceEvent,
  ITraceList,
  ITraceSummary
} from '../tokens';

function trace(trace_id: string, started_at: string): ITraceSummary {
  return {
    trace_id,
    kernel_id: null,
    notebook: null,
    started_at,
    last_at: started_at,
    events: 0,
    cells: 0,
    operations: 0,
    users: [],
    status: 'ended'
  };
}

function event(seq: number): ITraceEvent {
  return {
    seq,
    kind: 'cell.executed',
    time: '2024-01-01T00:00:00Z',
    identity: null,
    msg_id: null,
    payload: null,
    hash: `h${seq}`
  };
}

describe('traceList', () => {
  it('returns the traces newest first', () => {
    const list: ITraceList = {
      traces: [
        trace('old', '2024-01-01T00:00:00Z'),
        trace('new', '2024-03-01T00:00:00Z'),
        trace('mid', '2024-02-01T00:00:00Z')
      ]
    };
    expect(traceList(list).map(t => t.trace_id)).toEqual(['new', 'mid', 'old']);
  });

  it('returns an empty list for an empty, missing or malformed answer', () => {
    expect(traceList({ traces: [] })).toEqual([]);
    expect(traceList(null)).toEqual([]);
    expect(traceList(undefined)).toEqual([]);
    const malformed = [
      {},
      { traces: null },
      { traces: 'none' },
      { traces: {} }
    ];
    for (const value of malformed) {
      expect(traceList(value as unknown as ITraceList)).toEqual([]);
    }
  });

  it('does not reorder the answer it was given', () => {
    const traces = [
      trace('a', '2024-01-01T00:00:00Z'),
      trace('b', '2024-02-01T00:00:00Z')
    ];
    traceList({ traces });
    expect(traces.map(t => t.trace_id)).toEqual(['a', 'b']);
  });
});

describe('timeline', () => {
  const summary = trace('t', '2024-01-01T00:00:00Z');

  it('sorts the events by ascending seq, numerically', () => {
    const detail: ITraceDetail = {
      trace: summary,
      events: [event(10), event(2), event(100), event(1)]
    };
    const result = timeline(detail);
    expect(result.trace).toBe(summary);
    expect(result.events.map(e => e.seq)).toEqual([1, 2, 10, 100]);
  });

  it('does not reorder the answer it was given', () => {
    const events = [event(3), event(1)];
    timeline({ trace: summary, events });
    expect(events.map(e => e.seq)).toEqual([3, 1]);
  });

  it('gives a trace without a list of events no events', () => {
    for (const events of [undefined, null, 'x', { 0: event(1) }]) {
      const detail = { trace: summary, events } as unknown as ITraceDetail;
      expect(timeline(detail)).toEqual({ trace: summary, events: [] });
    }
  });
});
