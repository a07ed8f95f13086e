/**
 * Deciding an approval at the Hub's collector, in the reviewer's browser.
 *
 * Under a JupyterHub collector (`me.source === 'collector'`) the single-user
 * server does not forward decisions: its token is in every kernel it runs.
 * The panel posts the decision to the collector itself (`me.collector_prefix`,
 * the Hub's `/services/<name>/`, same origin), with the browser's session
 * there and its XSRF token. Not signed in there yet: the collector's sign-in
 * opens in a window, and the reviewer decides again.
 */
import { sameOriginPath } from './request';
import { IMe } from './tokens';

/** What a decision at the collector came to (the approval on success). */
export type CollectorAnswer =
  | { ok: true; status: number; value: unknown }
  | { ok: false; status: number; message: string; signIn: string | null };

export const SIGN_IN_MESSAGE =
  'Sign in to the audit collector in the window that opened (your browser ' +
  'session there decides, never your server), then approve or deny again.';

/** The collector's browser prefix when decisions go there, else null. */
export function collectorPrefix(me: IMe | null | undefined): string | null {
  if (me?.source !== 'collector') {
    return null;
  }
  const prefix = sameOriginPath(me.collector_prefix);
  return prefix !== null && prefix.endsWith('/') ? prefix : null;
}

async function call(
  url: string,
  init: RequestInit,
  fetchFn: typeof fetch
): Promise<{ status: number; body: { [key: string]: unknown } }> {
  const response = await fetchFn(url, {
    ...init,
    credentials: 'same-origin',
    redirect: 'error'
  });
  let body: unknown = null;
  try {
    body = JSON.parse(await response.text());
  } catch {
    body = null;
  }
  return {
    status: response.status,
    body: body !== null && typeof body === 'object' ? (body as any) : {}
  };
}

/**
 * POST `{decision, reason}` for request `id` at the collector under `prefix`.
 * A 401 opens the collector's sign-in (`openWindow`) and says so.
 */
export async function decideAtCollector(
  prefix: string,
  id: number,
  vote: { decision: string; reason: string },
  fetchFn: typeof fetch = (...args) => fetch(...args),
  openWindow: (url: string) => void = url =>
    void window.open(url, 'jupyter-audit-sign-in', 'popup,width=520,height=420')
): Promise<CollectorAnswer> {
  const signIn = (status: number, body: { [key: string]: unknown }) => {
    const url =
      sameOriginPath(body.sign_in) ?? `${prefix}jupyter-audit/sign-in`;
    openWindow(url);
    return {
      ok: false as const,
      status,
      message: SIGN_IN_MESSAGE,
      signIn: url
    };
  };
  try {
    const session = await call(
      `${prefix}jupyter-audit/api/session`,
      {},
      fetchFn
    );
    if (session.status === 401) {
      return signIn(401, session.body);
    }
    const xsrf = session.body.xsrf_token;
    if (session.status !== 200 || typeof xsrf !== 'string') {
      return failed(session.status, session.body);
    }
    const answer = await call(
      `${prefix}jupyter-audit/api/approvals/${encodeURIComponent(String(id))}`,
      {
        method: 'POST',
        body: JSON.stringify(vote),
        headers: { 'Content-Type': 'application/json', 'X-XSRFToken': xsrf }
      },
      fetchFn
    );
    if (answer.status === 401) {
      return signIn(401, answer.body);
    }
    if (answer.status !== 200) {
      return failed(answer.status, answer.body);
    }
    return { ok: true, status: 200, value: answer.body };
  } catch {
    return {
      ok: false,
      status: 0,
      message: 'Cannot reach the audit collector.',
      signIn: null
    };
  }
}

function failed(
  status: number,
  body: { [key: string]: unknown }
): CollectorAnswer {
  const message =
    typeof body.message === 'string' && body.message
      ? body.message
      : `The audit collector answered HTTP ${status}.`;
  return { ok: false, status, message, signIn: null };
}
