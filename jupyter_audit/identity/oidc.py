"""Sign-in with any standard OpenID Connect issuer (Keycloak, Okta, Entra ID, Google, Dex).

`OIDCIdentityProvider` replaces jupyter_server's token login:

- Browsers: the authorization-code flow with PKCE (`/login` → issuer → `/oidc/callback`),
  an ID token validated against the issuer's JWKS (signature, iss, aud = client_id,
  exp/iat/nbf with a small clock skew, nonce used once), and a signed session cookie that
  expires (`session_lifetime`). `/logout` clears it and signs out at the issuer when it can.
- Scripts and websocket clients: `Authorization: Bearer <token>` with an ID token, a JWT
  access token (audience `access_token_audiences`), or an opaque access token checked at the
  userinfo endpoint (cached for `userinfo_cache_seconds`).

Claims map to the Jupyter user and to the identity snapshot the trail records: username
(`username_claim`), email, groups (`groups_claim`, dotted paths for nested claims such as
Keycloak's `realm_access.roles`). A refused token gets a clear reason and records nothing
under the identity it claimed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
from typing import cast
from urllib.parse import urlencode

import jwt
from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.auth.identity import IdentityProvider
from jupyter_server.base.handlers import JupyterHandler
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Float, Int, List, Unicode, default

from .snapshot import make_snapshot
from .users import refuse, user_for

# asymmetric algorithms only: "none" and HMAC (a shared secret anyone with it could forge)
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]
FLOW_COOKIE = "jupyter-audit-oidc-flow"
FLOW_SECONDS = 600  # a sign-in must come back from the issuer within this


class OIDCError(Exception):
    """A sign-in or token that is refused; the message says why and is safe to show."""


def claim(claims: dict, path: str):
    """A claim by name, or by dotted path into nested objects (`realm_access.roles`)."""
    if path in claims:
        return claims[path]
    value = claims
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Issuer:
    """The issuer's discovery document and keys, fetched over HTTP and cached.

    An unknown key id refetches the JWKS (key rotation), at most once per `refresh_interval`
    seconds so random key ids cannot make the server hammer the issuer."""

    def __init__(self, url: str, timeout: float, refresh_interval: float):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.refresh_interval = refresh_interval
        self._discovery: dict | None = None
        self._keys: dict[str | None, dict] = {}
        self._fetched_at = float("-inf")

    async def _get_json(self, url: str, headers: dict | None = None) -> dict:
        req = HTTPRequest(url, headers=headers or {}, request_timeout=self.timeout)
        try:
            resp = await AsyncHTTPClient().fetch(req)
        except HTTPClientError as e:
            raise OIDCError(f"{url} answered HTTP {e.code}") from None
        except OSError as e:
            raise OIDCError(f"cannot reach {url}: {e}") from None
        try:
            body = json.loads(resp.body)
        except ValueError:
            raise OIDCError(f"{url} did not answer JSON") from None
        if not isinstance(body, dict):
            raise OIDCError(f"{url} did not answer a JSON object")
        return body

    async def discovery(self) -> dict:
        if self._discovery is None:
            doc = await self._get_json(self.url + "/.well-known/openid-configuration")
            if doc.get("issuer", "").rstrip("/") != self.url:
                raise OIDCError(
                    f"discovery document names issuer {doc.get('issuer')!r}, not {self.url!r}"
                )
            for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(doc.get(name), str):
                    raise OIDCError(f"discovery document has no {name}")
            self._discovery = doc
        return self._discovery

    async def _fetch_keys(self) -> None:
        # counted from the attempt, so failures and random key ids cannot cause a storm
        self._fetched_at = time.monotonic()
        doc = await self._get_json((await self.discovery())["jwks_uri"])
        self._keys = {
            raw.get("kid"): raw
            for raw in doc.get("keys") or []
            if isinstance(raw, dict) and raw.get("use", "sig") == "sig"
        }

    async def key(self, kid, alg: str) -> jwt.PyJWK:
        if kid is not None and not isinstance(kid, str):
            raise OIDCError("malformed token (key id)")
        if kid not in self._keys and time.monotonic() - self._fetched_at >= self.refresh_interval:
            await self._fetch_keys()
        if kid is None and len(self._keys) == 1:
            raw = next(iter(self._keys.values()))
        elif kid in self._keys:
            raw = self._keys[kid]
        else:
            raise OIDCError(f"token signed with an unknown key id {kid!r}")
        if raw.get("alg") not in (None, alg):
            raise OIDCError(f"token algorithm {alg} does not match its key's {raw['alg']}")
        try:
            return jwt.PyJWK(raw, algorithm=alg)
        except jwt.PyJWKError as e:
            raise OIDCError(f"the issuer's key {kid!r} cannot check {alg}: {e}") from None


class OIDCIdentityProvider(IdentityProvider):
    """jupyter_server identity from an OpenID Connect issuer (see the module docstring)."""

    issuer = Unicode(
        "", config=True, help="Issuer URL; endpoints and keys come from its discovery document."
    )
    client_id = Unicode("", config=True, help="This server's client id at the issuer.")
    client_secret = Unicode(
        "",
        config=True,
        help="Client secret. Prefer client_secret_file or client_secret_env over a value in a "
        "config file.",
    )
    client_secret_file = Unicode("", config=True, help="File holding the client secret.")
    client_secret_env = Unicode(
        "JUPYTER_AUDIT_OIDC_CLIENT_SECRET",
        config=True,
        help="Environment variable holding the client secret.",
    )
    scopes = List(Unicode(), ["openid", "profile", "email"], config=True, help="Scopes to ask.")
    username_claim = Unicode(
        "preferred_username", config=True, help="Claim (or dotted path) naming the user."
    )
    email_claim = Unicode("email", config=True, help="Claim (or dotted path) with the email.")
    groups_claim = Unicode(
        "groups",
        config=True,
        help="Claim (or dotted path, e.g. realm_access.roles) listing the user's groups.",
    )
    access_token_audiences = List(
        Unicode(),
        [],
        config=True,
        help="Audiences accepted on JWT access tokens (ID tokens need aud = client_id).",
    )
    redirect_uri = Unicode(
        "",
        config=True,
        help="Callback URL registered at the issuer; default <server URL>/oidc/callback.",
    )
    clock_skew = Int(60, config=True, help="Seconds of clock skew allowed on exp/iat/nbf.")
    session_lifetime = Int(
        8 * 3600, config=True, help="Seconds a browser sign-in lasts before signing in again."
    )
    userinfo_cache_seconds = Int(
        60, config=True, help="Seconds an opaque access token's userinfo answer is reused."
    )
    jwks_refresh_interval = Float(
        10.0, config=True, help="Least seconds between JWKS refetches for unknown key ids."
    )
    http_timeout = Float(10.0, config=True, help="Timeout for requests to the issuer.")

    @default("token")
    def _token_default(self):
        return ""  # no shared jupyter token: every request names a person

    @default("need_token")
    def _need_token_default(self):
        return False

    @default("login_handler_class")
    def _login_handler_default(self):
        return OIDCLoginHandler

    @default("logout_handler_class")
    def _logout_handler_default(self):
        return OIDCLogoutHandler

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._issuer: Issuer | None = None
        self._userinfo_cache: dict[str, tuple[float, dict | None]] = {}
        self._used_nonces: dict[str, float] = {}

    # ------------------------------------------------------------ configuration
    @property
    def remote(self) -> Issuer:
        if self._issuer is None:
            if not self.issuer or not self.client_id:
                raise OIDCError("OIDCIdentityProvider needs issuer and client_id configured")
            self._issuer = Issuer(self.issuer, self.http_timeout, self.jwks_refresh_interval)
        return self._issuer

    def secret(self) -> str:
        if self.client_secret:
            return self.client_secret
        if self.client_secret_file:
            with open(self.client_secret_file) as f:
                return f.read().strip()
        return os.environ.get(self.client_secret_env, "") if self.client_secret_env else ""

    @property
    def auth_enabled(self):
        return True

    @property
    def login_available(self):
        return True

    def validate_security(self, app, ssl_options=None) -> None:
        super().validate_security(app, ssl_options)
        if not self.issuer or not self.client_id:
            app.log.critical("OIDCIdentityProvider needs c.OIDCIdentityProvider.issuer/client_id")
            raise SystemExit(1)

    def get_handlers(self):
        return [
            (r"/login", self.login_handler_class),
            (r"/oidc/callback", OIDCCallbackHandler),
            (r"/logout", self.logout_handler_class),
        ]

    # ------------------------------------------------------------ tokens
    async def validate_jwt(self, token: str, audience: list[str], nonce: str | None = None):
        """Claims of a JWT signed by the issuer, or OIDCError naming what is wrong."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise OIDCError("malformed token") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise OIDCError(f"token algorithm {alg!r} is not accepted")
        key = await self.remote.key(header.get("kid"), alg)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=audience,
                issuer=self.remote.url,
                leeway=self.clock_skew,
                options={"require": ["exp", "iat", "iss", "sub", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise OIDCError("token expired") from None
        except jwt.InvalidAudienceError:
            raise OIDCError("token issued for another audience") from None
        except jwt.InvalidIssuerError:
            raise OIDCError("token from another issuer") from None
        except jwt.InvalidSignatureError:
            raise OIDCError("token signature does not verify") from None
        except jwt.ImmatureSignatureError:
            raise OIDCError("token not valid yet (iat/nbf in the future)") from None
        except jwt.MissingRequiredClaimError as e:
            raise OIDCError(f"token lacks the {e.claim} claim") from None
        except jwt.InvalidTokenError as e:
            raise OIDCError(f"invalid token: {e}") from None
        aud = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        azp = claims.get("azp")
        if self.client_id in aud and len(aud) > 1 and azp not in (None, self.client_id):
            raise OIDCError("ID token was issued to another client (azp)")
        if nonce is not None:
            if not secrets.compare_digest(str(claims.get("nonce", "")), nonce):
                raise OIDCError("ID token nonce does not match this sign-in")
        return claims

    async def introspect(self, access_token: str, endpoint: str) -> None:
        """RFC 7662: an opaque token must be active and issued to this client (or to an
        audience in access_token_audiences), not merely valid somewhere at the issuer."""
        basic = base64.b64encode(f"{self.client_id}:{self.secret()}".encode()).decode()
        req = HTTPRequest(
            endpoint,
            method="POST",
            body=urlencode({"token": access_token, "token_type_hint": "access_token"}),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Authorization": f"Basic {basic}",
                "Accept": "application/json",
            },
            request_timeout=self.http_timeout,
        )
        try:
            answer = json.loads((await AsyncHTTPClient().fetch(req)).body)
        except (HTTPClientError, OSError, ValueError) as e:
            raise OIDCError(f"token introspection failed: {e}") from None
        if not isinstance(answer, dict) or answer.get("active") is not True:
            raise OIDCError("access token is not active (expired or revoked)")
        allowed = {self.client_id, *self.access_token_audiences}
        aud = answer.get("aud")
        auds = set(aud if isinstance(aud, list) else [aud]) if aud else set()
        if answer.get("client_id") not in allowed and not auds & allowed:
            raise OIDCError("access token issued for another client")

    async def userinfo(self, access_token: str, opaque: bool = False) -> dict:
        doc = await self.remote.discovery()
        endpoint = doc.get("userinfo_endpoint")
        if not endpoint:
            raise OIDCError("the issuer has no userinfo endpoint for opaque access tokens")
        digest = hashlib.sha256(access_token.encode()).hexdigest()
        now = time.monotonic()
        cached = self._userinfo_cache.get(digest)
        if cached and cached[0] > now:
            if cached[1] is None:  # refused a moment ago: do not ask the issuer again
                raise OIDCError("access token refused by the issuer (expired or revoked)")
            return cached[1]
        if len(self._userinfo_cache) > 10_000:
            self._userinfo_cache = {k: v for k, v in self._userinfo_cache.items() if v[0] > now}
        try:
            if opaque and doc.get("introspection_endpoint"):
                await self.introspect(access_token, doc["introspection_endpoint"])
        except OIDCError:
            self._userinfo_cache[digest] = (now + min(30, self.userinfo_cache_seconds), None)
            raise
        try:
            info = await self.remote._get_json(
                endpoint, {"Authorization": f"Bearer {access_token}"}
            )
            if not isinstance(info.get("sub"), str):
                raise OIDCError("userinfo answer has no subject")
        except OIDCError:
            self._userinfo_cache[digest] = (now + min(30, self.userinfo_cache_seconds), None)
            raise OIDCError("access token refused by the issuer (expired or revoked)") from None
        self._userinfo_cache[digest] = (now + self.userinfo_cache_seconds, info)
        return info

    async def bearer_claims(self, token: str) -> tuple[dict, str]:
        """(claims, auth_method) of a bearer token: ID token, JWT or opaque access token."""
        if token.count(".") == 2:
            audiences = [self.client_id, *self.access_token_audiences]
            claims = await self.validate_jwt(token, audiences)
            aud = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
            if self.client_id in aud:
                return claims, "oidc_id_token"
            if claim(claims, self.username_claim) is None:
                info = await self.userinfo(token)
                if info.get("sub") != claims["sub"]:
                    raise OIDCError("userinfo subject differs from the access token's")
                claims = {**info, **claims}
            return claims, "oidc_access_token"
        info = await self.userinfo(token, opaque=True)
        return {**info, "iss": self.remote.url}, "oidc_access_token"

    def snapshot(self, claims: dict, auth_method: str) -> dict:
        """The identity snapshot for validated claims."""
        username = claim(claims, self.username_claim)
        if not isinstance(username, str) or not username:
            raise OIDCError(
                f"the issuer's token has no {self.username_claim!r} claim "
                f"(claims present: {', '.join(sorted(claims))}); set "
                "c.OIDCIdentityProvider.username_claim"
            )
        groups = claim(claims, self.groups_claim) or []
        if isinstance(groups, str):
            groups = [groups]
        if not isinstance(groups, list):
            groups = []
        email = claim(claims, self.email_claim)
        return make_snapshot(
            username=username,
            subject=claims["sub"],
            issuer=claims.get("iss") or self.remote.url,
            email=email if isinstance(email, str) else None,
            groups=[g for g in groups if isinstance(g, str | int)],
            auth_method=auth_method,
            display_name=claims.get("name") if isinstance(claims.get("name"), str) else None,
        )

    async def get_user_token(self, handler):
        token = self.get_token(handler)
        if not token:
            return None
        try:
            claims, method = await self.bearer_claims(token)
            exp = claims.get("exp") if isinstance(claims.get("exp"), int | float) else None
            user = user_for(self.snapshot(claims, method), expires_at=exp)
        except OIDCError as e:
            refuse(handler, str(e), self.log)
            return None
        handler._token_authenticated = True
        handler._audit_bearer = True  # a bearer request never turns into a cookie session
        return user

    def set_login_cookie(self, handler, user) -> None:
        if getattr(handler, "_audit_bearer", False):
            return
        super().set_login_cookie(handler, user)

    def get_token(self, handler) -> str | None:
        m = self.auth_header_pat.match(handler.request.headers.get("Authorization", ""))
        return m.group(2).strip() if m else None

    # ------------------------------------------------------------ browser session
    def user_to_cookie(self, user) -> str:
        ident = getattr(user, "audit_identity", None)
        return json.dumps({"identity": ident, "exp": int(time.time()) + self.session_lifetime})

    def user_from_cookie(self, cookie_value: str):
        data = json.loads(cookie_value)
        if not isinstance(data, dict) or not isinstance(data.get("identity"), dict):
            return None
        exp = data.get("exp", 0)
        if not isinstance(exp, int | float) or exp < time.time():
            return None  # session expired: sign in again
        return user_for(make_snapshot(**data["identity"]), expires_at=exp)

    def get_user_cookie(self, handler):
        user = super().get_user_cookie(handler)
        if user is None and handler.get_cookie(self.get_cookie_name(handler)):
            handler._audit_auth_error = "session expired or invalid; sign in again"
        return user

    def consume_nonce(self, nonce: str) -> None:
        """Each sign-in's nonce works once: a replayed callback is refused."""
        now = time.time()
        if len(self._used_nonces) > 10_000:
            self._used_nonces = {n: t for n, t in self._used_nonces.items() if t > now}
        if nonce in self._used_nonces:
            raise OIDCError("this sign-in response was already used (replayed nonce)")
        self._used_nonces[nonce] = now + 3600


# ---------------------------------------------------------------- handlers
class _OIDCHandler(JupyterHandler):
    @property
    def provider(self) -> OIDCIdentityProvider:
        return cast(OIDCIdentityProvider, self.identity_provider)

    def callback_url(self) -> str:
        if self.provider.redirect_uri:
            return self.provider.redirect_uri
        return f"{self.request.protocol}://{self.request.host}{self.base_url}oidc/callback"

    def fail(self, status: int, message: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"Sign-in refused: {message}\n")

    def safe_next(self, raw: str | None) -> str:
        nxt = raw or self.base_url
        # only paths on this server: never an open redirect
        if not nxt.startswith(self.base_url) or nxt.startswith("//") or "\\" in nxt:
            return self.base_url
        return nxt


class OIDCLoginHandler(_OIDCHandler):
    """Start the authorization-code flow with PKCE: remember state, nonce and verifier in a
    short-lived signed cookie and send the browser to the issuer."""

    @allow_unauthenticated
    async def get(self):
        try:
            doc = await self.provider.remote.discovery()
        except OIDCError as e:
            self.log.error("jupyter-audit: OIDC discovery failed: %s", e)
            return self.fail(502, f"the identity provider is unavailable ({e})")
        state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
        flow = {"state": state, "nonce": nonce, "verifier": verifier, "t": time.time()}
        flow["next"] = self.safe_next(self.get_argument("next", None))
        self.set_secure_cookie(
            FLOW_COOKIE,
            json.dumps(flow),
            expires_days=None,
            max_age=FLOW_SECONDS,
            httponly=True,
            path=self.base_url,
            secure=self.request.protocol == "https",
        )
        params = {
            "response_type": "code",
            "client_id": self.provider.client_id,
            "redirect_uri": self.callback_url(),
            "scope": " ".join(self.provider.scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": _b64(hashlib.sha256(verifier.encode()).digest()),
            "code_challenge_method": "S256",
        }
        self.redirect(doc["authorization_endpoint"] + "?" + urlencode(params))


class OIDCCallbackHandler(_OIDCHandler):
    """The issuer's redirect back: check state, exchange the code (with the PKCE verifier),
    validate the ID token (nonce used once), set the session cookie."""

    @allow_unauthenticated
    async def get(self):
        raw = self.get_secure_cookie(FLOW_COOKIE, max_age_days=1)
        self.clear_cookie(FLOW_COOKIE, path=self.base_url)
        if self.get_argument("error", None):
            detail = self.get_argument("error_description", "") or self.get_argument("error")
            return self.fail(403, f"the identity provider said: {detail}")
        if not raw:
            return self.fail(400, "no sign-in in progress (or it took over 10 minutes)")
        flow = json.loads(raw)
        if time.time() - flow.get("t", 0) > FLOW_SECONDS:
            return self.fail(400, "this sign-in took over 10 minutes; start again")
        state = self.get_argument("state", "").encode("utf-8")
        if not secrets.compare_digest(state, str(flow.get("state", "")).encode("utf-8")):
            return self.fail(400, "state does not match this sign-in")
        provider = self.provider
        try:
            provider.consume_nonce(flow["nonce"])
            tokens = await self._exchange(flow)
            claims = await provider.validate_jwt(
                tokens["id_token"], [provider.client_id], nonce=flow["nonce"]
            )
            snapshot = provider.snapshot(claims, "oidc")
        except OIDCError as e:
            self.log.warning("jupyter-audit: sign-in refused: %s", e)
            return self.fail(403, str(e))
        user = user_for(snapshot)
        self._jupyter_current_user = user
        provider.set_login_cookie(self, user)
        self.redirect(flow["next"])

    async def _exchange(self, flow: dict) -> dict:
        doc = await self.provider.remote.discovery()
        body = urlencode(
            {
                "grant_type": "authorization_code",
                "code": self.get_argument("code", ""),
                "redirect_uri": self.callback_url(),
                "code_verifier": flow["verifier"],
                "client_id": self.provider.client_id,
            }
        )
        basic = base64.b64encode(
            f"{self.provider.client_id}:{self.provider.secret()}".encode()
        ).decode()
        req = HTTPRequest(
            doc["token_endpoint"],
            method="POST",
            body=body,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Authorization": f"Basic {basic}",
                "Accept": "application/json",
            },
            request_timeout=self.provider.http_timeout,
        )
        try:
            resp = await AsyncHTTPClient().fetch(req)
        except HTTPClientError as e:
            detail = ""
            if e.response is not None:
                try:
                    detail = json.loads(e.response.body).get("error", "")
                except ValueError:
                    pass
            raise OIDCError(f"code exchange refused (HTTP {e.code} {detail})".strip()) from None
        except OSError as e:
            raise OIDCError(f"cannot reach the token endpoint: {e}") from None
        try:
            tokens = json.loads(resp.body)
        except ValueError:
            raise OIDCError("the token endpoint did not answer JSON") from None
        if not isinstance(tokens, dict) or not isinstance(tokens.get("id_token"), str):
            raise OIDCError("the token endpoint returned no ID token")
        return tokens


class OIDCLogoutHandler(_OIDCHandler):
    @allow_unauthenticated
    async def get(self):
        self.identity_provider.clear_login_cookie(self)
        try:
            end = (await self.provider.remote.discovery()).get("end_session_endpoint")
        except OIDCError:
            end = None
        if end:
            back = f"{self.request.protocol}://{self.request.host}{self.base_url}"
            params = {"client_id": self.provider.client_id, "post_logout_redirect_uri": back}
            return self.redirect(end + "?" + urlencode(params))
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish("Signed out.\n")
