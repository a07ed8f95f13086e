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
  /**
   * Which trail the panel reads: `server`, this server's own; `collector`, the
   * JupyterHub's (every server the user may see; `roles` are then the
   * collector's, from the Hub's groups).
   */
  source?: 'server' | 'collector' | string;
  /** With `source` `collector`: the user's own servers the collector knows. */
  servers?: string[];
  /**
   * With `source` `collector`: the Hub's public prefix of the collector
   * (`/services/<name>/`), where the browser decides approvals.
   */
  collector_prefix?: string | null;
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
  /** Every name the trace had, oldest first (current last). */
  notebooks?: string[];
  /** People and service accounts (never the server's own identity). */
  participants?: IParticipant[];
  /** `last_at` − `started_at`, in seconds. */
  duration_s?: number;
  counts?: ITraceCounts;
  /** Flag names whose count is > 0, see `TRACE_FLAGS`. */
  flags?: string[];
  /** Matching records when the list was searched (`q`). */
  matches?: number;
  /**
   * From the Hub's collector: the server that recorded the trace
   * (`<user>/<name>`) and its owner, as the Hub named them.
   */
  server?: string | null;
  owner?: string | null;
}

/** Someone who acted in a trace: a person, or a service account and its owner. */
export interface IParticipant {
  username: string;
  service_account: boolean;
  token_owner: string | null;
  display_name: string | null;
}

/** What a trace holds, counted by the server. */
export interface ITraceCounts {
  cells: number;
  queries: number;
  http: number;
  shell: number;
  failed_cells: number;
  risky: number;
  approvals: number;
  capture_gaps: number;
  unattributed: number;
}

/** The flags a trace may carry, in the order the panel shows them. */
export const TRACE_FLAGS = [
  'integrity',
  'failed_cells',
  'risky',
  'approvals',
  'capture_gaps',
  'unattributed'
] as const;

/** `GET traces?limit=N&cursor=…&…`. */
export interface ITraceList {
  traces: ITraceSummary[];
  /** Cursor of the next page; null (or absent) on the last one. */
  next?: string | null;
  /** The whole trail's verification. */
  integrity?: IIntegrity;
}

/** The filters of `GET traces` (and of `GET export`), all optional. */
export interface ITraceFilter {
  user?: string;
  notebook?: string;
  /** ISO 8601; the trace overlaps [since, until]. */
  since?: string;
  until?: string;
  /** An event kind the trace must contain, e.g. `op.sql`. */
  kind?: string;
  /** Flags that must all hold. */
  flags?: string[];
  /** Full-text search over the masked content. */
  q?: string;
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
  /** When the step happened in the kernel (ISO 8601 UTC); `time` is the server's record time. */
  kernel_time?: string | null;
  op_index?: number | null;
  /** The notebook's name at that moment. */
  notebook?: string | null;
  /** Consecutive identical operations folded into this one. */
  repeat?: IRepeat;
  /** This record fails verification. */
  broken?: boolean;
  /** Why the policy flagged this operation. */
  risk?: { decision: string; rules: string[] };
}

/** A folded group of identical operations of one cell. */
export interface IRepeat {
  count: number;
  first_seq: number;
  last_seq: number;
  errors: number;
}

/** Verification of one trace's records. */
export interface ITraceIntegrity {
  ok: boolean;
  first_bad_seq: number | null;
  problem: string | null;
  /** The newest signed checkpoint covering the trace's last event. */
  checkpoint: { seq: number; signed_at: string; key_id: string } | null;
  verified_up_to: number | null;
}

/** `GET traces/{trace_id}?limit&after_seq|before_seq|page=last&fold&msg_id`. */
export interface ITraceDetail {
  trace: ITraceSummary;
  /** In `seq` order. */
  events: ITraceEvent[];
  /** Null on the last page. */
  next_after_seq?: number | null;
  /** Null on the first page. */
  prev_before_seq?: number | null;
  /** Events in the trace (unfolded, unfiltered). */
  total?: number;
  integrity?: ITraceIntegrity;
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
