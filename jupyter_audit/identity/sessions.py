"""Browser sign-in sessions, kept on the server so that signing out ends them.

The signed session cookie holds only a random session id and its expiry; who the person is,
and the ID token the issuer gave (for `id_token_hint` at sign-out), stay here in memory.
`/logout` ends the session: the same cookie, copied before, no longer authenticates. A
server restart forgets every session, so everyone signs in again.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

MAX_SESSIONS = 100_000  # beyond this, the sessions that expire soonest are dropped first


@dataclass
class Session:
    identity: dict
    expires_at: float  # epoch seconds
    # the ID token of this sign-in, only for the issuer's end-session endpoint: never logged
    id_token: str | None = field(default=None, repr=False)


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

    def end(self, sid) -> Session | None:
        """End a session (sign-out); the session it was, if it was live."""
        return self._live.pop(sid, None) if isinstance(sid, str) else None

    def prune(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self._live = {s: v for s, v in self._live.items() if v.expires_at >= now}
