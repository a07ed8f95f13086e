/**
 * Pure helpers that word what the panel shows around the trail's own data:
 * error messages, who did a step, a trace's notebook and its counts, translated. They return
 * plain text only; the view renders it through React, which escapes it.
 */
import type { TranslationBundle } from '@jupyterlab/translation';

import { formatTime } from './format';
import { revealText } from './reveal';
import type { AuditAPIError } from './request';
import type { ISessionEnd } from './session';
import type {
  IIdentity,
  IIntegrity,
  IMe,
  IParticipant,
  ITraceIntegrity,
  ITraceSummary
} from './tokens';

/** The server's message for a failed request, as the user should read it. */
export function errorMessage(
  error: AuditAPIError,
  trans: TranslationBundle
): string {
  if (error.status === 403) {
    return trans.__(
      'Your account lacks the role to see this (%1)',
      error.message
    );
  }
  return error.isForbidden
    ? trans.__('You are not allowed to see this (%1)', error.message)
    : error.message;
}

/**
 * Whether a failed `GET me` means the server extension is not there at all
 * (jupyter_server answers 404 for an unknown path): the panel then says so
 * once instead of repeating "Not Found" for every request.
 */
export function isExtensionMissing(error: AuditAPIError | null): boolean {
  return error !== null && error.status === 404;
}

/** What the panel says when the server extension is missing. */
export function extensionMissingMessage(trans: TranslationBundle): string {
  return trans.__(
    'The jupyter-audit server extension is not running on this server'
  );
}

/** The notebook a trace ran, or a placeholder when it has none. */
export function notebookLabel(
  trace: ITraceSummary,
  trans: TranslationBundle
): string {
  return trace.notebook
    ? revealText(trace.notebook)
    : trans.__('(no notebook)');
}

/**
 * The names a trace's notebook had before its current one, oldest first
 * (empty when it was never renamed).
 */
export function earlierNotebooks(trace: ITraceSummary): string[] {
  const names = Array.isArray(trace.notebooks) ? trace.notebooks : [];
  const current = trace.notebook;
  const earlier: string[] = [];
  for (const name of names) {
    if (name && name !== current && !earlier.includes(name)) {
      earlier.push(name);
    }
  }
  return earlier;
}

/** `etl-bot (service account of carol@example.org)`, or a person's username. */
export function participantLabel(
  participant: IParticipant,
  trans: TranslationBundle
): string {
  if (participant.service_account) {
    return participant.token_owner
      ? trans.__(
          '%1 (service account of %2)',
          revealText(participant.username),
          revealText(participant.token_owner)
        )
      : trans.__('%1 (service account)', revealText(participant.username));
  }
  return revealText(participant.username);
}

/** A trace's participants, or its usernames when the server sent no participants. */
export function participants(trace: ITraceSummary): IParticipant[] {
  if (Array.isArray(trace.participants)) {
    return trace.participants;
  }
  return (trace.users ?? []).map(username => ({
    username,
    service_account: false,
    token_owner: null,
    display_name: null
  }));
}

/** The words of a flag, pluralized by its count when the server sent counts. */
export function flagLabel(
  flag: string,
  trace: ITraceSummary,
  trans: TranslationBundle
): string {
  const c = trace.counts;
  switch (flag) {
    case 'failed_cells':
      return c
        ? trans._n('%1 failed cell', '%1 failed cells', c.failed_cells)
        : trans.__('failed cells');
    case 'risky':
      return c
        ? trans._n('%1 risky operation', '%1 risky operations', c.risky)
        : trans.__('risky operations');
    case 'approvals':
      return c
        ? trans._n('%1 approval', '%1 approvals', c.approvals)
        : trans.__('approvals');
    case 'capture_gaps':
      return c
        ? trans._n('%1 capture gap', '%1 capture gaps', c.capture_gaps)
        : trans.__('capture gaps');
    case 'unattributed':
      return c
        ? trans._n(
            '%1 unattributed event',
            '%1 unattributed events',
            c.unattributed
          )
        : trans.__('unattributed events');
    case 'integrity':
      return trans.__('integrity problem');
    default:
      return flag;
  }
}

/** The name of a flag in the filter menu. */
export function flagName(flag: string, trans: TranslationBundle): string {
  switch (flag) {
    case 'failed_cells':
      return trans.__('Failed cells');
    case 'risky':
      return trans.__('Risky operations');
    case 'approvals':
      return trans.__('Approvals');
    case 'capture_gaps':
      return trans.__('Capture gaps');
    case 'unattributed':
      return trans.__('Unattributed events');
    case 'integrity':
      return trans.__('Integrity problems');
    default:
      return flag;
  }
}

/**
 * What a trace's integrity badge says: verified up to a signed checkpoint,
 * or the first broken record and why.
 */
export function traceIntegrityLabel(
  integrity: ITraceIntegrity,
  trans: TranslationBundle
): string {
  if (!integrity.ok) {
    return trans.__(
      'Broken at record #%1: %2',
      integrity.first_bad_seq ?? '?',
      integrity.problem ?? trans.__('unknown problem')
    );
  }
  if (integrity.checkpoint) {
    return trans.__(
      'Verified up to checkpoint #%1 signed at %2 (key %3)',
      integrity.checkpoint.seq,
      formatTime(integrity.checkpoint.signed_at),
      integrity.checkpoint.key_id
    );
  }
  return integrity.verified_up_to !== null
    ? trans.__(
        'Chain verified up to #%1; no signed checkpoint covers it yet',
        integrity.verified_up_to
      )
    : trans.__('Chain verified; no signed checkpoint covers it yet');
}

/** What the trail's integrity banner says when verification failed. */
export function trailIntegrityAlert(
  integrity: IIntegrity,
  trans: TranslationBundle
): string {
  return trans.__(
    'Trail integrity check failed at record #%1: %2',
    integrity.first_bad_seq ?? '?',
    integrity.problem ?? trans.__('unknown problem')
  );
}

/** `N events · N cells · N operations`, each pluralized. */
export function counts(trace: ITraceSummary, trans: TranslationBundle): string {
  const c = trace.counts;
  if (c) {
    return [
      trans._n('%1 event', '%1 events', trace.events),
      trans._n('%1 cell', '%1 cells', c.cells),
      trans._n('%1 query', '%1 queries', c.queries),
      trans._n('%1 API call', '%1 API calls', c.http),
      trans._n('%1 shell command', '%1 shell commands', c.shell)
    ].join(' · ');
  }
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
    ? trans.__('jupyter-audit server (%1)', revealText(identity.username))
    : revealText(identity.username);
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

/** The translated label of an operation's fact (see `opFacts`). */
export function factLabel(label: string, trans: TranslationBundle): string {
  switch (label) {
    case 'type':
      return trans.__('type');
    case 'tables':
      return trans.__('tables');
    case 'rows':
      return trans.__('rows');
    case 'method':
      return trans.__('method');
    case 'host':
      return trans.__('host');
    case 'status':
      return trans.__('status');
    case 'exit code':
      return trans.__('exit code');
    case 'duration':
      return trans.__('duration');
    case 'error':
      return trans.__('error');
    default:
      return label;
  }
}

/**
 * The label saying which trail the panel reads, or null for the server's own:
 * under JupyterHub with a collector, the Hub's trail of every server the user
 * may see.
 */
export function trailSourceLabel(
  me: IMe | null,
  trans: TranslationBundle
): string | null {
  if (me?.source !== 'collector') {
    return null;
  }
  const roles = Array.isArray(me.roles) ? me.roles : [];
  return roles.includes('auditor')
    ? trans.__("JupyterHub's audit trail: every server")
    : trans.__("JupyterHub's audit trail: your servers");
}

/**
 * The server that recorded a trace of the Hub's trail (as the Hub named it),
 * or null for a trace of this server's own trail.
 */
export function recordedByLabel(
  trace: ITraceSummary,
  trans: TranslationBundle
): string | null {
  if (!trace.server) {
    return null;
  }
  return trans.__('recorded by server %1', revealText(trace.server));
}
