"""Identity snapshots: who did something, as they were when they did it.

A snapshot is stored once, by the hash of its canonical bytes, and never updated, so revoking
a token or deleting a user never erases who did what.
"""

from __future__ import annotations

import getpass
import time
from dataclasses import dataclass

from jupyter_server.auth import User

SNAPSHOT_FIELDS = (
    "username",
    "subject",
    "issuer",
    "email",
    "groups",
    "auth_method",
    "token_id",
    "token_owner",
    "display_name",
    "session_user",
)


def make_snapshot(**fields) -> dict:
    """A normalised identity snapshot: every field present, strings or None, groups sorted."""
    unknown = set(fields) - set(SNAPSHOT_FIELDS)
    if unknown:
        raise ValueError(f"unknown identity fields {sorted(unknown)}")
    snap = {}
    for name in SNAPSHOT_FIELDS:
        value = fields.get(name)
        if name == "groups":
            snap[name] = sorted({str(g) for g in (value or [])})
        else:
            snap[name] = None if value is None else str(value)
    if not snap["username"]:
        raise ValueError("identity snapshot needs a username")
    return snap


def normalise_snapshot(raw) -> dict:
    if not isinstance(raw, dict):
        raise ValueError("identity must be an object")
    return make_snapshot(**{k: v for k, v in raw.items() if k in SNAPSHOT_FIELDS})


def os_username() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


def system_identity() -> dict:
    """The server itself (checkpoints, integrity checks): the OS account that runs it."""
    return make_snapshot(username=os_username(), auth_method="system")


@dataclass
class AuditUser(User):
    """A jupyter_server User that carries the identity snapshot the trail records."""

    audit_identity: dict | None = None
    # when the credential behind this user stops being valid (epoch seconds), if it does:
    # open websockets and terminals stop accepting input after it
    expires_at: float | None = None


def user_for(snapshot: dict, expires_at: float | None = None) -> AuditUser:
    """The jupyter_server user for an identity snapshot."""
    return AuditUser(
        username=snapshot["username"],
        name=snapshot.get("display_name") or snapshot["username"],
        display_name=snapshot.get("display_name") or snapshot["username"],
        audit_identity=snapshot,
        expires_at=expires_at,
    )


REJECTIONS_PER_MINUTE = 20  # per client address; the rest are counted, not each recorded


def refuse(handler, reason: str, log) -> None:
    """A credential was refused: say why in the 401, log it and record `security.rejected`
    (never the token itself, and nothing under the identity it claimed). A flood from one
    address is recorded as counts, so bad tokens cannot fill the trail."""
    handler._audit_auth_error = reason
    ip = handler.request.remote_ip or "?"
    source = f"{handler.request.method} {handler.request.path} from {ip}"
    audit = handler.settings.get("jupyter_audit")
    if audit is None:
        log.warning("jupyter-audit: refused credentials (%s): %s", source, reason)
        return
    rejections = audit.rejections  # per server: address -> [window start, recorded, suppressed]
    now = time.monotonic()
    if len(rejections) > 10_000:
        rejections.clear()
    window = rejections.setdefault(ip, [now, 0, 0])
    if now - window[0] >= 60:
        window[:] = [now, 0, window[2]]
    if window[1] >= REJECTIONS_PER_MINUTE:
        window[2] += 1
        return
    window[1] += 1
    if window[2]:
        source += f" ({window[2]} more refused since, not recorded one by one)"
        window[2] = 0
    log.warning("jupyter-audit: refused credentials (%s): %s", source, reason)
    audit.writer.submit(
        {
            "kind": "security.rejected",
            "identity": system_identity(),
            "payload": {"reason": reason, "source": source},
        }
    )


def __getattr__(name: str):
    # `c.ServerApp.identity_provider_class = "jupyter_audit.identity.OIDCIdentityProvider"`
    if name == "OIDCIdentityProvider":
        from .oidc import OIDCIdentityProvider

        return OIDCIdentityProvider
    raise AttributeError(name)
