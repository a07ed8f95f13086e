"""JupyterLab workspaces kept per signed-in user.

jupyterlab_server keeps one directory of workspaces (which notebooks are open, the layout)
for the whole server, and JupyterLab loads its workspace from `/lab/api/workspaces/<name>`
("default" unless the URL names one) and saves it there as people work. With several people
signing in to one server, bob's first sign-in opened alice's notebooks. When the server
signs people in with jupyter-audit's `OIDCIdentityProvider`, the workspaces API reads and
writes `<workspaces_dir>/users/<key>/` instead, where the key is a hash of the person's
issuer and subject (stable when a username or email changes, no name on disk).

Only the layout is separated: one server shares its files and kernels among everyone who
signs in (docs/identity.md; JupyterHub gives each person a server of their own).
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from pathlib import Path

from ...identity.oidc import OIDCIdentityProvider

log = logging.getLogger("jupyter_audit.workspaces")

USERS_DIR = "users"


def user_key(user) -> str:
    """The directory name of a signed-in user's workspaces."""
    identity = getattr(user, "audit_identity", None) or {}
    issuer, subject = identity.get("issuer"), identity.get("subject")
    who = f"{issuer}\n{subject}" if issuer and subject else f"user\n{user.username}"
    return hashlib.sha256(who.encode("utf-8")).hexdigest()[:32]


def install() -> bool:
    """Route the workspaces API to per-user directories under OIDCIdentityProvider."""
    try:
        from jupyterlab_server.workspaces_handler import WorkspacesHandler, WorkspacesManager
    except ImportError:
        return False
    if getattr(WorkspacesHandler, "_jupyter_audit_workspaces", False):
        return True
    original = WorkspacesHandler.prepare

    async def prepare(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        if inspect.isawaitable(out):
            await out
        if not isinstance(self.identity_provider, OIDCIdentityProvider):
            return
        user = self.current_user
        if not user:
            return  # refused by @web.authenticated before the manager is used
        shared = Path(self.manager.workspaces_dir)
        self.manager = WorkspacesManager(str(shared / USERS_DIR / user_key(user)))

    WorkspacesHandler.prepare = prepare  # type: ignore[method-assign]
    setattr(WorkspacesHandler, "_jupyter_audit_workspaces", True)  # noqa: B010 - marks it wrapped
    return True
