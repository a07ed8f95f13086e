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


def system_identity() -> dict:
    """The server itself (checkpoints, integrity checks): the OS account that runs it."""
    return make_snapshot(username=os_username(), auth_method="system")
