"""Identity: who is behind a request, as a snapshot the trail stores.

`snapshot` is pure data (no tornado, no jupyter_server) and is what the rest of the package
imports; `users`, `resolve`, `tokens`, `oidc` and `hub` face jupyter_server. The public
configuration paths stay here: `jupyter_audit.identity.OIDCIdentityProvider` and
`jupyter_audit.identity.hub.auth_state_hook`.
"""

from __future__ import annotations

from .snapshot import (
    SNAPSHOT_FIELDS,
    SYSTEM_AUTH_METHOD,
    actor_label,
    is_system,
    make_snapshot,
    normalise_snapshot,
    os_username,
    system_identity,
)

__all__ = [
    "SNAPSHOT_FIELDS",
    "SYSTEM_AUTH_METHOD",
    "OIDCIdentityProvider",
    "actor_label",
    "is_system",
    "make_snapshot",
    "normalise_snapshot",
    "os_username",
    "system_identity",
]


def __getattr__(name: str):
    # `c.ServerApp.identity_provider_class = "jupyter_audit.identity.OIDCIdentityProvider"`
    if name == "OIDCIdentityProvider":
        from .oidc import OIDCIdentityProvider

        return OIDCIdentityProvider
    raise AttributeError(name)
