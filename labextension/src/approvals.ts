/**
 * State of the pending-approvals view: the requests waiting for a reviewer
 * (reviewers see all, other users their own), the ones that were waiting and
 * have since been decided, the reason typed for each, and the outcome of the
 * last approve/deny. The server decides who may decide; this only asks it.
 */
import { ServerConnection } from '@jupyterlab/services';
import type { ISignal } from '@lumino/signaling';
import { Signal } from '@lumino/signaling';

import { decideAtCollector } from './collectorDecide';
import { AuditAPIError, requestAPI } from './request';
import type { SessionWatch } from './session';
import type { IApproval, IApprovalList, IApprovalVote } from './tokens';

/** How many decided requests stay listed under "Decided". */
export const MAX_RECENT = 20;

/** States after which a request never changes again. */
const FINAL_STATES = new Set(['denied', 'expired', 'cancelled', 'executed']);

/**
 * Why `reason` cannot go with `decision`, or null when it can: a deny always
 * needs a reason, and so does an approval by someone who approves only as
 * break-glass (the server flags it and refuses it without one).
 */
export function reasonProblem(
  decision: IApprovalVote['decision'],
  reason: string,
  roles: readonly string[] = []
): string | null {
  if (reason.trim() !== '') {
    return null;
  }
  if (decision === 'deny') {
    return 'A denial needs a reason.';
  }
  if (roles.includes('break-glass') && !roles.includes('reviewer')) {
    return 'A break-glass approval needs a reason.';
  }
  return null;
}

/** The outcome of the last approve/deny of one request. */
export interface IVoteOutcome {
  ok: boolean;
  /** HTTP status; 0 when the request never left (e.g. a missing reason). */
  status: number;
  message: string;
}

/**
 * A `VDomRenderer.IModel` (signal + dispose) kept free of DOM imports, so the
 * unit tests run it in Node.
 */
export class ApprovalsModel {
  constructor(options: ApprovalsModel.IOptions = {}) {
    this._serverSettings =
      options.serverSettings ?? ServerConnection.makeSettings();
    this._session = options.session ?? null;
    this._fetch = options.fetch;
    this._session?.userChanged.connect(this.forget, this);
  }

  /**
   * Drop everything loaded or typed for the user the page acted as (their
   * session ended, or another user signed in): the lists, the reasons, the
   * outcomes; answers still on their way are discarded.
   */
  forget(): void {
    this._generation++;
    this._user++;
    this._pending = null;
    this._recent = [];
    this._error = null;
    this._seeded = false;
    this._reasons = new Map();
    this._voting = new Set();
    this._outcomes = new Map();
    this._stateChanged.emit();
  }

  /** Emitted whenever anything the view shows changed. */
  get stateChanged(): ISignal<this, void> {
    return this._stateChanged;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._session?.userChanged.disconnect(this.forget, this);
    Signal.clearData(this);
  }

  /** Requests waiting for a decision, oldest first, once loaded. */
  get pending(): IApproval[] | null {
    return this._pending;
  }

  /** Requests seen waiting that have since been decided, newest first. */
  get recent(): IApproval[] {
    return this._recent;
  }

  /** Why the pending requests could not be loaded, if they could not. */
  get error(): AuditAPIError | null {
    return this._error;
  }

  /** The reason typed so far for a request. */
  reason(id: number): string {
    return this._reasons.get(id) ?? '';
  }

  setReason(id: number, text: string): void {
    this._reasons.set(id, text);
    this._stateChanged.emit();
  }

  /** Whether an approve/deny of this request is on its way. */
  isVoting(id: number): boolean {
    return this._voting.has(id);
  }

  /** The outcome of the last approve/deny of this request, if any. */
  outcome(id: number): IVoteOutcome | null {
    return this._outcomes.get(id) ?? null;
  }

  /**
   * Reload the pending requests; fetch the current state of every request
   * that was pending and no longer is, and of decided ones not yet final.
   * Never rejects: a failure is kept in `error`.
   */
  async refresh(): Promise<void> {
    const generation = ++this._generation;
    const result = await this._call<IApprovalList>('approvals?state=pending');
    if (generation !== this._generation) {
      return; // A newer refresh (or a decision) superseded this one.
    }
    if (!result.ok) {
      this._error = result.error;
      this._stateChanged.emit();
      return;
    }
    const list = Array.isArray(result.value.approvals)
      ? result.value.approvals.filter(isApproval)
      : [];
    list.sort((a, b) => a.id - b.id);
    const now = new Set(list.map(a => a.id));
    const gone = (this._pending ?? []).filter(a => !now.has(a.id));
    const unsettled = this._recent.filter(
      a => !FINAL_STATES.has(a.state) && !now.has(a.id)
    );
    this._pending = list;
    this._recent = this._recent.filter(a => !now.has(a.id));
    this._error = null;
    this._stateChanged.emit();
    await Promise.all([
      ...(this._seeded ? [] : [this._seed()]),
      ...[...gone, ...unsettled].map(approval => this._reload(approval))
    ]);
  }

  /**
   * Fill "Decided" once with the newest decided requests the server shows
   * this user (their own; every request for a reviewer), so a reload of the
   * page does not forget what became of them.
   */
  private async _seed(): Promise<void> {
    const user = this._user;
    const result = await this._call<IApprovalList>('approvals?state=all');
    if (user !== this._user) {
      return; // asked for a user the page no longer acts as
    }
    if (!result.ok || !Array.isArray(result.value.approvals)) {
      return; // Try again at the next refresh.
    }
    this._seeded = true;
    const known = new Set([
      ...(this._pending ?? []).map(a => a.id),
      ...this._recent.map(a => a.id)
    ]);
    const decided = result.value.approvals.filter(
      a => isApproval(a) && a.state !== 'pending' && !known.has(a.id)
    );
    this._recent = newestFirst([...this._recent, ...decided]);
    this._stateChanged.emit();
  }

  /**
   * Approve or deny a request with the reason typed for it. The outcome
   * (the server's message on a refusal) is kept for the view; the list is
   * updated from the server's answer.
   */
  async decide(
    id: number,
    decision: IApprovalVote['decision'],
    roles: readonly string[] = [],
    collector: string | null = null
  ): Promise<IVoteOutcome> {
    const reason = this.reason(id);
    const problem = reasonProblem(decision, reason, roles);
    if (problem !== null) {
      return this._setOutcome(id, { ok: false, status: 0, message: problem });
    }
    if (this._voting.has(id)) {
      return this._setOutcome(id, {
        ok: false,
        status: 0,
        message: 'A decision on this request is already on its way.'
      });
    }
    this._voting.add(id);
    this._outcomes.delete(id);
    this._stateChanged.emit();
    const body: IApprovalVote = { decision, reason: reason.trim() };
    const user = this._user;
    // Under a JupyterHub collector the browser decides there (collectorDecide).
    const result =
      collector !== null
        ? await this._atCollector(collector, id, body)
        : await this._call<IApproval>(
            `approvals/${encodeURIComponent(String(id))}`,
            { method: 'POST', body: JSON.stringify(body) }
          );
    if (user !== this._user) {
      // The page acts for someone else now: keep nothing of this answer.
      return {
        ok: result.ok,
        status: result.ok ? 200 : result.error.status,
        message: ''
      };
    }
    this._voting.delete(id);
    let outcome: IVoteOutcome;
    if (result.ok && isApproval(result.value)) {
      this._reasons.delete(id);
      this._place(result.value);
      outcome = {
        ok: true,
        status: 200,
        message:
          decision === 'approve'
            ? 'Your approval was recorded.'
            : 'Your denial was recorded.'
      };
    } else if (result.ok) {
      outcome = {
        ok: false,
        status: 200,
        message: 'The server sent an answer that is not an approval.'
      };
    } else {
      outcome = {
        ok: false,
        status: result.error.status,
        message: result.error.message
      };
    }
    this._setOutcome(id, outcome);
    // Whatever happened, show what the server holds now (a 409 means someone
    // else decided first, or the request expired).
    await this.refresh();
    return outcome;
  }

  /** Put a request where its state belongs: pending, or recently decided. */
  private _place(approval: IApproval): void {
    const pending = (this._pending ?? []).filter(a => a.id !== approval.id);
    const recent = this._recent.filter(a => a.id !== approval.id);
    if (approval.state === 'pending') {
      pending.push(approval);
      pending.sort((a, b) => a.id - b.id);
    } else {
      recent.push(approval);
    }
    this._pending = pending;
    this._recent = newestFirst(recent);
    this._stateChanged.emit();
  }

  private async _reload(approval: IApproval): Promise<void> {
    const user = this._user;
    const result = await this._call<IApproval>(
      `approvals/${encodeURIComponent(String(approval.id))}`
    );
    if (user !== this._user) {
      return;
    }
    if (result.ok && isApproval(result.value)) {
      this._place(result.value);
    } else if (!result.ok && result.error.status === 404) {
      // No longer visible to this user: keep nothing stale.
      this._recent = this._recent.filter(a => a.id !== approval.id);
      this._stateChanged.emit();
    }
  }

  private _setOutcome(id: number, outcome: IVoteOutcome): IVoteOutcome {
    this._outcomes.set(id, outcome);
    this._stateChanged.emit();
    return outcome;
  }

  private async _atCollector(
    prefix: string,
    id: number,
    vote: IApprovalVote
  ): Promise<
    { ok: true; value: IApproval } | { ok: false; error: AuditAPIError }
  > {
    const answer = await decideAtCollector(prefix, id, vote, this._fetch);
    if (answer.ok) {
      return { ok: true, value: answer.value as IApproval };
    }
    return {
      ok: false,
      error: new AuditAPIError(answer.status, answer.message)
    };
  }

  private async _call<T>(
    endPoint: string,
    init: RequestInit = {}
  ): Promise<{ ok: true; value: T } | { ok: false; error: AuditAPIError }> {
    try {
      const value = await requestAPI<T>(endPoint, init, this._serverSettings);
      return { ok: true, value };
    } catch (reason) {
      if (reason instanceof AuditAPIError) {
        return { ok: false, error: reason };
      }
      console.error('jupyter-audit: approvals request failed', reason);
      return {
        ok: false,
        error: new AuditAPIError(
          0,
          'Unexpected error while talking to the server.'
        )
      };
    }
  }

  private _stateChanged = new Signal<this, void>(this);
  private _isDisposed = false;
  private _serverSettings: ServerConnection.ISettings;
  private _session: SessionWatch | null;
  private _fetch: typeof fetch | undefined;
  private _pending: IApproval[] | null = null;
  private _recent: IApproval[] = [];
  private _error: AuditAPIError | null = null;
  private _generation = 0;
  private _user = 0;
  private _seeded = false;
  private _reasons = new Map<number, string>();
  private _voting = new Set<number>();
  private _outcomes = new Map<number, IVoteOutcome>();
}

/** Newest request first, at most `MAX_RECENT` of them. */
function newestFirst(approvals: IApproval[]): IApproval[] {
  return [...approvals].sort((a, b) => b.id - a.id).slice(0, MAX_RECENT);
}

/** Enough of an approval to show and decide it (the rest is optional). */
function isApproval(value: unknown): value is IApproval {
  if (value === null || typeof value !== 'object') {
    return false;
  }
  const a = value as { [key: string]: unknown };
  return (
    typeof a.id === 'number' &&
    typeof a.state === 'string' &&
    typeof a.requester === 'string' &&
    typeof a.statement === 'string'
  );
}

export namespace ApprovalsModel {
  export interface IOptions {
    /** Server connection settings; the app's by default. */
    serverSettings?: ServerConnection.ISettings;
    /** The sign-in session: when its user changes, everything is forgotten. */
    session?: SessionWatch | null;
    /** How decisions reach the collector (the browser's `fetch` by default). */
    fetch?: typeof fetch;
  }
}
