"""Service-account tokens: how automated jobs authenticate, attributed to a person.

A token is `jat_<token id>_<secret>`. It is shown once; the trail's `service_tokens` table
keeps only the sha256 of the secret. Creating and revoking one is recorded in the log
(`token.created` / `token.revoked`). A request made with a token is recorded under an
identity snapshot naming the service account, the token id and its owner; the owner's own
identity at creation time (as last seen signing in) is linked from `token.created`. None of it
depends on the token still existing or the owner still being in the OIDC directory.

Tokens work whatever the sign-in (token login, OIDC, JupyterHub): `install()` puts them in
front of the server's IdentityProvider.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
from datetime import UTC, datetime, timedelta

from ..store.token_log import token_rows_against_log
from ..store.verify import archived_prefix
from .snapshot import make_snapshot
from .users import refuse, user_for

PREFIX = "jat_"
_TOKEN = re.compile(r"^jat_([0-9a-f]{16})_([A-Za-z0-9_-]{20,})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DURATION = re.compile(r"^(\d+)([mhdw])$")
MAX_LIFETIME = timedelta(days=366)


class TokenError(ValueError):
    """A token request that cannot be done; the message is for the user."""


def parse_expiry(raw: str, now: datetime | None = None) -> datetime:
    """`30d`, `12h`, `90m`, `2w`, or an ISO 8601 date/time (UTC when naive)."""
    now = now or datetime.now(UTC)
    if not isinstance(raw, str):
        raise TokenError("expires must be a string such as 30d, 12h, 90m, 2w or an ISO date")
    text = raw.strip()
    m = _DURATION.match(text)
    if m:
        n, unit = int(m.group(1)), m.group(2)
        delta = {"m": timedelta(minutes=n), "h": timedelta(hours=n), "d": timedelta(days=n)}.get(
            unit, timedelta(weeks=n)
        )
        when = now + delta
    else:
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise TokenError(
                f"--expires {raw!r}: use a duration like 30d, 12h, 90m, 2w or an ISO date"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    if when <= now:
        raise TokenError("the expiry must be in the future")
    if when - now > MAX_LIFETIME:
        raise TokenError(f"tokens live at most {MAX_LIFETIME.days} days")
    return when


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _utc(value) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


class TokenStore:
    """The service tokens of one trail, cached in memory (the server owns the file, so the
    cache is the truth between requests: a revocation counts from the next request)."""

    def __init__(self, writer):
        self.writer = writer
        self._lock = threading.Lock()
        self._rows: dict[str, dict] = {}
        cur = writer.cursor()
        cols = [
            "token_id",
            "secret_hash",
            "service_account",
            "owner",
            "owner_identity_id",
            "created_at",
            "created_by",
            "expires_at",
            "revoked_at",
            "revoked_by",
        ]
        # a row that differs from the signed log (edited while the server was stopped) is
        # not accepted: the trail's integrity record says what was found
        # tokens created in records archived away: as the signed trail.archived recorded;
        # after the writer's own check at open, only when that check found nothing (its key
        # trust could rest on a record an edit replaced)
        integrity = getattr(writer, "integrity", None)
        if integrity is not None:
            prefix = integrity.covering if integrity.ok else None
        else:
            prefix = archived_prefix(cur, writer.trail_id)
        wrong = token_rows_against_log(cur, (prefix or {}).get("tokens"))
        for row in cur.execute(f"SELECT {', '.join(cols)} FROM service_tokens").fetchall():
            rec = dict(zip(cols, row, strict=True))
            if rec["token_id"] in wrong:
                continue
            for k in ("created_at", "expires_at", "revoked_at"):
                rec[k] = _utc(rec[k])
            self._rows[rec["token_id"]] = rec

    # ------------------------------------------------------------ lookups
    def public(self, row: dict, now: datetime | None = None) -> dict:
        """What may be shown about a token: never its secret or hash."""
        now = now or datetime.now(UTC)
        if row["revoked_at"]:
            state = "revoked"
        elif row["expires_at"] and row["expires_at"] <= now:
            state = "expired"
        else:
            state = "active"
        return {
            "id": row["token_id"],
            "service_account": row["service_account"],
            "owner": row["owner"],
            "owner_identity_id": row["owner_identity_id"],
            "created_at": _iso(row["created_at"]),
            "created_by": row["created_by"],
            "expires_at": _iso(row["expires_at"]),
            "revoked_at": _iso(row["revoked_at"]),
            "revoked_by": row["revoked_by"],
            "state": state,
        }

    def list(self) -> list[dict]:
        now = datetime.now(UTC)
        rows = sorted(self._rows.values(), key=lambda r: r["created_at"], reverse=True)
        return [self.public(r, now) for r in rows]

    def get(self, token_id: str) -> dict | None:
        row = self._rows.get(token_id)
        return self.public(row) if row else None

    def check(self, token: str) -> tuple[dict | None, str]:
        """(identity snapshot, "") for a valid token, else (None, why it is refused)."""
        m = _TOKEN.match(token)
        if not m:
            return None, "malformed service token"
        row = self._rows.get(m.group(1))
        if row is None or not secrets.compare_digest(row["secret_hash"], _hash(m.group(2))):
            return None, "unknown service token"
        if row["revoked_at"]:
            return None, f"service token {row['token_id']} was revoked"
        if row["expires_at"] and row["expires_at"] <= datetime.now(UTC):
            return None, f"service token {row['token_id']} expired"
        return self.snapshot(row), ""

    def expires_at(self, token_id: str) -> float | None:
        """When a token expires (epoch seconds), if it does: its websockets close then."""
        row = self._rows.get(token_id)
        return row["expires_at"].timestamp() if row and row["expires_at"] else None

    def is_active(self, token_id: str) -> bool:
        row = self._rows.get(token_id)
        return bool(
            row
            and not row["revoked_at"]
            and not (row["expires_at"] and row["expires_at"] <= datetime.now(UTC))
        )

    @staticmethod
    def snapshot(row: dict) -> dict:
        return make_snapshot(
            username=row["service_account"],
            auth_method="service_token",
            token_id=row["token_id"],
            token_owner=row["owner"],
            display_name=f"{row['service_account']} (service account of {row['owner']})",
        )

    # ------------------------------------------------------------ changes
    def _owner_identity(self, owner: str) -> str | None:
        """The owner's own identity snapshot as last seen signing in, if ever."""
        row = (
            self.writer.cursor()
            .execute(
                "SELECT identity_id FROM identities "
                "WHERE json_extract_string(snapshot, '$.email') = ? "
                "AND json_extract_string(snapshot, '$.auth_method') <> 'service_token' "
                "ORDER BY first_seq DESC LIMIT 1",
                [owner],
            )
            .fetchone()
        )
        return row[0] if row else None

    def create(
        self, service_account: str, owner: str, expires: str, created_by: dict
    ) -> tuple[str, dict]:
        """(the token, shown once; its public record). Recorded as `token.created`."""
        if not isinstance(service_account, str) or not _NAME.match(service_account):
            raise TokenError(
                "service account: 1-64 letters, digits, '.', '_', '@' or '-', "
                "starting with a letter or digit"
            )
        if not isinstance(owner, str) or not _EMAIL.match(owner):
            raise TokenError("owner must be the email address of the person responsible")
        expires_at = parse_expiry(expires)
        taken = (
            self.writer.cursor()
            .execute(
                "SELECT 1 FROM identities WHERE username = ? "
                "AND json_extract_string(snapshot, '$.auth_method') <> 'service_token' LIMIT 1",
                [service_account],
            )
            .fetchone()
        )
        if taken:
            # the trail and the access rules go by username: a job must not pass as a person
            raise TokenError(f"{service_account!r} is a person's username here; pick another name")
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        row = {
            "token_id": token_id,
            "secret_hash": _hash(secret),
            "service_account": service_account,
            "owner": owner,
            "owner_identity_id": self._owner_identity(owner),
            "created_at": now,
            "created_by": created_by["username"],
            "expires_at": expires_at,
            "revoked_at": None,
            "revoked_by": None,
        }
        with self._lock:
            cur = self.writer.cursor()
            cur.execute(
                "INSERT INTO service_tokens VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    row["token_id"],
                    row["secret_hash"],
                    service_account,
                    owner,
                    row["owner_identity_id"],
                    now.replace(tzinfo=None),
                    row["created_by"],
                    expires_at.replace(tzinfo=None),
                    None,
                    None,
                ],
            )
            self._rows[token_id] = row
        self.writer.append(
            {
                "kind": "token.created",
                "identity": created_by,
                "payload": {
                    "token_id": token_id,
                    "service_account": service_account,
                    "owner": owner,
                    "owner_identity_id": row["owner_identity_id"],
                    "expires": _iso(expires_at),
                    # what `verify` and a later server check the table's row against (a
                    # hash of 256 random bits: it lets no one authenticate)
                    "secret_sha256": row["secret_hash"],
                },
            }
        )
        return f"{PREFIX}{token_id}_{secret}", self.public(row)

    def revoke(self, token_id: str, revoked_by: dict, reason: str | None = None) -> dict:
        """Revoke now; recorded as `token.revoked`. Revoking twice is an error."""
        with self._lock:
            row = self._rows.get(token_id)
            if row is None:
                raise KeyError(token_id)
            if row["revoked_at"]:
                raise TokenError(f"token {token_id} is already revoked")
            now = datetime.now(UTC)
            self.writer.cursor().execute(
                "UPDATE service_tokens SET revoked_at = ?, revoked_by = ? WHERE token_id = ?",
                [now.replace(tzinfo=None), revoked_by["username"], token_id],
            )
            row["revoked_at"], row["revoked_by"] = now, revoked_by["username"]
        self.writer.append(
            {
                "kind": "token.revoked",
                "identity": revoked_by,
                "payload": {"token_id": token_id, "reason": reason},
            }
        )
        return self.public(row)


def install(identity_provider, store: TokenStore, on_user=None) -> None:
    """Accept service tokens (`Authorization: token|Bearer jat_…`) before the server's own
    sign-in, whatever IdentityProvider it uses."""
    original = identity_provider.get_user

    async def get_user(handler):
        header = handler.request.headers.get("Authorization", "")
        m = identity_provider.auth_header_pat.match(header)
        token = m.group(2).strip() if m else ""
        if token.startswith(PREFIX):
            snapshot, why = store.check(token)
            if snapshot is None:
                refuse(handler, why, identity_provider.log)
                return None
            handler._token_authenticated = True  # an API client: no XSRF cookie involved
            # its expiry closes the websockets it opens ("token expired: use a new token")
            return user_for(snapshot, expires_at=store.expires_at(snapshot["token_id"]))
        user = original(handler)
        if hasattr(user, "__await__"):
            user = await user
        return user

    identity_provider.get_user = get_user
