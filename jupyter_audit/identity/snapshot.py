"""Identity snapshots: who did something, as they were when they did it.

A snapshot is stored once, by the hash of its canonical bytes, and never updated, so revoking
a token or deleting a user never erases who did what. Pure data: this module imports neither
tornado nor jupyter_server (the trail's records use it).
"""

from __future__ import annotations

import getpass
from typing import Any

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


def make_snapshot(**fields: Any) -> dict:
    """A normalised identity snapshot: every field present, strings or None, groups sorted."""
    unknown = set(fields) - set(SNAPSHOT_FIELDS)
    if unknown:
        raise ValueError(f"unknown identity fields {sorted(unknown)}")
    snap: dict[str, Any] = {}
    for name in SNAPSHOT_FIELDS:
        value = fields.get(name)
        if name == "groups":
            snap[name] = sorted({str(g) for g in (value or [])})
        else:
            snap[name] = None if value is None else str(value)
    if not snap["username"]:
        raise ValueError("identity snapshot needs a username")
    return snap


def normalise_snapshot(raw: object) -> dict:
    if not isinstance(raw, dict):
        raise ValueError("identity must be an object")
    return make_snapshot(**{k: v for k, v in raw.items() if k in SNAPSHOT_FIELDS})


def os_username() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


#: the `auth_method` of the server's own events (nothing a person signs in with)
SYSTEM_AUTH_METHOD = "system"


def server_label(username: str) -> str:
    """How the server's own identity reads wherever a person's name would be shown."""
    return f"jupyter-audit server ({username})"


def system_identity() -> dict:
    """The server itself (checkpoints, integrity checks, kernels it ends): the OS account
    that runs it, named as the server's so no one reads it as a person."""
    user = os_username()
    return make_snapshot(
        username=user, auth_method=SYSTEM_AUTH_METHOD, display_name=server_label(user)
    )


def is_system(snapshot: dict | None) -> bool:
    """Whether a snapshot is the server's own: never a participant of a trace."""
    return snapshot is not None and snapshot.get("auth_method") == SYSTEM_AUTH_METHOD


def actor_label(snapshot: dict | None) -> str:
    """Who did something, as the CLI and the panel show it: the username of a person or
    service account, "jupyter-audit server (ACCOUNT)" for the server's own events (older
    trails' system snapshots carry no display name: the label is made here, not stored)."""
    if not snapshot:
        return "-"
    username = snapshot.get("username") or "?"
    return server_label(username) if is_system(snapshot) else username
