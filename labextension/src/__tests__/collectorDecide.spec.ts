import { describe, expect, it } from 'vitest';

import { ApprovalsModel } from '../approvals';
import {
  collectorPrefix,
  decideAtCollector,
  SIGN_IN_MESSAGE
} from '../collectorDecide';
import type { IApproval } from '../tokens';

interface ISeen {
  method: string;
  url: string;
  headers: Record<string, string>;
  credentials: string | undefined;
  body: string;
}

const APPROVAL: IApproval = {
  id: 7,
  state: 'approved',
  requester: 'alice',
  statement: 'DELETE FROM customers'
} as IApproval;

/**
 * A stand-in for the collector's browser API (the collector itself is tested
 * with a real Hub in tests/e2e): `GET session`, `POST approvals/{id}`.
 */
function fakeCollector(signedIn: boolean): {
  fetchFn: typeof fetch;
  seen: ISeen[];
} {
  const seen: ISeen[] = [];
  const fetchFn = (async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = String(input);
    const headers = (init?.headers ?? {}) as Record<string, string>;
    seen.push({
      method: init?.method ?? 'GET',
      url,
      headers,
      credentials: init?.credentials,
      body: String(init?.body ?? '')
    });
    if (!signedIn) {
      return new Response(
        JSON.stringify({
          code: 401,
          message: 'sign in',
          sign_in: '/services/jupyter-audit/jupyter-audit/sign-in'
        }),
        { status: 401 }
      );
    }
    if (url.endsWith('/api/session')) {
      return new Response(
        JSON.stringify({ username: 'bob', xsrf_token: 'x<s>rf' }),
        { status: 200 }
      );
    }
    if (headers['X-XSRFToken'] !== 'x<s>rf') {
      return new Response(JSON.stringify({ code: 403, message: 'XSRF' }), {
        status: 403
      });
    }
    return new Response(JSON.stringify(APPROVAL), { status: 200 });
  }) as typeof fetch;
  return { fetchFn, seen };
}

describe('collectorPrefix', () => {
  it('is the collector prefix only under a collector, and only a same-origin path', () => {
    expect(
      collectorPrefix({
        username: 'bob',
        source: 'collector',
        collector_prefix: '/services/jupyter-audit/'
      } as any)
    ).toBe('/services/jupyter-audit/');
    expect(
      collectorPrefix({
        username: 'bob',
        source: 'server',
        collector_prefix: '/services/jupyter-audit/'
      } as any)
    ).toBeNull();
    for (const bad of [
      '//evil.example/',
      'https://evil.example/',
      '/\\evil/',
      '/services/x',
      null
    ]) {
      expect(
        collectorPrefix({
          username: 'bob',
          source: 'collector',
          collector_prefix: bad
        } as any)
      ).toBeNull();
    }
  });
});

describe('decideAtCollector', () => {
  it('posts the decision with the session and its XSRF token, same origin', async () => {
    const { fetchFn, seen } = fakeCollector(true);
    const opened: string[] = [];
    const answer = await decideAtCollector(
      '/services/jupyter-audit/',
      7,
      { decision: 'approve', reason: 'ok' },
      fetchFn,
      url => opened.push(url)
    );
    expect(answer).toEqual({ ok: true, status: 200, value: APPROVAL });
    expect(opened).toEqual([]);
    expect(seen.map(s => [s.method, s.url])).toEqual([
      ['GET', '/services/jupyter-audit/jupyter-audit/api/session'],
      ['POST', '/services/jupyter-audit/jupyter-audit/api/approvals/7']
    ]);
    expect(seen[1].headers['X-XSRFToken']).toBe('x<s>rf');
    expect(seen.every(s => s.credentials === 'same-origin')).toBe(true);
    expect(JSON.parse(seen[1].body)).toEqual({
      decision: 'approve',
      reason: 'ok'
    });
  });

  it('opens the collector sign-in and says so when not signed in', async () => {
    const { fetchFn, seen } = fakeCollector(false);
    const opened: string[] = [];
    const answer = await decideAtCollector(
      '/services/jupyter-audit/',
      7,
      { decision: 'approve', reason: '' },
      fetchFn,
      url => opened.push(url)
    );
    expect(answer).toMatchObject({
      ok: false,
      status: 401,
      message: SIGN_IN_MESSAGE
    });
    expect(opened).toEqual(['/services/jupyter-audit/jupyter-audit/sign-in']);
    expect(seen.filter(s => s.method === 'POST')).toEqual([]);
  });

  it('never opens a sign-in of another origin', async () => {
    const fetchFn = (async () =>
      new Response(JSON.stringify({ code: 401, sign_in: '//evil.example/x' }), {
        status: 401
      })) as typeof fetch;
    const opened: string[] = [];
    await decideAtCollector(
      '/services/jupyter-audit/',
      7,
      { decision: 'deny', reason: 'no' },
      fetchFn,
      url => opened.push(url)
    );
    expect(opened).toEqual(['/services/jupyter-audit/jupyter-audit/sign-in']);
  });
});

describe('ApprovalsModel under a collector', () => {
  it('decides at the collector, not through the server', async () => {
    const { fetchFn, seen } = fakeCollector(true);
    const model = new ApprovalsModel({ fetch: fetchFn });
    model.setReason(7, 'checked');
    const outcome = await model.decide(
      7,
      'approve',
      ['reviewer'],
      '/services/jupyter-audit/'
    );
    expect(outcome.ok).toBe(true);
    expect(seen.map(s => s.url)).toContain(
      '/services/jupyter-audit/jupyter-audit/api/approvals/7'
    );
    model.dispose();
  });
});
