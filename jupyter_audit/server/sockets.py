"""Open kernel websockets and terminals end with the credential that opened them.

The gateway and the terminal hook call `watch` when a socket opens and `unwatch` when it
closes. A watched socket is closed with code `CLOSE_CODE` (4001) and a reason a client can
show when:

- the browser sign-in session that opened it ends (`/logout`): "session ended: sign in
  again" (OIDCIdentityProvider.end_session closes the session's sockets);
- its session, or the bearer or service token behind it, expires: "session expired: sign in
  again" (a timer per socket, at the credential's `expires_at`);
- its service token is revoked: "service token revoked" (Recorder.close_token_sockets).

jupyter_server's event stream (`/api/events/subscribe`: saved files, kernel actions) is
watched the same way (`install_event_stream`).

Each cell and keystroke is still checked against the credential (AuditAuthorizer.allows):
closing the socket is what tells the person why, instead of a kernel that seems dead.
"""

from __future__ import annotations

import time

from tornado.ioloop import IOLoop

from ..identity.sessions import SESSION_ENDED, SESSION_EXPIRED, close_socket

TOKEN_EXPIRED = "token expired: use a new token"


def watch(handler, recorder) -> None:
    """A kernel websocket or terminal opened by `handler.current_user`."""
    if getattr(handler, "_audit_watched", False):
        return
    handler._audit_watched = True
    user = handler.current_user
    identity = getattr(user, "audit_identity", None) or {}
    token_id = identity.get("token_id")
    if token_id and recorder is not None:
        recorder.watch_token(token_id, handler)  # closed at once if the token is revoked
    sid = getattr(handler, "_audit_session_id", None)
    sessions = getattr(handler.identity_provider, "sessions", None)
    if sid and sessions is not None and not sessions.watch(sid, handler):
        # authenticated just before its session ended (signed out while it connected)
        close_socket(handler, SESSION_ENDED)
        return
    expires_at = getattr(user, "expires_at", None)
    if isinstance(expires_at, int | float):
        reason = SESSION_EXPIRED if sid else TOKEN_EXPIRED
        delay = max(0.0, expires_at - time.time())
        handler._audit_expiry = IOLoop.current().call_later(delay, close_socket, handler, reason)


def unwatch(handler, recorder) -> None:
    """The socket closed (by either side)."""
    if not getattr(handler, "_audit_watched", False):
        return
    handler._audit_watched = False
    timer = getattr(handler, "_audit_expiry", None)
    if timer is not None:
        IOLoop.current().remove_timeout(timer)
        handler._audit_expiry = None
    identity = getattr(handler.current_user, "audit_identity", None) or {}
    token_id = identity.get("token_id")
    if token_id and recorder is not None:
        recorder.unwatch_token(token_id, handler)
    sessions = getattr(handler.identity_provider, "sessions", None)
    sid = getattr(handler, "_audit_session_id", None)
    if sid and sessions is not None:
        sessions.unwatch(sid, handler)


def install_event_stream() -> None:
    """Watch jupyter_server's event-stream websocket like a kernel's: it too must not
    outlive the sign-in that opened it."""
    try:
        from jupyter_server.services.events.handlers import SubscribeWebsocket
    except ImportError:
        return
    if getattr(SubscribeWebsocket, "_jupyter_audit_watched", False):
        return
    original_open, original_on_close = SubscribeWebsocket.open, SubscribeWebsocket.on_close

    def watched_open(self, *args, **kwargs):
        watch(self, self.settings.get("jupyter_audit"))
        return original_open(self, *args, **kwargs)

    def watched_on_close(self):
        unwatch(self, self.settings.get("jupyter_audit"))
        return original_on_close(self)

    SubscribeWebsocket.open = watched_open  # type: ignore[method-assign]
    SubscribeWebsocket.on_close = watched_on_close  # type: ignore[method-assign]
    setattr(SubscribeWebsocket, "_jupyter_audit_watched", True)  # noqa: B010 - marks it wrapped
