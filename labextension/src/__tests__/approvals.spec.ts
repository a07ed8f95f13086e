import { afterEach, describe, expect, it } from 'vitest';

import { ServerConnection } from '@jupyterlab/services';
import { nullTranslator } from '@jupyterlab/translation';
import * as React from 'react';
import { renderToStaticMarkup } from 'react-dom/server';

import { ApprovalsModel, reasonProblem } from '../approvals';
import { ApprovalsSection } from '../approvalsView';
import type { IApproval, IMe } from '../tokens';

const BASE_URL = 'http://jupyter.test/';
const trans = nullTranslator.load('jupyter-audit');

interface ISeen {
  method: string;
  url: string;
  body: string;
}

/**
 * A stand-in for the broker's user REST API (the server side is tested with
 * a real server in tests/; here only the panel's half runs): `GET
 * approvals?state=pending`, `GET approvals/{id}`, `POST approvals/{id}`.
 */
function fakeBroker(
  approvals: IApproval[],
  onPost: (id: number, body: { decision: string; reason: string }) => Response
): { settings: ServerConnection.ISettings; seen: ISeen[] } {
  const seen: ISeen[] = [];
  const settings = ServerConnection.makeSettings({
    baseUrl: BASE_URL,
    fetch: async (input: RequestInfo | URL) => {
      const request = input as Request;
      const body = request.method === 'POST' ? await request.text() : '';
      const url = new URL(request.url);
      // ServerConnection appends a cache-busting timestamp: leave it out.
      const query = url.search.replace(/[?&]\d+$/, '');
      seen.push({ method: request.method, url: url.pathname + query, body });
      const path = url.pathname.replace('/jupyter-audit/api/', '');
      if (request.method === 'GET' && path === 'approvals') {
        const state = url.searchParams.get('state');
        return json(200, {
          approvals: approvals.filter(a => state === 'all' || a.state === state)
        });
      }
      const id = Number(path.split('/')[1]);
      const found = approvals.find(a => a.id === id);
      if (!found) {
        return json(404, { message: 'no such approval' });
      }
      if (request.method === 'POST') {
        return onPost(id, JSON.parse(body));
      }
      return json(200, found);
    }
  });
  return { settings, seen };
}

const models: ApprovalsModel[] = [];

/** A model on `settings`, disposed after the test. */
function track(settings: ServerConnection.ISettings): ApprovalsModel {
  const model = new ApprovalsModel({ serverSettings: settings });
  models.push(model);
  return model;
}

afterEach(() => {
  models.splice(0).forEach(model => model.dispose());
});

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'Content-Type': 'application/json' }
  });
}

function approval(overrides: Partial<IApproval> = {}): IApproval {
  return {
    id: 12,
    state: 'pending',
    requester: 'alice',
    statement: 'DELETE FROM customers',
    reasons: [
      {
        rule: 'statement.where-required',
        message: 'DELETE without WHERE on customers',
        action: 'review',
        tables: ['customers']
      }
    ],
    rules: ['statement.where-required'],
    kind: 'sql',
    notebook: 'cleanup.ipynb',
    cell_code: 'cur.execute("DELETE FROM customers")',
    kernel_id: 'k1',
    requested_at: '2026-12-06T14:02:00Z',
    expires_at: '2026-12-06T14:32:00Z',
    decisions: [],
    min_approvals: 1,
    ...overrides
  };
}

function me(username: string, roles: string[]): IMe {
  return {
    username,
    display_name: username,
    identity: { username },
    roles,
    trail: {
      events: 1,
      last_seq: 1,
      integrity: {
        ok: true,
        first_bad_seq: null,
        problem: null,
        checked_at: null
      }
    }
  };
}

function render(model: ApprovalsModel, user: IMe | null): string {
  return renderToStaticMarkup(
    React.createElement(ApprovalsSection, { model, me: user, trans })
  );
}

describe('reasonProblem', () => {
  it('requires a reason to deny, not to approve', () => {
    expect(reasonProblem('deny', '')).toMatch(/needs a reason/);
    expect(reasonProblem('deny', '  \n ')).toMatch(/needs a reason/);
    expect(reasonProblem('deny', 'not on a Friday')).toBeNull();
    expect(reasonProblem('approve', '')).toBeNull();
  });

  it('requires a reason from a break-glass approver who is not a reviewer', () => {
    expect(reasonProblem('approve', '', ['user', 'break-glass'])).toMatch(
      /break-glass/
    );
    expect(reasonProblem('approve', 'outage', ['break-glass'])).toBeNull();
    expect(
      reasonProblem('approve', '', ['user', 'reviewer', 'break-glass'])
    ).toBeNull();
  });
});

describe('ApprovalsModel', () => {
  it('lists the newest decided requests once, then follows them', async () => {
    const requests = [
      approval({ id: 3, state: 'denied' }),
      approval({ id: 5, state: 'executed' }),
      approval({ id: 7 })
    ];
    const { settings, seen } = fakeBroker(requests, () => json(500, {}));
    const model = track(settings);
    await model.refresh();
    await model.refresh();
    expect(model.pending?.map(a => a.id)).toEqual([7]);
    expect(model.recent.map(a => [a.id, a.state])).toEqual([
      [5, 'executed'],
      [3, 'denied']
    ]);
    expect(seen.filter(s => s.url.endsWith('state=all'))).toHaveLength(1);
  });

  it('loads the pending requests through the user REST API', async () => {
    const { settings, seen } = fakeBroker(
      [approval({ id: 13 }), approval({ id: 12 })],
      () => json(500, {})
    );
    const model = track(settings);
    await model.refresh();
    expect(seen.map(s => `${s.method} ${s.url}`)).toEqual([
      'GET /jupyter-audit/api/approvals?state=pending',
      'GET /jupyter-audit/api/approvals?state=all'
    ]);
    expect(model.pending?.map(a => a.id)).toEqual([12, 13]);
    expect(model.error).toBeNull();
  });

  it('posts the decision and reason, then moves the request to decided', async () => {
    const requests = [approval()];
    const { settings, seen } = fakeBroker(requests, (id, body) => {
      requests[0] = approval({
        state: 'approved',
        decisions: [
          {
            reviewer: 'bob',
            decision: body.decision,
            reason: body.reason,
            time: '2026-12-06T14:03:00Z',
            break_glass: false
          }
        ]
      });
      return json(200, requests[0]);
    });
    const model = track(settings);
    await model.refresh();
    model.setReason(12, '  checked with the data owner ');
    const outcome = await model.decide(12, 'approve');

    expect(outcome.ok).toBe(true);
    const post = seen.find(s => s.method === 'POST');
    expect(post?.url).toBe('/jupyter-audit/api/approvals/12');
    expect(JSON.parse(post!.body)).toEqual({
      decision: 'approve',
      reason: 'checked with the data owner'
    });
    expect(model.pending).toEqual([]);
    expect(model.recent.map(a => [a.id, a.state])).toEqual([[12, 'approved']]);
    expect(model.reason(12)).toBe('');
  });

  it('never sends a denial without a reason', async () => {
    const { settings, seen } = fakeBroker([approval()], () => json(200, {}));
    const model = track(settings);
    await model.refresh();
    const outcome = await model.decide(12, 'deny');
    expect(outcome).toMatchObject({ ok: false, status: 0 });
    expect(model.outcome(12)?.message).toMatch(/needs a reason/);
    expect(seen.filter(s => s.method === 'POST')).toEqual([]);
    expect(model.pending?.map(a => a.state)).toEqual(['pending']);
  });

  it("keeps the server's 403 reason and the request still pending", async () => {
    const { settings } = fakeBroker([approval()], () =>
      json(403, {
        code: 'own_request',
        message: 'alice cannot decide their own request'
      })
    );
    const model = track(settings);
    await model.refresh();
    const outcome = await model.decide(12, 'approve');
    expect(outcome).toEqual({
      ok: false,
      status: 403,
      message: 'alice cannot decide their own request'
    });
    expect(model.pending?.map(a => a.id)).toEqual([12]);
    const html = render(model, me('alice', ['user', 'reviewer', 'admin']));
    expect(html).toContain(
      'The server refused your decision: alice cannot decide their own request'
    );
    expect(html).toContain('role="alert"');
  });

  it('shows what became of a request that left the pending list', async () => {
    const requests = [approval()];
    const { settings } = fakeBroker(requests, () => json(500, {}));
    const model = track(settings);
    await model.refresh();
    requests[0] = approval({ state: 'denied' });
    await model.refresh();
    expect(model.pending).toEqual([]);
    expect(model.recent.map(a => [a.id, a.state])).toEqual([[12, 'denied']]);
  });

  it('after a 409 shows the state the server holds now', async () => {
    const requests = [approval()];
    const { settings } = fakeBroker(requests, () => {
      requests[0] = approval({ state: 'expired' });
      return json(409, { message: 'approval #12 is expired' });
    });
    const model = track(settings);
    await model.refresh();
    const outcome = await model.decide(12, 'approve');
    expect(outcome.status).toBe(409);
    expect(model.pending).toEqual([]);
    expect(model.recent.map(a => a.state)).toEqual(['expired']);
  });

  it('keeps a failed load as an error, not as an empty list', async () => {
    const settings = ServerConnection.makeSettings({
      baseUrl: BASE_URL,
      fetch: async () => json(403, { message: 'Forbidden' })
    });
    const model = track(settings);
    await model.refresh();
    expect(model.pending).toBeNull();
    expect(model.error?.status).toBe(403);
  });
});

describe('ApprovalsSection', () => {
  it('shows requester, notebook, statement, cell code, rules and times', async () => {
    const { settings } = fakeBroker([approval()], () => json(500, {}));
    const model = track(settings);
    await model.refresh();
    const html = render(model, me('bob', ['user', 'reviewer']));
    for (const text of [
      'asked by alice',
      'cleanup.ipynb',
      'DELETE FROM customers',
      'cur.execute(&quot;DELETE FROM customers&quot;)',
      'statement.where-required',
      'DELETE without WHERE on customers',
      'dateTime="2026-12-06T14:02:00Z"',
      'dateTime="2026-12-06T14:32:00Z"',
      'Approve',
      'Deny'
    ]) {
      expect(html).toContain(text);
    }
    expect(html).toContain('<label for="jp-AuditTrail-approvalReason-12"');
    expect(html).toContain('id="jp-AuditTrail-approvalReason-12"');
  });

  it('asks a break-glass member for a reason to approve too', async () => {
    const { settings } = fakeBroker([approval()], () => json(500, {}));
    const model = track(settings);
    await model.refresh();
    const glass = render(model, me('erin', ['user', 'break-glass']));
    expect(glass).toContain('Reason (required: you decide as break-glass)');
    expect(glass).toContain('Approve');
    const reviewer = render(
      model,
      me('bob', ['user', 'reviewer', 'break-glass'])
    );
    expect(reviewer).toContain('Reason (required to deny)');
  });

  it('renders HTML and markdown in every field as text', async () => {
    const evil = '<img src=x onerror=alert(1)><script>alert(2)</script>';
    const markdown = '**bold** [link](javascript:alert(3)) ![i](x)';
    const { settings } = fakeBroker(
      [
        approval({
          statement: `DELETE FROM t -- ${evil} ${markdown}`,
          requester: `<b>mallory</b>`,
          notebook: `${evil}.ipynb`,
          cell_code: `# ${markdown}\n${evil}`,
          params: [`${evil} ${markdown}`, { '<b>k</b>': evil }],
          kind: `<i>sql</i>`,
          reasons: [{ rule: `<u>r</u>`, message: evil }],
          rules: [`<s>x</s>`],
          decisions: [
            {
              reviewer: `<em>eve</em>`,
              decision: 'approve',
              reason: evil,
              time: '2026-12-06T14:03:00Z',
              break_glass: true
            }
          ],
          min_approvals: 2
        })
      ],
      () => json(500, {})
    );
    const model = track(settings);
    await model.refresh();
    const html = render(model, me('bob', ['user', 'reviewer']));
    for (const tag of ['<img', '<script', '<b>', '<i>', '<u>', '<s>', '<em>']) {
      expect(html).not.toContain(tag);
    }
    expect(html).not.toContain('<a ');
    expect(html).not.toContain('<strong');
    expect(html).toContain('&lt;img src=x onerror=alert(1)&gt;');
    expect(html).toContain('**bold** [link](javascript:alert(3))');
    expect(html).toContain('asked by &lt;b&gt;mallory&lt;/b&gt;');
    expect(html).toContain('(break-glass)');
  });

  it('shows the masked parameters as text, and nothing when there are none', async () => {
    const { settings } = fakeBroker(
      [
        approval({
          id: 1,
          statement: 'UPDATE customers SET name = ?',
          params: ['‹NAME:1a2b3c›', 7]
        }),
        approval({ id: 2, params: null }),
        approval({ id: 3 }),
        approval({ id: 4, params: [] }),
        approval({ id: 5, params: {} })
      ],
      () => json(500, {})
    );
    const model = track(settings);
    await model.refresh();
    const html = render(model, me('bob', ['user', 'reviewer']));
    expect(html).toContain('Parameters (masked)');
    expect(html).toContain('[&quot;‹NAME:1a2b3c›&quot;,7]');
    expect(html.match(/jp-AuditTrail-approvalParams/g)).toHaveLength(1);
  });

  it('shows what a direction override would hide', async () => {
    const { settings } = fakeBroker(
      [approval({ statement: 'DELETE FROM customers -- \u202eWHERE id = 1' })],
      () => json(500, {})
    );
    const model = track(settings);
    await model.refresh();
    const html = render(model, me('bob', ['user', 'reviewer']));
    expect(html).toContain('DELETE FROM customers -- ⟦U+202E⟧WHERE id = 1');
    expect(html).not.toContain('\u202e');
  });

  it('offers no decision to a user on their own request unless a reviewer', async () => {
    const { settings } = fakeBroker([approval()], () => json(500, {}));
    const model = track(settings);
    await model.refresh();
    const asUser = render(model, me('alice', ['user']));
    expect(asUser).toContain('(your request)');
    expect(asUser).not.toContain('jp-AuditTrail-approve');
    // A reviewer may try, and the server's refusal is shown (see above).
    const asReviewer = render(model, me('alice', ['user', 'reviewer']));
    expect(asReviewer).toContain('jp-AuditTrail-approve');
  });

  it('says when nothing waits', async () => {
    const { settings } = fakeBroker([], () => json(500, {}));
    const model = track(settings);
    await model.refresh();
    expect(render(model, me('bob', ['user']))).toContain(
      'Nothing waits for approval.'
    );
  });
});
