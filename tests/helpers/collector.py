"""The collector's web app on a real port in this process, for tests of what talks to it
(collector/handlers.py, collector/reading.py, collector/approvals.py, on a real trail
store). Only the Hub's token check stands in (`HubStandIn`); the Hub itself is
tests/e2e/test_collector_hub.py."""

from __future__ import annotations

import asyncio
import threading

from tornado import httpserver, web

from helpers.servers import free_port, server_config
from jupyter_audit.collector.app import Context, all_routes
from jupyter_audit.collector.approvals import hub_broker
from jupyter_audit.collector.handlers import SETTINGS_KEY
from jupyter_audit.collector.hubauth import Refused

ALICE_SERVER_TOKEN = "alice-server-token"
ALICE_SERVER = {
    "kind": "user",
    "name": "alice",
    "groups": [],
    "scopes": ["access:servers!server=alice/"],
}
COOKIE_SECRET = "stand-in-cookie-secret-" + "0" * 32


def server_token_user(name: str, groups=(), server: str = "") -> dict:
    """The Hub's answer for a single-user server's own token (JupyterHub 5/6: its scopes name
    the server, tests/e2e/test_collector_hub.py checks the real one)."""
    return {
        "kind": "user",
        "name": name,
        "groups": list(groups),
        "scopes": [
            f"access:servers!server={name}/{server}",
            f"users:activity!user={name}",
            "access:services!service=jupyter-audit",
        ],
    }


def personal_token_user(name: str, groups=()) -> dict:
    """The Hub's answer for a person's own API token (or the collector's OAuth token): no
    server in its scopes."""
    return {
        "kind": "user",
        "name": name,
        "groups": list(groups),
        "scopes": [f"access:servers!user={name}", "access:services!service=jupyter-audit"],
    }


def stand_in_oauth() -> dict:
    """Browser-session settings of the collector (`browser.browser_settings`) without a Hub:
    a real `HubOAuth` client whose session cookies tests sign (`session_cookie`); the token
    in the cookie is checked by the `HubStandIn` as any token."""
    from jupyterhub.services.auth import HubOAuth

    from jupyter_audit.collector.browser import OAUTH_KEY

    oauth = HubOAuth(
        api_token="stand-in",
        api_url="http://127.0.0.1:9/hub/api",
        oauth_client_id="service-jupyter-audit",
        oauth_redirect_uri="http://127.0.0.1:9/oauth_callback",
        base_url="/",
    )
    return {OAUTH_KEY: oauth, "cookie_secret": COOKIE_SECRET}


def session_cookie(token: str) -> str:
    """A `Cookie` header value of the collector's browser session holding `token`."""
    from tornado.web import create_signed_value

    value = create_signed_value(COOKIE_SECRET, "service-jupyter-audit", token).decode()
    return f"service-jupyter-audit={value}"


class HubStandIn:
    """The Hub's answers (`hubauth.HubUsers.user`): token -> user model; by default alice's
    server token only."""

    def __init__(self, users: dict | None = None):
        self.users = users if users is not None else {ALICE_SERVER_TOKEN: ALICE_SERVER}

    async def user(self, token):
        if token not in self.users:
            raise Refused(403, "the Hub does not know this token")
        return self.users[token]


class CollectorWeb:
    """The collector's whole API (`all_routes`, unless `routes` says otherwise) on a port, in
    a thread with its own event loop; it can go away and come back on the same port. Hub
    groups: auditors `auditors`, reviewers `reviewer_groups`, `break_glass_groups`."""

    def __init__(
        self,
        collector,
        hub=None,
        routes=None,
        approval_expiry: float = 1800.0,
        oauth=False,
        reviewer_groups=("reviewers",),
        break_glass_groups=(),
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.loop = asyncio.new_event_loop()
        ctx = Context(
            collector,
            collector.recorder,
            hub or HubStandIn(),
            1 << 24,
            ["auditors"],
            list(reviewer_groups),
            list(break_glass_groups),
        )
        # the Hub's approval queue over the collector's store (collector/approvals.py), with
        # the groups `start_approvals` gives it
        ctx.approvals = self.approvals = hub_broker(
            collector.recorder,
            expiry=approval_expiry,
            reviewer_groups=ctx.reviewer_groups,
            break_glass_groups=ctx.break_glass_groups,
        )
        # oauth: browser sessions too (`stand_in_oauth`, `session_cookie`)
        settings = {SETTINGS_KEY: ctx, **(stand_in_oauth() if oauth else {})}
        self.app = web.Application(routes or all_routes("/"), **settings)
        self.server = None
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def _call(self, fn):
        async def run():
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(30)

    def start(self):
        def listen():
            self.server = httpserver.HTTPServer(self.app)
            self.server.listen(self.port, "127.0.0.1")

        self._call(listen)

    def stop(self):
        self._call(lambda: self.server.stop())

    def close(self):
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)


def owners_server_config(
    trail_dir,
    monkeypatch,
    collector_url: str,
    provider="helpers.identity.HubHeaderIdentityProvider",
    **audit,
) -> dict:
    """The config of alice's single-user server as the Hub's spawner starts it (her name and
    server token in the environment, people named as jupyterhub's identity provider names
    them: helpers.identity, or `provider`), reading the Hub's trail from `collector_url`;
    `audit`: more AuditApp settings."""
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", ALICE_SERVER_TOKEN)
    monkeypatch.delenv("JUPYTERHUB_SERVER_NAME", raising=False)
    return server_config(
        trail_dir / "trail.duckdb",
        server={"identity_provider_class": provider},
        collector_url=collector_url,
        **audit,
    )
