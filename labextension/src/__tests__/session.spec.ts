import { afterEach, describe, expect, it, vi } from 'vitest';

import { ServerConnection } from '@jupyterlab/services';

import { sameOriginPath } from '../request';
import { SessionWatch, signInUrl } from '../session';
import type { ISessionEnd } from '../session';

const BASE_URL = 'http://jupyter.test/user/ada/';
const HERE = {
  pathname: '/user/ada/lab/tree/analysis.ipynb',
  search: '?reset',
  hash: '#cell-3'
};

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'Content-Type': 'application/json' }
  });
}

const ME = {
  username: 'ada',
  display_name: 'Ada',
  identity: { username: 'ada' },
  roles: ['user'],
  trail: { events: 0, last_seq: 0, integrity: { ok: true } }
};

/** A watch whose server answers with the next of `answers` each time. */
function watchWith(answers: Array<() => Response>): {
  watch: SessionWatch;
  seen: (ISessionEnd | null)[];
  requests: string[];
} {
  const requests: string[] = [];
  const serverSettings = ServerConnection.makeSettings({
    baseUrl: BASE_URL,
    fetch: async (input: RequestInfo | URL) => {
      requests.push((input as Request).url);
      const next = answers.shift();
      if (!next) {
        throw new Error('no answer left');
      }
      return next();
    }
  });
  const watch = new SessionWatch({ serverSettings, here: () => HERE });
  const seen: (ISessionEnd | null)[] = [];
  watch.changed.connect((_, end) => seen.push(end));
  return { watch, seen, requests };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('signInUrl', () => {
  it('comes back to the same page, query and cell', () => {
    expect(signInUrl('/user/ada/login', HERE)).toBe(
      '/user/ada/login?next=' +
        encodeURIComponent('/user/ada/lab/tree/analysis.ipynb?reset#cell-3')
    );
    expect(signInUrl('/login?x=1', HERE).startsWith('/login?x=1&next=')).toBe(
      true
    );
  });
});

describe('SessionWatch', () => {
  it('says the session ended when GET me answers 401 after signing in', async () => {
    const { watch, seen } = watchWith([
      () => json(200, ME),
      () =>
        json(401, {
          code: 401,
          message: 'authentication failed: session ended',
          reason: 'session_ended',
          login_url: '/user/ada/login'
        })
    ]);
    await watch.check();
    expect(watch.ended).toBeNull();
    await watch.check();
    expect(watch.ended).toEqual({
      reason: 'session_ended',
      signInUrl: signInUrl('/user/ada/login', HERE)
    });
    expect(seen).toHaveLength(1);
    watch.dispose();
  });

  it('never says so to a page that was never signed in', async () => {
    const { watch, seen } = watchWith([
      () => json(401, { code: 401, message: 'x', reason: 'not_signed_in' })
    ]);
    await watch.check();
    expect(watch.ended).toBeNull();
    expect(seen).toEqual([]);
  });

  it('ignores failures other than 401', async () => {
    const { watch } = watchWith([
      () => json(200, ME),
      () => json(403, { code: 403, message: 'this needs the auditor role' }),
      () => json(500, { code: 500, message: 'boom' })
    ]);
    await watch.check();
    await watch.check();
    await watch.check();
    expect(watch.ended).toBeNull();
  });

  it('falls back to the server’s /login when the 401 names no page', async () => {
    const { watch } = watchWith([
      () => json(200, ME),
      () => json(401, { reason: 'Unauthorized', message: null })
    ]);
    await watch.check();
    await watch.check();
    expect(watch.ended?.reason).toBe('not_signed_in');
    expect(watch.ended?.signInUrl).toBe(signInUrl('/user/ada/login', HERE));
  });

  it('is back once GET me answers again (signed in in another tab)', async () => {
    const { watch, seen } = watchWith([
      () => json(200, ME),
      () => json(401, { reason: 'session_expired', login_url: '/login' }),
      () => json(200, ME)
    ]);
    await watch.check();
    await watch.check();
    await watch.check();
    expect(watch.ended).toBeNull();
    expect(seen.map(e => e?.reason ?? null)).toEqual(['session_expired', null]);
  });

  it('checks again when the session’s expiry time comes', async () => {
    vi.useFakeTimers();
    const expires = new Date(Date.now() + 60_000).toISOString();
    const { watch, requests } = watchWith([
      () => json(200, { ...ME, session_expires_at: expires }),
      () => json(401, { reason: 'session_expired', login_url: '/login' })
    ]);
    await watch.check();
    expect(requests).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(59_000);
    expect(requests).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(2_500);
    expect(requests).toHaveLength(2);
    expect(watch.ended?.reason).toBe('session_expired');
    watch.dispose();
  });

  it('knows an expired session whose cookie the browser dropped', async () => {
    vi.useFakeTimers();
    const expires = new Date(Date.now() + 1_000).toISOString();
    const { watch } = watchWith([
      () => json(200, { ...ME, session_expires_at: expires }),
      // no cookie any more: the server only says nobody is signed in
      () => json(401, { reason: 'not_signed_in', login_url: '/login' })
    ]);
    await watch.check();
    await vi.advanceTimersByTimeAsync(2_500);
    expect(watch.ended?.reason).toBe('session_expired');
  });

  it('says signed out when a 401 comes before the expiry', async () => {
    const expires = new Date(Date.now() + 3_600_000).toISOString();
    const { watch } = watchWith([
      () => json(200, { ...ME, session_expires_at: expires }),
      () => json(401, { reason: 'not_signed_in', login_url: '/login' })
    ]);
    await watch.check();
    await watch.check();
    expect(watch.ended?.reason).toBe('not_signed_in');
    watch.dispose();
  });
});

describe('the sign-in link a 401 names', () => {
  it('accepts only a path of this origin', () => {
    expect(sameOriginPath('/user/ada/login')).toBe('/user/ada/login');
    expect(sameOriginPath('/hub/login?x=1')).toBe('/hub/login?x=1');
    for (const url of [
      'https://evil.example/login',
      '//evil.example/login',
      '/\\evil.example/login',
      '/\t/evil.example',
      '/\n/evil.example',
      'javascript:alert(1)',
      'login',
      '',
      '/log\u202ein',
      null,
      42
    ]) {
      expect(sameOriginPath(url), String(url)).toBeNull();
    }
  });

  it('falls back to the server’s /login when the 401 names another site', async () => {
    for (const loginUrl of [
      'https://evil.example/login',
      '//evil.example/login',
      '/\\evil.example/login',
      'javascript:alert(1)'
    ]) {
      const { watch } = watchWith([
        () => json(200, ME),
        () =>
          json(401, {
            reason: 'session_ended',
            message: 'signed out',
            login_url: loginUrl
          })
      ]);
      await watch.check();
      await watch.check();
      expect(watch.ended?.signInUrl).toBe(signInUrl('/user/ada/login', HERE));
    }
  });
});
