"""Real OpenID Connect issuers over HTTP for the identity tests.

- `MockProvider`: the `oidc-provider-mock` package in its own process on loopback. It runs
  the real authorization-code flow (authorize form, code exchange, userinfo, end_session),
  issues RS256 ID tokens and opaque access tokens, and lets tests set a user's claims.
- `KeyIssuer`: a small issuer of the tests' own (discovery document + JWKS over HTTP) whose
  keys the test controls, for key rotation, unknown key ids, bad signatures and any claims.
- `oidc_config`: a server's config signing in with `CLIENT` at an issuer.
- `provider_fixture`: a module-scoped fixture of a `MockProvider` with the users given.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from helpers.servers import free_port, server_config

CLIENT = "jupyter-audit-tests"


def oidc_config(trail_dir, issuer, **idp):
    cfg = server_config(
        trail_dir / "trail.duckdb",
        server={"identity_provider_class": "jupyter_audit.identity.OIDCIdentityProvider"},
    )
    cfg["OIDCIdentityProvider"] = {
        "issuer": issuer,
        "client_id": CLIENT,
        "client_secret": "secret",
        "jwks_refresh_interval": 0.0,
        "userinfo_cache_seconds": 0,
        **idp,
    }
    return cfg


def wait_http(url: str, timeout: float = 30, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


class MockProvider:
    """oidc-provider-mock started as a process; `issuer` is its base URL."""

    def __init__(self, *extra_args: str):
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "oidc_provider_mock", "--port", str(self.port), *extra_args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_http(self.issuer + "/.well-known/openid-configuration", proc=self.proc)
        except BaseException:
            self.stop()
            raise
        self.discovery = requests.get(self.issuer + "/.well-known/openid-configuration").json()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def set_user(self, sub: str, claims: dict) -> None:
        r = requests.put(f"{self.issuer}/users/{sub}", json=claims, timeout=10)
        r.raise_for_status()

    def revoke_tokens(self, sub: str) -> None:
        requests.post(f"{self.issuer}/users/{sub}/revoke-tokens", timeout=10).raise_for_status()

    def approve(self, authorize_url: str, sub: str) -> str:
        """Submit the provider's sign-in form as `sub`; return the redirect (with the code)."""
        r = requests.post(authorize_url, data={"sub": sub}, allow_redirects=False, timeout=10)
        if r.status_code not in (302, 303):
            raise AssertionError(f"authorize answered {r.status_code}: {r.text[:300]}")
        return r.headers["Location"]

    def tokens(
        self,
        sub: str,
        client_id: str = "jupyter-audit-tests",
        scope: str = "openid profile email",
        nonce: str | None = None,
        redirect_uri: str = "http://127.0.0.1/callback",
    ) -> dict:
        """Run the code flow as a client would: the token response (id_token, access_token)."""
        params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": uuid.uuid4().hex,
        }
        if nonce:
            params["nonce"] = nonce
        url = self.discovery["authorization_endpoint"] + "?" + urlencode(params)
        code = parse_qs(urlparse(self.approve(url, sub)).query)["code"][0]
        r = requests.post(
            self.discovery["token_endpoint"],
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri},
            auth=(client_id, "secret"),
            timeout=10,
        )
        r.raise_for_status()
        return r.json()


def provider_fixture(users: dict[str, dict]):
    """A module-scoped pytest fixture: a `MockProvider` holding `users` (sub -> claims)."""

    @pytest.fixture(scope="module")
    def provider():
        p = MockProvider()
        for sub, claims in users.items():
            p.set_user(sub, claims)
        yield p
        p.stop()

    return provider


def _rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class KeyIssuer:
    """An issuer whose signing keys the test controls: discovery + JWKS over HTTP.

    `mint(claims)` signs a token with the current key; `rotate()` publishes a new key and
    signs with it from then on; `unpublished_key()` is a key with a kid the JWKS never lists."""

    def __init__(self):
        self.keys: dict[str, object] = {}
        self.current = self.add_key()
        self.jwks_requests = 0
        # opaque access tokens: token -> (client it was issued to, userinfo claims)
        self.opaque: dict[str, tuple[str, dict]] = {}
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                path = urlparse(self.path).path
                if path == "/.well-known/openid-configuration":
                    body = {
                        "issuer": issuer.issuer,
                        "jwks_uri": issuer.issuer + "/jwks",
                        "authorization_endpoint": issuer.issuer + "/authorize",
                        "token_endpoint": issuer.issuer + "/token",
                        "userinfo_endpoint": issuer.issuer + "/userinfo",
                        "introspection_endpoint": issuer.issuer + "/introspect",
                        "id_token_signing_alg_values_supported": ["RS256"],
                    }
                elif path == "/userinfo":
                    token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                    if token not in issuer.opaque:
                        self.send_error(401)
                        return
                    body = issuer.opaque[token][1]
                elif path == "/jwks":
                    issuer.jwks_requests += 1
                    body = {"keys": [issuer.public_jwk(kid) for kid in list(issuer.keys)]}
                else:
                    self.send_error(404)
                    return
                self.send_json(body)

            def do_POST(self):  # noqa: N802 - RFC 7662 introspection
                length = int(self.headers.get("Content-Length", 0))
                form = parse_qs(self.rfile.read(length).decode())
                token = form.get("token", [""])[0]
                if urlparse(self.path).path != "/introspect" or not self.headers.get(
                    "Authorization", ""
                ).startswith("Basic "):
                    self.send_error(401)
                    return
                if token in issuer.opaque:
                    client, claims = issuer.opaque[token]
                    body = {"active": True, "client_id": client, "sub": claims["sub"]}
                else:
                    body = {"active": False}
                self.send_json(body)

            def send_json(self, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add_key(self) -> str:
        kid = uuid.uuid4().hex[:12]
        self.keys[kid] = _rsa_key()
        return kid

    def rotate(self, drop_old: bool = False) -> str:
        old = self.current
        self.current = self.add_key()
        if drop_old:
            del self.keys[old]
        return self.current

    def unpublished_key(self) -> tuple[str, object]:
        return uuid.uuid4().hex[:12], _rsa_key()

    def public_jwk(self, kid: str) -> dict:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.keys[kid].public_key()))
        return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}

    def claims(self, sub: str, aud: str, lifetime: int = 300, **extra) -> dict:
        now = int(time.time())
        base = {"iss": self.issuer, "sub": sub, "aud": aud, "iat": now, "exp": now + lifetime}
        return base | extra

    def mint(self, claims: dict, kid: str | None = None, key=None) -> str:
        kid = kid or self.current
        key = key if key is not None else self.keys[kid]
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})
