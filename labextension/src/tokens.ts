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
