import { describe, expect, it } from 'vitest';

import { ServerConnection } from '@jupyterlab/services';

import { API_NAMESPACE, AuditAPIError, requestAPI } from '../request';

const BASE_URL = 'http://jupyter.test/user/ada/';

/**
 * Server settings whose `fetch` answers every request with `answer` (or
 * rejects, like a browser that cannot reach the server) and records the
 * requests it saw.
 */
function fakeServer(answer: () => Response | Promise<Response>): {
  settings: ServerConnection.ISettings;
  requests: Request[];
} {
  const requests: Request[] = [];
  const settings = ServerConnection.makeSettings({
    baseUrl: BASE_URL,
    fetch: async (input: RequestInfo | URL) => {
      requests.push(input as Request);
      return answer();
    }
  });
  return { settings, requests };
}

function json(status: number, body: unknown, statusText = ''): Response {
  return new Response(JSON.stringify(body), {
    status,
    statusText,
    headers: { 'Content-Type': 'application/json' }
  });
}

/** The `AuditAPIError` that `requestAPI` rejects with for this answer. */
async function failure(
  answer: () => Response | Promise<Response>
): Promise<AuditAPIError> {
  const { settings } = fakeServer(answer);
  const error = await requestAPI('traces', {}, settings).then(
    () => null,
    (reason: unknown) => reason
  );
  expect(error).toBeInstanceOf(AuditAPIError);
  return error as AuditAPIError;
}

describe('requestAPI', () => {
  it('calls the audit API below the base URL and returns the JSON body', async () => {
    const body = { traces: [{ trace_id: 't1' }] };
    const { settings, requests } = fakeServer(() => json(200, body));

    await expect(requestAPI('traces?limit=5', {}, settings)).resolves.toEqual(
      body
    );

    expect(requests).toHaveLength(1);
    expect(API_NAMESPACE).toBe('jupyter-audit/api');
    // jupyter_server's settings may append a cache buster to the query.
    expect(
      requests[0].url.startsWith(`${BASE_URL}jupyter-audit/api/traces?limit=5`)
    ).toBe(true);
    expect(requests[0].method).toBe('GET');
  });

  it('passes the request options through', async () => {
    const { settings, requests } = fakeServer(() => json(200, {}));
    await requestAPI('me', { method: 'POST', body: '{}' }, settings);
    expect(requests[0].method).toBe('POST');
  });

  it('returns non-ASCII and markup in the body untouched', async () => {
    const body = { notebook: '<img src=x onerror=alert(1)>.ipynb — 日本 🎉' };
    const { settings } = fakeServer(() => json(200, body));
    await expect(requestAPI('me', {}, settings)).resolves.toEqual(body);
  });

  it('reports an unreachable server as status 0, code "network"', async () => {
    const error = await failure(() => {
      throw new TypeError('Failed to fetch');
    });
    expect(error.status).toBe(0);
    expect(error.code).toBe('network');
    expect(error.message).toBe('Cannot reach the Jupyter server.');
    expect(error.isForbidden).toBe(false);
  });

  it('rejects a 2xx answer that is not JSON', async () => {
    const html = await failure(
      () => new Response('<html>login</html>', { status: 200 })
    );
    expect(html.status).toBe(200);
    expect(html.code).toBe('bad_response');
    expect(html.message).toBe('The server sent a response that is not JSON.');

    const empty = await failure(() => new Response('', { status: 200 }));
    expect(empty.code).toBe('bad_response');
  });

  it('keeps the code and message of our handlers’ error bodies', async () => {
    const error = await failure(() =>
      json(403, { code: 'forbidden', message: 'reviewers only' }, 'Forbidden')
    );
    expect(error.status).toBe(403);
    expect(error.code).toBe('forbidden');
    expect(error.message).toBe('reviewers only');
    expect(error.isForbidden).toBe(true);
  });

  it('reads jupyter_server’s {message, reason} bodies', async () => {
    const withMessage = await failure(() =>
      json(404, { message: 'no such trace', reason: 'Not Found' })
    );
    expect(withMessage.message).toBe('no such trace');
    expect(withMessage.code).toBeNull();

    const withReason = await failure(() =>
      json(401, { reason: 'Unauthorized', message: null })
    );
    expect(withReason.message).toBe('Unauthorized');
    expect(withReason.isForbidden).toBe(true);
  });

  it('turns a numeric error code into a string and ignores other types', async () => {
    const numeric = await failure(() => json(409, { code: 42, message: 'm' }));
    expect(numeric.code).toBe('42');

    const object = await failure(() =>
      json(409, { code: { nested: true }, message: 'm' })
    );
    expect(object.code).toBeNull();
  });

  it('drops a traceback the server adds', async () => {
    const error = await failure(() =>
      json(500, {
        message: 'the trail is locked by another process',
        traceback: 'Traceback (most recent call last):\n  File "x.py"'
      })
    );
    expect(error.message).toBe('the trail is locked by another process');
    expect(`${error.stack} ${JSON.stringify(error)}`).not.toContain(
      'Traceback'
    );
  });

  it('shows only the status text for an HTML error page', async () => {
    const error = await failure(
      () =>
        new Response('<html><h1>Bad gateway</h1></html>', {
          status: 502,
          statusText: 'Bad Gateway'
        })
    );
    expect(error.message).toBe('Bad Gateway');
    expect(error.code).toBeNull();
  });

  it('falls back to "HTTP <status>" without any usable text', async () => {
    expect(
      (await failure(() => new Response('', { status: 503 }))).message
    ).toBe('HTTP 503');
    // An empty or non-string message is no message.
    expect((await failure(() => json(500, { message: '' }))).message).toBe(
      'HTTP 500'
    );
    expect(
      (await failure(() => json(500, { message: ['a'], reason: 7 }))).message
    ).toBe('HTTP 500');
    expect((await failure(() => json(500, 'just a string'))).message).toBe(
      'HTTP 500'
    );
    expect((await failure(() => json(500, null))).message).toBe('HTTP 500');
  });

  it('keeps markup in a server message as text, unaltered', async () => {
    const error = await failure(() =>
      json(400, { message: '<b>bad</b> &amp; worse' })
    );
    expect(error.message).toBe('<b>bad</b> &amp; worse');
  });
});

describe('AuditAPIError', () => {
  it('is an Error named AuditAPIError with a null code by default', () => {
    const error = new AuditAPIError(500, 'boom');
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('AuditAPIError');
    expect(error.message).toBe('boom');
    expect(error.code).toBeNull();
  });

  it('is forbidden for 401 and 403 only', () => {
    const forbidden = [0, 200, 400, 401, 403, 404, 500].filter(
      status => new AuditAPIError(status, '').isForbidden
    );
    expect(forbidden).toEqual([401, 403]);
  });

  it('reads what a 401 says about signing in again', async () => {
    const ended = await failure(() =>
      json(401, {
        code: 401,
        message: 'authentication failed: session expired; sign in again',
        reason: 'session_expired',
        login_url: '/user/ada/login'
      })
    );
    expect(ended.signIn).toEqual({
      reason: 'session_expired',
      loginUrl: '/user/ada/login'
    });

    // jupyter_server's HTTP reason is no sign-in reason
    const plain = await failure(() => json(401, { reason: 'Unauthorized' }));
    expect(plain.signIn).toEqual({ reason: 'not_signed_in', loginUrl: null });

    const forbidden = await failure(() => json(403, { message: 'no' }));
    expect(forbidden.signIn).toBeNull();
  });
});
