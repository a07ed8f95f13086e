/**
 * Shapes of the jupyter-audit REST API (`/jupyter-audit/api/`) as the panel
 * reads them. Every string in here may come from a user: render it as text.
 */

/** An identity snapshot as the trail recorded it. */
export interface IIdentity {
  username: string;
  subject?: string | null;
  issuer?: string | null;
  email?: string | null;
  groups?: string[];
  auth_method?: string | null;
  token_id?: string | null;
  token_owner?: string | null;
  display_name?: string | null;
}

/** Result of the verification the server runs over the trail. */
export interface IIntegrity {
  ok: boolean;
  first_bad_seq: number | null;
  problem: string | null;
  checked_at: string | null;
}

/** `GET me`: the signed-in user, their roles and the trail's state. */
export interface IMe {
  username: string;
  display_name: string;
  identity: IIdentity;
  roles: string[];
  trail: {
    events: number;
    last_seq: number;
    integrity: IIntegrity;
  };
  /** When this sign-in session (or token) ends, ISO 8601 UTC; null if never. */
  session_expires_at?: string | null;
}

/** One kernel's life from start to shutdown, as listed by `GET traces`. */
export interface ITraceSummary {
  trace_id: string;
  kernel_id: string | null;
  notebook: string | null;
  started_at: string;
  last_at: string;
  events: number;
  cells: number;
  operations: number;
  users: string[];
  status: 'running' | 'ended' | string;
}

/** `GET traces?limit=N`. */
export interface ITraceList {
  traces: ITraceSummary[];
}

/** One record of the trail. */
export interface ITraceEvent {
  seq: number;
  kind: string;
  time: string;
  identity: IIdentity | null;
  msg_id: string | null;
  payload: { [key: string]: unknown } | null;
  hash: string;
}

/** `GET traces/{trace_id}`. */
export interface ITraceDetail {
  trace: ITraceSummary;
  events: ITraceEvent[];
}

/** Why the risk policy flagged an operation: a rule id and its explanation. */
export interface IApprovalReason {
  /** Stable rule id, e.g. `statement.where-required`. */
  rule: string;
  /** Human text, e.g. "DELETE without WHERE on customers". */
  message: string;
  action?: string;
  tables?: string[];
}

/** One reviewer's decision on an approval request. */
export interface IApprovalDecision {
  reviewer: string;
  decision: 'approve' | 'deny' | string;
  reason: string | null;
  time: string;
  /** Taken by the break-glass group alone: flagged for later review. */
  break_glass: boolean;
}

/** States of an approval request (`approved` becomes `executed` once it ran). */
export type ApprovalState =
  'pending' | 'approved' | 'denied' | 'expired' | 'cancelled' | 'executed';

/** A risky operation waiting for (or past) a reviewer's decision. */
export interface IApproval {
  id: number;
  state: ApprovalState | string;
  /** Username of the identity whose cell asked. */
  requester: string;
  /** The SQL statement, shell command or `METHOD url` that waits. */
  statement: string;
  /**
   * The statement's parameters (SQL), masked by the server as the trail's
   * op.sql stores them: an array, an object, or an array of parameter sets
   * for executemany; null or absent when there are none.
   */
  params?: unknown[] | Record<string, unknown> | null;
  reasons: IApprovalReason[];
  /** The ids of the rules that flagged it. */
  rules: string[];
  kind: 'sql' | 'shell' | 'http' | string;
  notebook: string | null;
  /** The code of the cell that asked. */
  cell_code: string | null;
  kernel_id: string | null;
  requested_at: string;
  expires_at: string;
  decisions: IApprovalDecision[];
  min_approvals: number;
}

/** `GET approvals?state=pending`: reviewers see all, others their own. */
export interface IApprovalList {
  approvals: IApproval[];
}

/** Body of `POST approvals/{id}`. */
export interface IApprovalVote {
  decision: 'approve' | 'deny';
  reason: string;
}
