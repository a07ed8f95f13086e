"""The demo's people and their sign-in: a local OpenID Connect provider
(`oidc-provider-mock`, the `demo` extra) in its own process on loopback, holding four demo
users whose `groups` claim gives them their jupyter-audit role.

The provider's sign-in page lets anyone pick any user: it is a demo's stand-in for an
organisation's identity provider, never one to trust.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from .processes import free_port, stop_process, wait_until_answering

CLIENT_ID = "jupyter-audit-demo"
CLIENT_SECRET = "demo-only-secret"  # noqa: S105 - the demo provider accepts any secret
REVIEWER_GROUP, AUDITOR_GROUP, ADMIN_GROUP = "audit-reviewers", "audit-auditors", "audit-admins"


@dataclass(frozen=True)
class DemoUser:
    sub: str  # what the provider's sign-in page shows as the button to click
    role: str
    email: str
    groups: tuple[str, ...]

    def claims(self) -> dict:
        return {
            "sub": self.sub,
            "preferred_username": self.sub,
            "name": f"{self.sub.title()} ({self.role})",
            "email": self.email,
            "groups": list(self.groups),
        }


DATA_SCIENTIST = DemoUser("dana", "data scientist", "dana@example.org", ("data-science",))
REVIEWER = DemoUser("rui", "reviewer", "rui@example.org", ("risk", REVIEWER_GROUP))
AUDITOR = DemoUser("aki", "auditor", "aki@example.org", ("internal-audit", AUDITOR_GROUP))
ADMIN = DemoUser("sam", "admin", "sam@example.org", ("platform", ADMIN_GROUP))
USERS = (DATA_SCIENTIST, REVIEWER, AUDITOR, ADMIN)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # the code is in the redirect: keep it
        return None


class DemoProvider:
    """oidc-provider-mock with the demo users, started as a process on 127.0.0.1."""

    def __init__(self, port: int = 0):
        self.port = port or free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> DemoProvider:
        argv = [sys.executable, "-m", "oidc_provider_mock", "--port", str(self.port)]
        for user in USERS:
            argv += ["--user-claims", json.dumps(user.claims())]
        self.proc = subprocess.Popen(
            argv,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches the demo, which stops this in order
        )
        wait_until_answering(
            self.issuer + "/.well-known/openid-configuration", self.proc, what="the provider"
        )
        return self

    def stop(self) -> None:
        stop_process(self.proc)

    def id_token(self, user: DemoUser) -> str:
        return id_token_at(self.issuer, user)


def id_token_at(issuer: str, user: DemoUser) -> str:
    """An ID token for `user` from the demo provider at `issuer`, by the authorization-code
    flow a script would run (the provider's sign-in form submitted as that user)."""
    with urllib.request.urlopen(issuer + "/.well-known/openid-configuration") as r:
        discovery = json.load(r)
    redirect = "http://127.0.0.1/callback"
    query = urllib.parse.urlencode(
        {
            "response_type": "code",
            "client_id": CLIENT_ID,
            "redirect_uri": redirect,
            "scope": "openid profile email",
            "state": secrets.token_hex(8),
        }
    )
    form = urllib.parse.urlencode({"sub": user.sub}).encode()
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        opener.open(discovery["authorization_endpoint"] + "?" + query, data=form)
        raise RuntimeError("the demo provider did not redirect with a code")
    except urllib.error.HTTPError as e:
        if e.code not in (302, 303):
            raise
        location = e.headers["Location"]
    code = urllib.parse.parse_qs(urllib.parse.urlparse(location).query)["code"][0]
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    body = urllib.parse.urlencode(
        {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect}
    ).encode()
    req = urllib.request.Request(
        discovery["token_endpoint"], data=body, headers={"Authorization": f"Basic {basic}"}
    )
    with urllib.request.urlopen(req) as r:
        return json.load(r)["id_token"]
