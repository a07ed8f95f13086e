/**
 * Pure helpers that word what the panel shows around the trail's own data:
 * error messages, who did a step, a trace's notebook and its counts, translated. They return
 * plain text only; the view renders it through React, which escapes it.
 */
import type { TranslationBundle } from '@jupyterlab/translation';

import type { AuditAPIError } from './request';
import type { ISessionEnd } from './session';
import type { IIdentity, ITraceSummary } from './tokens';

/** The server's message for a failed request, as the user should read it. */
export function errorMessage(
  error: AuditAPIError,
  trans: TranslationBundle
): string {
  return error.isForbidden
    ? trans.__('You are not allowed to see this (%1)', error.message)
    : error.message;
}

/** The notebook a trace ran, or a placeholder when it has none. */
export function notebookLabel(
  trace: ITraceSummary,
  trans: TranslationBundle
): string {
  return trace.notebook ? trace.notebook : trans.__('(no notebook)');
}

/** `N events · N cells · N operations`, each pluralized. */
export function counts(trace: ITraceSummary, trans: TranslationBundle): string {
  return [
    trans._n('%1 event', '%1 events', trace.events),
    trans._n('%1 cell', '%1 cells', trace.cells),
    trans._n('%1 operation', '%1 operations', trace.operations)
  ].join(' · ');
}

/** Whether a step is the server's own (`auth_method` `system`), not a person's. */
export function isServerIdentity(
  identity: IIdentity | null | undefined
): boolean {
  return identity?.auth_method === 'system';
}

/**
 * Who did a step: the username of a person or service account; the server's
 * own events (e.g. ending kernels at shutdown) read as the server's,
 * "jupyter-audit server (ACCOUNT)". Decided by `auth_method`, which only the
 * server sets, never by a display name a person could choose.
 */
export function actorLabel(
  identity: IIdentity | null | undefined,
  trans: TranslationBundle
): string {
  if (!identity) {
    return trans.__('(no identity)');
  }
  return isServerIdentity(identity)
    ? trans.__('jupyter-audit server (%1)', identity.username)
    : identity.username;
}

/** What the page says once its sign-in session has ended. */
export function sessionEndedMessage(trans: TranslationBundle): string {
  return trans.__('Your session has ended: sign in again');
}

/** Why the session ended, as far as the server said. */
export function sessionEndedReason(
  end: ISessionEnd,
  trans: TranslationBundle
): string {
  switch (end.reason) {
    case 'session_expired':
      return trans.__(
        'Your sign-in expired. Kernels keep running; sign in to use them again.'
      );
    default:
      return trans.__(
        'You signed out, or the server restarted. Kernels keep running; sign in to use them again.'
      );
  }
}
