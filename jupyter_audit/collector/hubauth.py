"""Who is forwarding: the Hub's answer for a caller's token, never the request's claim.

The collector asks the Hub (`/hub/api/user`, through jupyterhub's own `HubAuth`, which caches
the answer briefly, keyed by a hash of the token) who a token belongs to and what it may do.
A forwarding server's id is `<hub user>/<server name>`: a single-user server's own token
(`JUPYTERHUB_API_TOKEN`) carries `access:servers!server=<user>/<name>`, which names its server;
for a token that names none (a user's own API token), the user part still comes from the Hub
and only the server name may be claimed. Tokens never reach a log.
"""

from __future__ import annotations

import hashlib

SERVER_SCOPE = "access:servers!server="


class ServerTokens:
    """The tokens servers forwarded or asked with (by SHA-256, the newest MAX of them): a
    server's token never decides, even on a Hub whose `c.Spawner.server_token_scopes` leaves
    out `access:servers!server`, so its scopes do not say whose it is (`is_server_token`).
    A server forwards or sends a heartbeat within seconds of starting, and of the collector
    starting again."""

    MAX = 100_000

    def __init__(self):
        self._seen: dict[str, None] = {}

    @staticmethod
    def digest(token: str) -> str:
        return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()

    def saw(self, token: str) -> None:
        key = self.digest(token)
        self._seen.pop(key, None)
        self._seen[key] = None
        while len(self._seen) > self.MAX:
            self._seen.pop(next(iter(self._seen)))

    def __contains__(self, token: object) -> bool:
        return isinstance(token, str) and self.digest(token) in self._seen


def is_server_token(user: dict) -> bool:
    """Whether the Hub's answer is for a single-user server's own token (its scopes name a
    server: `access:servers!server=<user>/<name>`). That token is in the server's environment,
    which every kernel of that server inherits: it forwards and reads, but never decides."""
    return any(str(s).startswith(SERVER_SCOPE) for s in user.get("scopes") or ())


class Refused(Exception):
    """A caller the collector refuses: `status` (401, 403) and a message safe to show."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def token_from(header: str | None) -> str | None:
    """The token of an `Authorization: token T` or `Bearer T` header."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() not in ("token", "bearer") or not value.strip():
        return None
    return value.strip()


def server_id(user: dict, claimed: str | None) -> str:
    """The id of the server a Hub user model (the Hub's answer for a token) may forward as;
    `claimed` is what the request says (raises Refused 403 when it names another server)."""
    if user.get("kind", "user") != "user" or not isinstance(user.get("name"), str):
        raise Refused(403, "only a Hub user's server may forward to the collector")
    name = user["name"]
    shown = repr(claimed[:80]) if claimed is not None else ""  # as told, never unbounded
    named = {s[len(SERVER_SCOPE) :] for s in user.get("scopes") or () if s.startswith(SERVER_SCOPE)}
    if len(named) == 1:
        (server,) = named
        if server.partition("/")[0] == name:
            if claimed is not None and claimed != server:
                raise Refused(
                    403,
                    f"this token belongs to server {server!r}, which may not forward as {shown}",
                )
            return server
    if claimed is None:
        return f"{name}/"
    user_part, slash, server_name = claimed.partition("/")
    if not slash or user_part != name:
        raise Refused(
            403, f"this token belongs to Hub user {name!r}, who may not forward as {shown}"
        )
    if not server_name.isprintable() or len(claimed) > 255:
        raise Refused(403, "the server name is not a Hub server name")
    return claimed


class HubUsers:
    """Hub token checks for the collector's handlers (`jupyterhub.services.auth.HubAuth`)."""

    def __init__(self, hub_auth, access_scopes: set[str]):
        self.hub_auth = hub_auth
        self.access_scopes = access_scopes

    async def user(self, token: str | None) -> dict:
        """The Hub's user model for `token`, allowed to call the collector (raises Refused)."""
        if token is None:
            raise Refused(401, "a Hub token is required (Authorization: token …)")
        user = await self.hub_auth.user_for_token(token, sync=False)
        if not user:
            raise Refused(403, "the Hub does not know this token")
        if "/" in str(user.get("name")):
            # JupyterHub's authenticators refuse it; a custom one might not, and 'alice/x'
            # would then name alice's server 'x' (`server_id`, the read API's prefixes)
            raise Refused(403, "a name with '/' is not a Hub user name")
        if self.access_scopes and not self.hub_auth.check_scopes(self.access_scopes, user):
            raise Refused(
                403, f"this token lacks the scope {' or '.join(sorted(self.access_scopes))}"
            )
        return user
