/* eslint-disable jupyter/require-disposable-transfer -- newModel() disposes every model after its test */
import { afterEach, describe, expect, it, vi } from 'vitest';

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

import { AuditTrailModel, mergePage } from '../model';
import type { ITraceDetail, ITraceEvent, ITraceSummary } from '../tokens';

const summary: ITraceSummary = {
  trace_id: 'trace-1',
  kernel_id: 'k',
  notebook: 'b.ipynb',
  notebooks: ['a.ipynb', 'b.ipynb'],
  started_at: '2024-01-01T00:00:00Z',
  last_at: '2024-01-01T01:00:00Z',
  events: 0,
  cells: 0,
  operations: 0,
  users: ['alice'],
  status: 'running'
};

function event(seq: number, fields: Partial<ITraceEvent> = {}): ITraceEvent {
  return {
    seq,
    kind: 'op.sql',
    time: '2024-01-01T00:00:00Z',
    identity: { username: 'alice' },
    msg_id: `m${Math.floor(seq / 10)}`,
    payload: { statement: `SELECT ${seq}` },
    hash: `h${seq}`,
    ...fields
  };
}

/**
 * A stand-in for the server (which cannot run inside vitest) answering
 * `traces` and `traces/{id}` as /tmp/api-i15.md specifies, over `total`
 * events with seq 1..total, and recording every URL asked for.
 */
function contractServer(total: number, meStatus = 200) {
  const urls: string[] = [];
  let events = Array.from({ length: total }, (_, i) => event(i + 1));
  const settings = ServerConnection.makeSettings({
    baseUrl: 'http://jupyter.test/',
    fetch: async (input: RequestInfo | URL) => {
      const url = new URL((input as Request).url);
      // without the cache-busting number ServerConnection appends
      urls.push((url.pathname + url.search).replace(/&\d+$/, ''));
      const p = url.searchParams;
      const reply = (status: number, body: unknown) =>
        new Response(JSON.stringify(body), { status });
      if (url.pathname.endsWith('/me')) {
        return meStatus === 200
          ? reply(200, { username: 'rita', roles: [], identity: {} })
          : reply(meStatus, { message: 'Not Found' });
      }
      if (url.pathname.endsWith('/traces')) {
        const cursor = p.get('cursor');
        const all = [summary, { ...summary, trace_id: 'trace-0' }];
        return reply(200, {
          traces: cursor ? all.slice(1) : all.slice(0, 1),
          next: cursor ? null : 'page2'
        });
      }
      const limit = Number(p.get('limit'));
      let pool = events;
      if (p.get('msg_id')) {
        pool = pool.filter(e => e.msg_id === p.get('msg_id'));
      }
      let page: ITraceEvent[];
      if (p.get('page') === 'last') {
        page = pool.slice(-limit);
      } else if (p.has('after_seq')) {
        page = pool
          .filter(e => e.seq > Number(p.get('after_seq')))
          .slice(0, limit);
      } else if (p.has('before_seq')) {
        page = pool
          .filter(e => e.seq < Number(p.get('before_seq')))
          .slice(-limit);
      } else {
        page = pool.slice(0, limit);
      }
      const last = page.length ? page[page.length - 1].seq : null;
      const first = page.length ? page[0].seq : null;
      const detail: ITraceDetail = {
        trace: summary,
        events: page,
        next_after_seq:
          last !== null && last < pool[pool.length - 1].seq ? last : null,
        prev_before_seq: first !== null && first > pool[0].seq ? first : null,
        total: events.length,
        integrity: {
          ok: true,
          first_bad_seq: null,
          problem: null,
          checkpoint: null,
          verified_up_to: events.length
        }
      };
      return reply(200, detail);
    }
  });
  return {
    settings,
    urls,
    add: (n: number) => {
      const start = events.length;
      events = [
        ...events,
        ...Array.from({ length: n }, (_, i) => event(start + i + 1))
      ];
    },
    setEvents: (e: ITraceEvent[]) => {
      events = e;
    }
  };
}

const models: AuditTrailModel[] = [];
afterEach(() => models.splice(0).forEach(m => m.dispose()));

/** A model disposed after the test. */
function newModel(options: AuditTrailModel.IOptions): AuditTrailModel {
  const model = new AuditTrailModel(options);
  models.push(model);
  return model;
}

describe('AuditTrailModel paging', () => {
  it('pages through a long trace to its end, keeping a bounded window', async () => {
    const server = contractServer(20000);
    const model = newModel({ serverSettings: server.settings });
    model.eventPageSize = 500;
    await model.openTrace('trace-1');
    expect(model.detail?.events).toHaveLength(500);
    expect(model.detail?.prevBeforeSeq).toBeNull();
    let pages = 1;
    while (model.detail?.nextAfterSeq !== null) {
      await model.loadLater();
      pages++;
      expect(model.detail!.events.length).toBeLessThanOrEqual(2000);
    }
    expect(pages).toBe(40);
    const events = model.detail!.events;
    expect(events[events.length - 1].seq).toBe(20000);
    // contiguous: nothing skipped
    events.forEach(
      (e, i) => i > 0 && expect(e.seq).toBe(events[i - 1].seq + 1)
    );
    expect(model.detail!.prevBeforeSeq).toBe(events[0].seq);

    // scrolling back up loads what was trimmed
    await model.loadEarlier();
    expect(model.detail!.events[0].seq).toBe(events[0].seq - 500);
    expect(model.detail!.nextAfterSeq).toBe(model.detail!.events[1999].seq);
  });

  it('jumps to the last page, and appends new events live at the end', async () => {
    const server = contractServer(1200);
    const model = newModel({ serverSettings: server.settings });
    await model.openTrace('trace-1', 'last');
    expect(model.detail!.events[0].seq).toBe(701);
    expect(model.detail!.nextAfterSeq).toBeNull();
    server.add(3);
    await model.refresh();
    expect(model.detail!.events.map(e => e.seq).slice(-4)).toEqual([
      1200, 1201, 1202, 1203
    ]);
    expect(server.urls).toContain(
      '/jupyter-audit/api/traces/trace-1?limit=500&fold=1&after_seq=1200'
    );
  });

  it('serves a scroll that asks while a live update is on its way, after it', async () => {
    const server = contractServer(1200);
    const model = newModel({ serverSettings: server.settings });
    await model.openTrace('trace-1');
    await Promise.all([model.refresh(), model.loadLater()]);
    expect(model.detail!.events).toHaveLength(1000);
    expect(model.detail!.events[999].seq).toBe(1000);
  });

  it('does not append live while the window is not at the end', async () => {
    const server = contractServer(1200);
    const model = newModel({ serverSettings: server.settings });
    await model.openTrace('trace-1');
    server.add(3);
    await model.refresh();
    expect(model.detail!.events).toHaveLength(500);
    expect(model.detail!.events[499].seq).toBe(500);
    expect(model.detail!.total).toBe(1203);
  });

  it('expands a folded group into its records and folds it back', async () => {
    const server = contractServer(0);
    const folded = event(2, {
      msg_id: 'm',
      repeat: { count: 3, first_seq: 2, last_seq: 4, errors: 1 }
    });
    server.setEvents([
      event(1, { kind: 'cell.requested', msg_id: 'm', payload: { code: 'x' } }),
      event(2, { msg_id: 'm' }),
      event(3, { msg_id: 'm' }),
      event(4, {
        msg_id: 'm',
        payload: { statement: 'SELECT 2', error: 'boom' }
      }),
      event(5, {
        kind: 'cell.finished',
        msg_id: 'm',
        payload: { status: 'ok' }
      })
    ]);
    const model = newModel({ serverSettings: server.settings });
    await model.openTrace('trace-1');
    await model.toggleRepeat(folded);
    const expanded = model.expanded.get(2);
    expect(Array.isArray(expanded) && expanded.map(e => e.seq)).toEqual([
      2, 3, 4
    ]);
    expect(server.urls).toContain(
      '/jupyter-audit/api/traces/trace-1?limit=500&fold=0&after_seq=1&msg_id=m'
    );
    await model.toggleRepeat(folded);
    expect(model.expanded.has(2)).toBe(false);
  });

  it('loads more traces with the cursor and keeps them on a live refresh', async () => {
    const server = contractServer(1);
    const model = newModel({
      serverSettings: server.settings,
      traceLimit: 1
    });
    await model.setFilter({ q: 'DELETE', flags: ['risky'] });
    expect(model.traces).toHaveLength(1);
    expect(model.hasMoreTraces).toBe(true);
    await model.loadMoreTraces();
    expect(model.traces!.map(t => t.trace_id)).toEqual(['trace-1', 'trace-0']);
    expect(model.hasMoreTraces).toBe(false);
    expect(server.urls).toContain(
      '/jupyter-audit/api/traces?limit=1&cursor=page2&flag=risky&q=DELETE'
    );
    await model.refresh();
    expect(server.urls[server.urls.length - 1]).toMatch(
      /traces\?limit=2&flag=risky&q=DELETE$/
    );
  });

  it('keeps a 404 on me as the one error the view shows', async () => {
    const server = contractServer(1, 404);
    const model = newModel({ serverSettings: server.settings });
    await model.refresh();
    expect(model.meError?.status).toBe(404);
  });
});

describe('mergePage', () => {
  const page = (
    events: ITraceEvent[],
    next: number | null,
    prev: number | null
  ): ITraceDetail => ({
    trace: summary,
    events,
    next_after_seq: next,
    prev_before_seq: prev
  });

  it('takes today’s answer (no cursors) as the whole trace', () => {
    const w = mergePage(
      null,
      { trace: summary, events: [event(2), event(1)] },
      'replace'
    );
    expect(w.events.map(e => e.seq)).toEqual([1, 2]);
    expect(w.nextAfterSeq).toBeNull();
    expect(w.prevBeforeSeq).toBeNull();
  });

  it('trims the far end and moves its cursor', () => {
    const first = mergePage(
      null,
      page([event(1), event(2)], 2, null),
      'replace',
      3
    );
    const more = mergePage(
      first,
      page([event(3), event(4)], 4, 3),
      'append',
      3
    );
    expect(more.events.map(e => e.seq)).toEqual([2, 3, 4]);
    expect(more.prevBeforeSeq).toBe(2);
    expect(more.nextAfterSeq).toBe(4);
    const back = mergePage(more, page([event(1)], 1, null), 'prepend', 3);
    expect(back.events.map(e => e.seq)).toEqual([1, 2, 3]);
    expect(back.nextAfterSeq).toBe(3);
    expect(back.prevBeforeSeq).toBeNull();
  });
});

describe('an unreadable (tampered) record', () => {
  it('stays in the window as a broken step', () => {
    const w = mergePage(
      null,
      {
        trace: summary,
        events: [
          event(1),
          {
            seq: 2,
            kind: null,
            payload: null,
            broken: true,
            unreadable: true
          } as unknown as ITraceEvent
        ]
      },
      'replace'
    );
    expect(w.events[1]).toMatchObject({
      seq: 2,
      kind: '(unreadable record)',
      time: '',
      identity: null,
      msg_id: null,
      broken: true
    });
  });
});
