"""The demo sign-in page, for where a visitor's browser cannot reach the demo's OIDC provider
(Binder: the provider listens on the container's loopback). DEMO ONLY: anyone who reaches
the page can sign in as any demo user.

`DemoSignInIdentityProvider` is the OIDC identity provider with one change: `/login` shows
the demo users instead of redirecting the browser to the provider. Choosing one, the server
itself runs the authorization-code flow at the provider on loopback for that user, checks
the ID token exactly as for a browser sign-in (signature from the JWKS, issuer, audience,
expiry) and starts the same server-side session. Bearer and service tokens work as with
the OIDC provider. Signing out ends the session and comes back to this page. Configured only
by `jupyter audit demo --binder`; never use it where identities matter. (Pointed at a real
issuer by mistake it signs no one in: a real issuer's authorize endpoint wants a password,
not a bare `sub`; and only the four demo users' names are ever offered.)
"""

from __future__ import annotations

import asyncio
import html

from jupyter_server.auth.decorator import allow_unauthenticated
from traitlets import default

from ..identity.issuer import OIDCError
from ..identity.oidc import OIDCIdentityProvider
from ..identity.oidc_handlers import _OIDCHandler
from ..identity.users import user_for
from .people import USERS, id_token_at

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>jupyter-audit demo sign-in</title>
<style>body{{font-family:sans-serif;max-width:42em;margin:3em auto}}
.demo{{background:#fff3cd;border:2px solid #b58100;padding:.8em}}
button{{font-size:1em;margin:.3em 0;padding:.5em 1em;min-width:22em;text-align:left}}</style>
</head><body>
<p class="demo"><strong>DEMO SIGN-IN.</strong> This is the jupyter-audit demo: anyone who
reaches this page can sign in as any demo user, with no password. A real deployment signs
people in with the organisation's identity provider.</p>
<h1>Sign in as</h1>
<form method="post">{xsrf}<input type="hidden" name="next" value="{next}">
{buttons}</form>
<p>Two people at once (the data scientist and the reviewer): use a second browser profile
or a private window.</p>
</body></html>"""


class DemoSignInHandler(_OIDCHandler):
    """GET: the demo users to choose from; POST: sign in as the one chosen."""

    @allow_unauthenticated
    def get(self):
        buttons = "\n".join(
            f'<p><button type="submit" name="sub" value="{html.escape(u.sub)}">'
            f"{html.escape(u.sub)}: {html.escape(u.role)}</button></p>"
            for u in USERS
        )
        nxt = self.safe_next(self.get_argument("next", None))
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(
            _PAGE.format(
                xsrf=self.xsrf_form_html(), next=html.escape(nxt, quote=True), buttons=buttons
            )
        )

    @allow_unauthenticated
    async def post(self):  # tornado has checked the form's XSRF token before this runs
        sub = self.get_body_argument("sub", "")
        chosen = next((u for u in USERS if u.sub == sub), None)
        if chosen is None:
            return self.fail(400, "choose one of the demo users on the sign-in page")
        provider = self.provider
        try:
            token = await asyncio.to_thread(id_token_at, provider.remote.url, chosen)
            claims = await provider.validate_jwt(token, [provider.client_id])
            snapshot = provider.snapshot(claims, "oidc")
        except OIDCError as e:
            return self.refused(403, str(e))
        except OSError as e:  # the demo provider is down
            self.log.error("jupyter-audit demo sign-in: the demo provider: %s", e)
            return self.fail(503, "the demo's identity provider could not be reached")
        user = user_for(snapshot)
        self._jupyter_current_user = user
        provider.start_session(self, user, token)
        self.redirect(self.safe_next(self.get_body_argument("next", None)))


class DemoSignOutHandler(_OIDCHandler):
    """Sign-out: the session ends on the server; back to the demo sign-in page."""

    @allow_unauthenticated
    def get(self):
        self.provider.end_session(self)
        self.redirect(self.base_url + "login")


class DemoSignInIdentityProvider(OIDCIdentityProvider):
    """OIDC sign-in whose `/login` is the demo's page of users (module docstring)."""

    @default("login_handler_class")
    def _demo_login_handler_default(self):
        return DemoSignInHandler

    @default("logout_handler_class")
    def _demo_logout_handler_default(self):
        return DemoSignOutHandler
