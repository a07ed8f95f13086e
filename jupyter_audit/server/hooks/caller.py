"""Who caused what the server is doing now: the identity of the request being served.

jupyter_server's CallContext holds the current handler; outside a request (a kernel that
died, the server shutting down) it is the server's own (system) identity.
"""

from __future__ import annotations

from jupyter_server.base.call_context import CallContext

from ...identity import system_identity
from ...identity.resolve import snapshot_for


def current_identity() -> dict:
    handler = CallContext.get(CallContext.JUPYTER_HANDLER)
    if handler is None:
        return system_identity()
    try:
        return snapshot_for(handler.current_user, handler.identity_provider)
    except Exception:  # noqa: BLE001 - no authenticated user behind this call
        return system_identity()
