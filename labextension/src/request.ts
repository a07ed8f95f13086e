/**
 * The one way the panel talks to the jupyter-audit server extension. Failures
 * become an `AuditAPIError` that carries the server's own message, so the UI
 * can show it without ever showing a stack trace or an HTML error page.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { revealText } from './reveal';

/** The REST namespace of the server extension. */
export const API_NAMESPACE = 'jupyter-audit/api';

/**
 * What a 401 from the audit API says about signing in: why (`session_expired`,
 * `session_ended`, `credential_refused`, `not_signed_in`) and the sign-in
 * page's path, when the server signs people in.
 */
export interface ISignIn {
  reason: string;
  loginUrl: string | null;
}

/** The `reason`s of the server's 401s (others, e.g. jupyter_server's HTTP reason, are not). */
export const SIGN_IN_REASONS = [
  'session_expired',
  'session_ended',
  'credential_refused',
  'not_signed_in'
];

/** A failed call to the audit API. */
export class AuditAPIError extends Error {
  /**
   * @param status HTTP status, 0 when the server could not be reached
   * @param message Human readable message, the server's when it sent one
   * @param code Machine readable error code from the server, if any
   */
  constructor(
    readonly status: number,
    message: string,
    readonly code: string | null = null,
    readonly signIn: ISignIn | null = null
  ) {
    super(message);
    this.name = 'AuditAPIError';
  }

  /** The server refused to show this to the signed-in user. */
  get isForbidden(): boolean {
    return this.status === 401 || this.status === 403;
  }
}

/**
 * Call the audit REST API and return its JSON body.
 *
 * @param endPoint Path below `/jupyter-audit/api/`, query string included
 * @param init Initial values for the request
 * @param serverSettings Server connection settings (the app's by default)
 * @returns The response body parsed as JSON
 * @throws AuditAPIError on network failure, non-2xx status or non-JSON body
 */
export async function requestAPI<T>(
  endPoint: string,
  init: RequestInit = {},
  serverSettings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const { text, status } = await send(endPoint, init, serverSettings);
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new AuditAPIError(
      status,
      'The server sent a response that is not JSON.',
      'bad_response'
    );
  }
}

/**
 * Call the audit REST API and return its JSON body as the exact text the
 * server sent (an evidence bundle is saved byte for byte, never re-encoded).
 *
 * @throws AuditAPIError as `requestAPI` does
 */
export async function requestAPIText(
  endPoint: string,
  init: RequestInit = {},
  serverSettings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<string> {
  const { text, status } = await send(endPoint, init, serverSettings);
  try {
    JSON.parse(text);
  } catch {
    throw new AuditAPIError(
      status,
      'The server sent a response that is not JSON.',
      'bad_response'
    );
  }
  return text;
}

async function send(
  endPoint: string,
  init: RequestInit,
  serverSettings: ServerConnection.ISettings
): Promise<{ text: string; status: number }> {
  const url = URLExt.join(serverSettings.baseUrl, API_NAMESPACE, endPoint);

  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, serverSettings);
  } catch {
    throw new AuditAPIError(0, 'Cannot reach the Jupyter server.', 'network');
  }

  const text = await response.text();
  if (!response.ok) {
    let body: unknown = undefined;
    try {
      body = text.length > 0 ? JSON.parse(text) : undefined;
    } catch {
      body = undefined;
    }
    throw errorFromResponse(response, body);
  }
  return { text, status: response.status };
}

/**
 * `url` when it is a path of this origin (`/…`, not `//host` or `/\\host`,
 * which browsers read as another host, and without whitespace, controls or
 * backslashes, which browsers drop or turn into `/`); otherwise null, and
 * the caller uses the server's default sign-in page. A 401's `login_url`
 * becomes a link the user follows, so it must not lead anywhere else.
 */
export function sameOriginPath(url: unknown): string | null {
  if (typeof url !== 'string' || !url.startsWith('/')) {
    return null;
  }
  if (url.startsWith('//') || /[\\\s]/.test(url) || revealText(url) !== url) {
    return null;
  }
  return url;
}

/**
 * Build the error for a non-2xx response: the JSON `{code, message}` our
 * handlers send, else jupyter_server's `{message, reason}`, else the status
 * text. A traceback the server may add is deliberately dropped.
 */
function errorFromResponse(response: Response, body: unknown): AuditAPIError {
  let message = '';
  let code: string | null = null;
  let signIn: ISignIn | null = null;
  if (body !== null && typeof body === 'object') {
    const data = body as { [key: string]: unknown };
    if (response.status === 401) {
      signIn = {
        reason: SIGN_IN_REASONS.includes(data.reason as string)
          ? (data.reason as string)
          : 'not_signed_in',
        loginUrl: sameOriginPath(data.login_url)
      };
    }
    if (typeof data.message === 'string') {
      message = data.message;
    } else if (typeof data.reason === 'string') {
      message = data.reason;
    }
    if (typeof data.code === 'string' || typeof data.code === 'number') {
      code = String(data.code);
    }
  }
  if (!message) {
    message = response.statusText || `HTTP ${response.status}`;
  }
  if (response.status === 401 && signIn === null) {
    signIn = { reason: 'not_signed_in', loginUrl: null };
  }
  return new AuditAPIError(response.status, message, code, signIn);
}
