"""jupyter_server's own API refusals say that the sign-in session has ended.

An API request without a signed-in user gets jupyter_server's bare `403 Forbidden`, which
JupyterLab shows as it is (e.g. "Error Starting Kernel: Forbidden" when a kernel reconnects
after the session ended). Under jupyter-audit's `OIDCIdentityProvider` that refusal's
message says what happened and what to do: "Your session has ended: sign in again (…)".
The audit API's own 401s say it with a machine-readable reason (server/handlers.py).
"""

from __future__ import annotations

from jupyter_server.base.handlers import APIHandler
from tornado import web

from ...identity.oidc import OIDCIdentityProvider

WHY = {
    "session_expired": "it expired",
    "session_ended": "signed out, or the server restarted",
}


def message_for(handler) -> str:
    # no session cookie at all: signed out in this browser, or the browser dropped it
    why = WHY.get(getattr(handler, "_audit_session_state", None) or "", "signed out, or it expired")
    return f"Your session has ended: sign in again ({why})"


def install() -> None:
    if getattr(APIHandler, "_jupyter_audit_signin", False):
        return
    original = APIHandler.write_error

    def write_error(self, status_code: int, **kwargs) -> None:
        exc_info = kwargs.get("exc_info")
        exc = exc_info[1] if exc_info else None
        if (
            status_code == 403
            and isinstance(exc, web.HTTPError)
            and not exc.log_message
            and not getattr(self, "_jupyter_current_user", None)
            and isinstance(self.identity_provider, OIDCIdentityProvider)
        ):
            said = web.HTTPError(403, message_for(self).replace("%", "%%"))
            kwargs["exc_info"] = (type(said), said, exc_info[2] if exc_info else None)
        original(self, status_code, **kwargs)

    APIHandler.write_error = write_error  # type: ignore[method-assign]
    setattr(APIHandler, "_jupyter_audit_signin", True)  # noqa: B010 - marks it wrapped
