"""People's browser sessions at the collector: the Hub's OAuth, for decisions.

A decision needs a credential no kernel holds. A single-user server's own token
(`JUPYTERHUB_API_TOKEN`) is in its environment, which every kernel of that server inherits, so
it never decides (`hubauth.is_server_token`). People decide with:
- their browser session at the collector: the collector is a Hub OAuth client
  (`jupyterhub.services.auth.HubOAuth`, callback `<prefix>oauth_callback`); the session cookie
  is HttpOnly, set for the service's path, and a POST it authenticates must carry the
  JupyterHub XSRF token (`X-XSRFToken`) matching its `_xsrf` cookie;
- or a Hub token that is not a server's (a person's own API token, for the CLI).
The Hub's authorize endpoint takes only the Hub's login cookie, never a token, so code that
holds a server's token cannot sign in here either.

Routes, under the service prefix:
- `GET <prefix>jupyter-audit/sign-in` -> the Hub's sign-in (OAuth), then a page that says so
- `GET <prefix>oauth_callback` -> completes it (jupyterhub's `HubOAuthCallbackHandler`)
- `GET <prefix>jupyter-audit/api/session` -> {"username", "xsrf_token"} for the signed-in
  browser (same origin: the panel reads its token), or 401 {"code", "message", "sign_in"}
"""

from __future__ import annotations

import html
import json
import os
import secrets
from pathlib import Path

from jupyterhub._xsrf_utils import _needs_check_xsrf
from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler, HubOAuthenticated
from tornado import web

from .handlers import CollectorHandler
from .hubauth import Refused

OAUTH_KEY = "jupyter_audit_collector_oauth"
SIGN_IN = "jupyter-audit/sign-in"


def browser_settings(state: Path) -> dict:
    """The web app's settings for browser sessions (`run`): the Hub's OAuth client from the
    service's environment and a cookie secret kept in the state directory (0600), so a
    restart keeps people signed in."""
    path = state / "cookie-secret"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    path.chmod(0o600)
    oauth = HubOAuth()  # client id, callback URL and prefix from JUPYTERHUB_* (managed service)
    return {OAUTH_KEY: oauth, "cookie_secret": path.read_text().strip()}


def browser_prefix(handler) -> str | None:
    """The Hub's public prefix of the collector (`/services/<name>/`), where a browser signs
    in and decides; None when the collector is no Hub OAuth client."""
    oauth = handler.settings.get(OAUTH_KEY)
    return oauth.base_url if oauth is not None else None


def prefix_of(path: str) -> str:
    """The service prefix of a request path under `<prefix>jupyter-audit/` (or `oauth_...`)."""
    cut = path.find("jupyter-audit/")
    return path[:cut] if cut >= 0 else "/"


class BrowserSession(HubOAuthenticated):
    """The Hub's OAuth session of a browser, for the collector's handlers (mix in first):
    jupyterhub's XSRF token and check, the OAuth client from the app's settings."""

    @property
    def hub_auth(self):
        return self.settings.get(OAUTH_KEY)

    @hub_auth.setter
    def hub_auth(self, auth) -> None:  # HubAuthenticated's setter, unused here
        raise AttributeError("the collector's OAuth client comes from its settings")

    def get_current_user(self):
        # the user `session_user` found (never jupyterhub's blocking look-up on the loop)
        return getattr(self, "hub_user", None)

    def sign_in_url(self) -> str:
        return prefix_of(self.request.path) + SIGN_IN

    async def session_user(self) -> dict | None:
        """The Hub user of this browser's session cookie, or None (not signed in, or the
        Hub no longer knows its token). A state-changing request must carry the XSRF token
        (403 otherwise, recorded)."""
        oauth = self.hub_auth
        token = oauth._get_token_cookie(self) if oauth is not None else None
        if not token:
            return None
        if _needs_check_xsrf(self):
            try:
                self.check_xsrf_cookie()
            except web.HTTPError as e:
                self.refuse(
                    403,
                    f"{e.log_message}: a decision in a browser session must carry the "
                    "collector's XSRF token (X-XSRFToken, from GET jupyter-audit/api/session)",
                )
        try:
            self.hub_user = await self.ctx.users.user(token)
        except Refused:
            oauth.clear_cookie(self)
            return None
        return self.hub_user

    def needs_sign_in(self) -> None:
        """401: sign in at the collector first (the answer names where)."""
        self.set_status(401)
        self.finish(
            json.dumps(
                {
                    "code": 401,
                    "message": "sign in to the audit collector in your browser first "
                    f"({self.sign_in_url()}), then try again",
                    "sign_in": self.sign_in_url(),
                }
            )
        )


class SessionHandler(BrowserSession, CollectorHandler):
    async def get(self) -> None:
        user = await self.session_user()
        if user is None:
            self.needs_sign_in()
            return
        self.finish(json.dumps({"username": user["name"], "xsrf_token": self.xsrf_token.decode()}))


class SignInHandler(BrowserSession, CollectorHandler):
    """The Hub's sign-in for the collector, then a page that says who is signed in."""

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("Content-Security-Policy", "default-src 'none'")

    async def get(self) -> None:
        if self.hub_auth is None:
            raise web.HTTPError(404, "this collector is not a Hub OAuth client")
        user = await self.session_user()
        if user is None:
            self.redirect(self.get_login_url())
            return
        name = html.escape(str(user["name"]))
        self.xsrf_token  # noqa: B018 - sets the XSRF cookie on this (navigation) request
        self.finish(
            "<!doctype html><title>Audit collector</title>"
            f"<p>Signed in to the audit collector as <b>{name}</b>. You may close this "
            "window and decide again in JupyterLab.</p>"
        )


class CallbackHandler(HubOAuthCallbackHandler):
    @property
    def hub_auth(self):
        return self.settings.get(OAUTH_KEY)

    @hub_auth.setter
    def hub_auth(self, auth) -> None:
        raise AttributeError("the collector's OAuth client comes from its settings")

    async def get(self) -> None:
        if self.hub_auth is None:
            raise web.HTTPError(404, "this collector is not a Hub OAuth client")
        await super().get()


def browser_handlers(prefix: str) -> list:
    prefix = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
    return [
        (prefix + "oauth_callback", CallbackHandler),
        (prefix + SIGN_IN, SignInHandler),
        (prefix + "jupyter-audit/api/session", SessionHandler),
    ]
