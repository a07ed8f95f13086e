"""jupyter_server users that carry the identity snapshot the trail records, and refused
credentials (said in the 401, recorded through the server's Recorder, never the token)."""

from __future__ import annotations

from dataclasses import dataclass

from jupyter_server.auth import User


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


RECORDER = "jupyter_audit"  # the settings key of the server's Recorder (server/recorder.py)


def refuse(handler, reason: str, log) -> None:
    """A credential was refused: say why in the 401 and hand the refusal to the server's
    Recorder, which logs it and records `security.rejected` (rate-limited per address; never
    the token itself, and nothing under the identity it claimed)."""
    handler._audit_auth_error = reason
    ip = handler.request.remote_ip or "?"
    source = f"{handler.request.method} {handler.request.path} from {ip}"
    recorder = handler.settings.get(RECORDER)
    if recorder is None:
        log.warning("jupyter-audit: refused credentials (%s): %s", source, reason)
        return
    recorder.reject(reason, source, address=ip)
