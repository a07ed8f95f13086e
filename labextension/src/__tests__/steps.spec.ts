import { describe, expect, it } from 'vitest';

import {
  buildSteps,
  cellFailed,
  errorText,
  formatDurationUs,
  formatSeconds,
  hostOf,
  lastCoveredSeq,
  opFacts,
  timeValue
} from '../steps';
import type { ICellStep } from '../steps';
import type { ITraceEvent } from '../tokens';

const alice = { username: 'alice', auth_method: 'oidc' };
const bot = { username: 'etl-bot', auth_method: 'token', token_owner: 'carol' };

function ev(
  seq: number,
  kind: string,
  fields: Partial<ITraceEvent> = {}
): ITraceEvent {
  return {
    seq,
    kind,
    time: '2024-05-01T10:00:00.000000+00:00',
    identity: alice,
    msg_id: null,
    payload: {},
    hash: `h${seq}`,
    ...fields
  };
}

describe('buildSteps', () => {
  it('puts cells in the order they ran in the kernel, not the order the server recorded them', () => {
    // The server received cell B's batch before cell A's.
    const events = [
      ev(1, 'session.started', { time: '2024-05-01T10:00:00Z' }),
      ev(2, 'cell.requested', {
        msg_id: 'B',
        payload: { code: 'b = 2', cell_id: 'cb' },
        kernel_time: '2024-05-01T10:00:05.000200Z'
      }),
      ev(3, 'cell.requested', {
        msg_id: 'A',
        payload: { code: 'a = 1\nprint(a)', cell_id: 'ca' },
        kernel_time: '2024-05-01T10:00:05.000100Z'
      }),
      ev(4, 'cell.finished', {
        msg_id: 'A',
        payload: {
          status: 'error',
          error: { ename: 'ZeroDivisionError', evalue: 'division by zero' },
          duration_us: 5
        },
        kernel_time: '2024-05-01T10:00:05.9Z'
      })
    ];
    const steps = buildSteps(events);
    expect(steps.map(s => s.key)).toEqual(['e1', 'cA', 'cB']);
    const a = steps[1] as ICellStep;
    expect(a.code).toBe('a = 1\nprint(a)');
    expect(a.cellId).toBe('ca');
    expect(a.status).toBe('error');
    expect(cellFailed(a)).toBe(true);
    expect(errorText(a.error)).toBe('ZeroDivisionError: division by zero');
    expect(a.kernelTime).toBe('2024-05-01T10:00:05.000100Z');
    expect(cellFailed(steps[2] as ICellStep)).toBe(false);
  });

  it('nests a cell’s operations under it and keeps who asked for the cell', () => {
    const steps = buildSteps([
      ev(5, 'cell.requested', {
        msg_id: 'm',
        identity: bot,
        payload: { code: 'run()' }
      }),
      ev(6, 'cell.started', { msg_id: 'm', identity: alice }),
      ev(7, 'op.sql', {
        msg_id: 'm',
        identity: bot,
        payload: { statement: 'DELETE FROM customers', rowcount: 50 },
        risk: { decision: 'review', rules: ['statement.where-required'] }
      }),
      ev(8, 'op.http', {
        msg_id: 'm',
        identity: bot,
        payload: { method: 'GET', url: 'https://x.org/a' },
        broken: true
      }),
      ev(9, 'cell.finished', { msg_id: 'm', payload: { status: 'ok' } })
    ]);
    expect(steps).toHaveLength(1);
    const cell = steps[0] as ICellStep;
    expect(cell.ops.map(o => o.seq)).toEqual([7, 8]);
    expect(cell.events.map(o => o.seq)).toEqual([5, 6, 7, 8, 9]);
    expect(cell.identity).toBe(bot);
    expect(cell.risky).toBe(true);
    expect(cell.broken).toBe(true);
  });

  it('never drops an operation whose cell records are on another page', () => {
    const steps = buildSteps([
      ev(20, 'op.sql', { msg_id: 'z', payload: { statement: 'SELECT 1' } }),
      ev(21, 'file.saved', { msg_id: null, payload: { path: 'a.ipynb' } }),
      ev(22, 'trail.accessed', { msg_id: 'q', payload: { action: 'export' } })
    ]);
    expect(steps.map(s => s.type)).toEqual(['cell', 'event', 'event']);
    expect((steps[0] as ICellStep).ops).toHaveLength(1);
    expect((steps[0] as ICellStep).code).toBeNull();
  });

  it('orders by seq when times are equal or unparsable', () => {
    const steps = buildSteps([
      ev(3, 'session.ended', { time: 'garbage' }),
      ev(1, 'session.started', { time: 'garbage' })
    ]);
    expect(steps.map(s => s.key)).toEqual(['e1', 'e3']);
  });
});

describe('timeValue', () => {
  it('keeps microseconds', () => {
    expect(
      timeValue('2024-05-01T10:00:00.000002+00:00') -
        timeValue('2024-05-01T10:00:00.000001Z')
    ).toBeGreaterThan(0);
    expect(timeValue(null)).toBeNaN();
  });
});

describe('opFacts', () => {
  it('shows SQL type, tables, rows, duration and error', () => {
    expect(
      opFacts({
        kind: 'op.sql',
        payload: {
          statement_type: 'DELETE',
          tables: ['customers', 3],
          rowcount: 50,
          duration_us: 812,
          error: 'locked'
        }
      })
    ).toEqual([
      ['type', 'DELETE'],
      ['tables', 'customers'],
      ['rows', '50'],
      ['duration', '812 µs'],
      ['error', 'locked']
    ]);
  });

  it('shows HTTP method, host, status; shell exit code', () => {
    expect(
      opFacts({
        kind: 'op.http',
        payload: {
          method: 'POST',
          url: 'https://api.example.org:8443/x?k=<MASKED>',
          status: 201,
          duration_us: 35120
        }
      })
    ).toEqual([
      ['method', 'POST'],
      ['host', 'api.example.org:8443'],
      ['status', '201'],
      ['duration', '35.1 ms']
    ]);
    expect(
      opFacts({ kind: 'op.shell', payload: { command: 'ls', exit_code: 2 } })
    ).toEqual([['exit code', '2']]);
    expect(opFacts({ kind: 'op.sql', payload: null })).toEqual([]);
  });

  it('takes a URL that does not parse as its own host', () => {
    expect(hostOf('not a url')).toBe('not a url');
  });
});

describe('durations', () => {
  it('reads at a glance', () => {
    expect(formatDurationUs(90)).toBe('90 µs');
    expect(formatDurationUs(1200)).toBe('1.20 ms');
    expect(formatDurationUs(4_200_000)).toBe('4.20 s');
    expect(formatDurationUs(null)).toBe('');
    expect(formatSeconds(185)).toBe('3 min 5 s');
    expect(formatSeconds(7440)).toBe('2 h 4 min');
    expect(formatSeconds(-1)).toBe('');
  });
});

describe('lastCoveredSeq', () => {
  it('counts the records a folded row stands for', () => {
    expect(
      lastCoveredSeq([
        ev(1, 'op.sql'),
        ev(2, 'op.sql', {
          repeat: { count: 3, first_seq: 2, last_seq: 9, errors: 0 }
        })
      ])
    ).toBe(9);
    expect(lastCoveredSeq([])).toBeNull();
  });
});
