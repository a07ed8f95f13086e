"""Service tokens against the signed log: the `token.created` / `token.revoked` events,
and for tokens whose events were archived away, what the signed `trail.archived` recorded of
them (`tokens`: id -> service account, expiry, secret digest, revoked). Who may
authenticate is decided on the `service_tokens` table, so `verify` and the token store both
judge its rows here. It only reads a trail."""

from __future__ import annotations

import json
from datetime import UTC

_TOKEN_EVENTS = """
SELECT kind, json_extract_string(r, '$.payload.token_id'),
       json_extract_string(r, '$.payload.service_account'),
       json_extract_string(r, '$.payload.expires'),
       json_extract_string(r, '$.payload.secret_sha256')
FROM (SELECT kind, decode(record) AS r FROM events
      WHERE kind IN ('token.created', 'token.revoked') AND seq BETWEEN ? AND ?)
"""


def tokens_logged(con, lo: int = 0, hi: int = 1 << 62, before: dict | None = None) -> dict:
    """Token id -> {service_account, expires, secret_sha256, revoked}: `before` (what an
    earlier archive run recorded) updated by the token events of records #lo..#hi."""
    out = {t: dict(v) for t, v in (before or {}).items()}
    for kind, token_id, account, expires, digest in _token_events(con, lo, hi):
        if kind == "token.created":
            out[token_id] = {
                "service_account": account,
                "expires": expires,
                "secret_sha256": digest,
                "revoked": False,
            }
        elif token_id in out:
            out[token_id]["revoked"] = True
        else:  # revoked in the log, created before it: judged where it was created
            out[token_id] = {"revoked": True}
    return out


def _token_events(con, lo: int, hi: int) -> list[tuple]:
    """(kind, token_id, service_account, expires, secret_sha256) of the token events among
    records #lo..#hi: in SQL on DuckDB, from the decoded records on PostgreSQL."""
    if getattr(con, "dialect", None) != "postgresql":
        return con.execute(_TOKEN_EVENTS, [lo, hi]).fetchall()
    out = []
    for kind, rec in con.execute(
        "SELECT kind, record FROM events WHERE kind IN ('token.created', 'token.revoked') "
        "AND seq BETWEEN ? AND ? ORDER BY seq",
        [lo, hi],
    ).fetchall():
        p = json.loads(bytes(rec)).get("payload") or {}
        fields = ("token_id", "service_account", "expires", "secret_sha256")
        out.append((kind, *(None if p.get(f) is None else str(p.get(f)) for f in fields)))
    return out


def token_rows_against_log(con, archived: dict | None = None) -> dict[str, str]:
    """Token id -> what is wrong with its `service_tokens` row, judged by the signed
    `token.created` / `token.revoked` events and, for tokens created in records archived
    away, the signed `archived` record of them (an edit could revive a revoked token,
    rename it to a person, or plant a row dated before the first live record). A row
    neither has a `token.created` for, or one created without its row, is wrong too."""
    try:
        rows = con.execute(
            "SELECT token_id, secret_hash, service_account, expires_at, revoked_at "
            "FROM service_tokens"
        ).fetchall()
    except Exception:  # noqa: BLE001 - a trail from before service tokens
        return {}
    logged_all = tokens_logged(con, before=archived)
    wrong: dict[str, str] = {}
    for token_id, secret_hash, account, expires_at, revoked_at in rows:
        logged = logged_all.pop(token_id, None)
        if logged is None or "service_account" not in logged:
            wrong[token_id] = "no token.created in the log"
            continue
        expires = None
        if expires_at is not None:
            expires = expires_at.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")
        if logged["service_account"] != account:
            wrong[token_id] = "its service account differs from token.created"
        elif logged["expires"] != expires:
            wrong[token_id] = "its expiry differs from token.created"
        elif logged["secret_sha256"] is not None and logged["secret_sha256"] != secret_hash:
            wrong[token_id] = "its secret differs from token.created"
        elif (revoked_at is None) == logged["revoked"]:
            wrong[token_id] = "revoked in the log but not in the table, or the other way"
    for token_id, logged in logged_all.items():
        if "service_account" in logged:
            wrong[token_id] = "created in the log but missing from the table"
    return wrong
