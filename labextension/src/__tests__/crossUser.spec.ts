import { describe, expect, it, vi } from 'vitest';

// The model's base class only adds `stateChanged` and disposal; the real one
// loads JupyterLab's DOM widgets, which this Node test has no DOM for.
vi.mock('@jupyterlab/ui-components', async () => {
  const { Signal } = await import('@lumino/signaling');
  class VDomModel {
    readonly stateChanged = new Signal<this, void>(this);
    isDisposed = false;
    dispose(): void {
      this.isDisposed = true;
    }
  }
  return { VDomModel };
});

import { ServerConnection } from '@jupyterlab/services';

import { ApprovalsModel } from '../approvals';
import { AuditTrailModel } from '../model';
import { SessionWatch } from '../session';

type Who = 'alice' | 'gone' | 'bob';

/**
 * A stand-in for the server (which cannot run inside vitest): alice sees her
 * trace with a secret in a cell and a decided approval; bob sees nothing of
 * hers (403 on her trace); `gone` is a session that ended (401).
 */
function server(state: { who: Who }) {
  return ServerConnection.makeSettings({
    baseUrl: 'http://jupyter.test/',
    fetch: async (input: RequestInfo | URL) => {
      const url = new URL((input as Request).url);
      const reply = (status: number, body: unknown) =>
        new Response(JSON.stringify(body), { status });
      const who = state.who;
      if (who === 'gone') {
        return reply(401, { reason: 'session_ended', message: 'signed out' });
      }
      if (url.pathname.endsWith('/me')) {
        return reply(200, { username: who, roles: [], identity: {} });
      }
      if (url.pathname.endsWith('/traces')) {
        const traces =
          who === 'alice'
            ? [
                {
                  trace_id: 'trace-1',
                  kernel_id: null,
                  notebook: 'alice-secret.ipynb',
                  notebooks: [],
                  started_at: '2024-01-01T00:00:00Z',
                  last_at: '2024-01-01T00:00:00Z',
                  events: 1,
                  cells: 1,
                  operations: 0,
                  users: ['alice'],
                  status: 'running'
                }
              ]
            : [];
        return reply(200, { traces, next: null });
      }
      if (url.pathname.endsWith('/approvals')) {
        const all = url.searchParams.get('state') === 'all';
        return reply(200, {
          approvals:
            who === 'alice' && all
              ? [
                  {
                    id: 7,
                    state: 'denied',
                    requester: 'alice',
                    statement: "UPDATE pay SET x=1 WHERE name='alice'"
                  }
                ]
              : []
        });
      }
      if (/approvals\/\d+$/.test(url.pathname)) {
        return reply(404, { message: 'no such request' });
      }
      if (who === 'bob') {
        return reply(403, { message: 'not yours' });
      }
      return reply(200, {
        trace: { trace_id: 'trace-1', notebook: 'alice-secret.ipynb' },
        events: [
          {
            seq: 1,
            kind: 'cell.requested',
            time: '2024-01-01T00:00:00Z',
            identity: { username: 'alice' },
            msg_id: 'm',
            payload: { code: 'password = "hunter2"' },
            hash: 'h'
          }
        ],
        next_after_seq: null,
        prev_before_seq: null,
        total: 1,
        integrity: { ok: true }
      });
    }
  });
}

function setUp(state: { who: Who }) {
  const serverSettings = server(state);
  const session = new SessionWatch({
    serverSettings,
    here: () => ({ pathname: '/lab', search: '', hash: '' })
  });
  const model = new AuditTrailModel({ serverSettings, session });
  const approvals = new ApprovalsModel({ serverSettings, session });
  return { session, model, approvals };
}

describe('another user signing in without a reload', () => {
  it('drops the first user’s traces, open trace and filters', async () => {
    const state = { who: 'alice' as Who };
    const { session, model, approvals } = setUp(state);
    await model.refresh();
    await model.setFilter({ q: 'secret' });
    await model.openTrace('trace-1');
    expect(model.detail?.events[0].payload?.code).toContain('hunter2');

    state.who = 'gone';
    await model.refresh();
    expect(model.sessionEnd).not.toBeNull();
    expect(model.detail).toBeNull();
    expect(model.traces).toBeNull();

    state.who = 'bob'; // signs in in another tab of the same browser
    await session.check(); // the page is shown again
    expect(model.sessionEnd).toBeNull();
    expect(model.selectedTraceId).toBeNull();
    expect(model.filter).toEqual({});
    await model.refresh();
    expect(model.me?.username).toBe('bob');
    expect(model.detail).toBeNull();
    expect(model.traces).toEqual([]);
    model.dispose();
    approvals.dispose();
  });

  it('drops them when GET me names someone else, with no 401 between', async () => {
    const state = { who: 'alice' as Who };
    const { model, approvals } = setUp(state);
    await model.refresh();
    await model.openTrace('trace-1');
    expect(model.traces?.length).toBe(1);
    state.who = 'bob';
    await model.refresh();
    expect(model.me?.username).toBe('bob');
    expect(model.selectedTraceId).toBeNull();
    expect(model.detail).toBeNull();
    expect(model.traces).toEqual([]);
    model.dispose();
    approvals.dispose();
  });

  it('drops a trace’s events when the server answers 403', async () => {
    const state = { who: 'alice' as Who };
    const serverSettings = server(state);
    const model = new AuditTrailModel({ serverSettings });
    await model.refresh();
    await model.openTrace('trace-1');
    expect(model.detail?.events.length).toBe(1);
    // the server no longer lets this page see it (e.g. a role was removed)
    state.who = 'bob';
    await model.openTrace('trace-1');
    expect(model.detailError?.status).toBe(403);
    expect(model.detail).toBeNull();
    expect(model.steps).toEqual([]);
    model.dispose();
  });

  it('resets the approvals: decided list, reasons and outcomes', async () => {
    const state = { who: 'alice' as Who };
    const { session, model, approvals } = setUp(state);
    await model.refresh();
    await approvals.refresh();
    expect(approvals.recent.map(a => a.id)).toEqual([7]);
    approvals.setReason(7, 'alice was typing this');

    state.who = 'bob';
    await session.check();
    expect(approvals.recent).toEqual([]);
    expect(approvals.pending).toBeNull();
    expect(approvals.reason(7)).toBe('');
    await approvals.refresh();
    expect(approvals.recent).toEqual([]);
    model.dispose();
    approvals.dispose();
  });
});
