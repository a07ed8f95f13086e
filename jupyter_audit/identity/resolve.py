"""Turn jupyter_server's authenticated user into an identity snapshot and roles.

The client-supplied username is never used: identity comes from the server's
IdentityProvider. With the standard token/password login the person is the OS account that
runs the server (jupyter's random per-browser username is kept as `session_user`).
"""

from __future__ import annotations

from jupyter_server.auth.identity import IdentityProvider, PasswordIdentityProvider

from .snapshot import SYSTEM_AUTH_METHOD, make_snapshot, os_username

ROLES = ("user", "reviewer", "auditor", "admin")


def is_builtin_login(identity_provider) -> bool:
    return type(identity_provider) in (IdentityProvider, PasswordIdentityProvider)


def snapshot_for(user, identity_provider) -> dict:
    """Identity snapshot of the user behind a request or websocket."""
    explicit = getattr(user, "audit_identity", None)
    if isinstance(explicit, dict):
        return make_snapshot(**explicit)
    if type(identity_provider).__name__ == "JupyterHubIdentityProvider":
        from .hub import snapshot_for_hub_user

        return snapshot_for_hub_user(user)
    if identity_provider is None or is_builtin_login(identity_provider):
        method = "password" if getattr(identity_provider, "hashed_password", "") else "token"
        return make_snapshot(
            username=os_username(),
            auth_method=method,
            display_name=os_username(),
            session_user=getattr(user, "username", None),
        )
    groups = getattr(user, "groups", None) or []
    method = type(identity_provider).__name__.removesuffix("IdentityProvider").lower()
    if method in ("", SYSTEM_AUTH_METHOD):  # a person never reads as the server itself
        method = "custom"
    return make_snapshot(
        username=user.username,
        display_name=getattr(user, "display_name", None) or user.username,
        email=getattr(user, "email", None),
        groups=groups,
        auth_method=method,
    )


def roles_for(snapshot: dict, identity_provider, config) -> list[str]:
    """Roles from groups; with the built-in single-user login the server's owner holds all."""
    if snapshot.get("auth_method") in ("token", "password") and is_builtin_login(identity_provider):
        return list(ROLES)
    groups = set(snapshot.get("groups") or [])
    roles = ["user"]
    if groups & set(config.reviewer_groups):
        roles.append("reviewer")
    if groups & set(config.auditor_groups):
        roles.append("auditor")
    if groups & set(config.admin_groups):
        roles.append("admin")
    return roles
