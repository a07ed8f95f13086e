"""Browser sign-in sessions, kept on the server so that signing out ends them.

The signed session cookie holds only a random session id and its expiry; who the person is,
and the ID token the issuer gave (for `id_token_hint` at sign-out), stay here in memory.
`/logout` ends the session: the same cookie, copied before, no longer authenticates, and
the kernel websockets and terminals the session opened (`watch`) are handed back to be
closed. A server restart forgets every session, so everyone signs in again.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

MAX_SESSIONS = 100_000  # beyond this, the sessions that expire soonest are dropped first

# how a websocket opened by a session is closed when the session ends (server/sockets.py)
CLOSE_CODE = 4001
SESSION_ENDED = "session ended: sign in again"
SESSION_EXPIRED = "session expired: sign in again"


@dataclass
class Session:
    identity: dict
    expires_at: float  # epoch seconds
    # the ID token of this sign-in, only for the issuer's end-session endpoint: never logged
    id_token: str | None = field(default=None, repr=False)
    # the websocket handlers this session opened and that are still open
    sockets: set = field(default_factory=set, repr=False)


class Sessions:
    """Live sessions by id. Unknown, ended and expired ids are all `None` to `get`."""

    def __init__(self):
        self._live: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._live)

    def start(self, identity: dict, lifetime: float, id_token: str | None = None) -> tuple:
        """A new session: (its id, when it expires)."""
        now = time.time()
        if len(self._live) >= MAX_SESSIONS:
            self.prune(now)
            while len(self._live) >= MAX_SESSIONS:
                del self._live[min(self._live, key=lambda s: self._live[s].expires_at)]
        sid = secrets.token_urlsafe(32)
        expires_at = int(now + lifetime)
        self._live[sid] = Session(identity, expires_at, id_token)
        return sid, expires_at

    def get(self, sid) -> Session | None:
        if not isinstance(sid, str):
            return None
        session = self._live.get(sid)
        if session is not None and session.expires_at < time.time():
            del self._live[sid]
            return None
        return session

    def watch(self, sid, handler) -> bool:
        """Remember a websocket opened by a live session (closed when it ends)."""
        session = self.get(sid)
        if session is None:
            return False
        session.sockets.add(handler)
        return True

    def unwatch(self, sid, handler) -> None:
        session = self._live.get(sid) if isinstance(sid, str) else None
        if session is not None:
            session.sockets.discard(handler)

    def end(self, sid) -> Session | None:
        """End a session (sign-out); the session it was, if it was live."""
        return self._live.pop(sid, None) if isinstance(sid, str) else None

    def close_sockets(self, session: Session, reason: str) -> None:
        """Close the websockets an ended session opened, saying why."""
        for handler in list(session.sockets):
            close_socket(handler, reason)
        session.sockets.clear()

    def prune(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self._live = {s: v for s, v in self._live.items() if v.expires_at >= now}


def close_socket(handler, reason: str) -> None:
    """Close one websocket handler with `CLOSE_CODE` and the reason (it may be closed)."""
    try:
        handler.close(CLOSE_CODE, reason)
    except Exception:  # noqa: BLE001 - already closed
        pass
