"""Sign-in with any standard OpenID Connect issuer (Keycloak, Okta, Entra ID, Google, Dex).

`OIDCIdentityProvider` replaces jupyter_server's token login:

- Browsers: the authorization-code flow with PKCE (`/login` → issuer → `/oidc/callback`),
  an ID token validated against the issuer's JWKS (signature, iss, aud = client_id,
  exp/iat/nbf with a small clock skew, nonce used once), and a server-side session
  (`sessions.py`) whose id is in a signed cookie living no longer than `session_lifetime`.
  `/logout` ends the session on the server and signs out at the issuer when it can. The
  handlers are in `oidc_handlers.py`, the issuer's discovery document and keys in `issuer.py`.
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
import datetime
import hashlib
import json
import os
import secrets
import time
from urllib.parse import urlencode

import jwt
from jupyter_server.auth.identity import IdentityProvider
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.ioloop import IOLoop
from traitlets import Float, Int, List, Unicode, default

from .issuer import Issuer, OIDCError, OIDCUnavailable, claim
from .oidc_handlers import OIDCCallbackHandler, OIDCLoginHandler, OIDCLogoutHandler
from .sessions import SESSION_ENDED, SESSION_EXPIRED, Sessions
from .snapshot import make_snapshot
from .users import refuse, user_for

__all__ = [
    "Issuer",
    "OIDCCallbackHandler",
    "OIDCError",
    "OIDCIdentityProvider",
    "OIDCLoginHandler",
    "OIDCLogoutHandler",
    "OIDCUnavailable",
    "claim",
]

# asymmetric algorithms only: "none" and HMAC (a shared secret anyone with it could forge)
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]


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
        8 * 3600,
        config=True,
        help="Seconds a browser sign-in lasts before signing in again (the session cookie "
        "lives no longer).",
    )
    sign_in_timeout = Int(
        600, config=True, help="Seconds a sign-in may take at the issuer before it is refused."
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
        self.sessions = Sessions()

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
        self.log_configuration(app.log)
        IOLoop.current().add_callback(self.check_issuer, app.log)

    def log_configuration(self, log) -> None:
        """At start: the issuer and client id in use, and where the secret is read from
        (never the secret itself)."""
        if self.client_secret:
            source = "c.OIDCIdentityProvider.client_secret"
        elif self.client_secret_file:
            source = f"client_secret_file {self.client_secret_file}"
        else:
            source = f"${self.client_secret_env}"
        log.info(
            "jupyter-audit: OIDC sign-in with issuer %s as client_id %r (client secret from %s)",
            self.issuer,
            self.client_id,
            source,
        )

    async def check_issuer(self, log) -> bool:
        """Fetch the discovery document once at start: a warning, not a crash, when the
        issuer cannot be reached or its document is wrong (sign-ins fail until it can)."""
        try:
            doc = await self.remote.discovery()
        except OIDCError as e:
            log.warning(
                "jupyter-audit: the OIDC discovery document of %s could not be read (%s); "
                "sign-ins will fail until it can. Check c.OIDCIdentityProvider.issuer and the "
                "network path to the issuer.",
                self.issuer,
                e,
            )
            return False
        log.info(
            "jupyter-audit: OIDC issuer %s discovered (end-session endpoint: %s)",
            self.issuer,
            doc.get("end_session_endpoint") or "none",
        )
        return True

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

    def get_token(self, handler) -> str | None:
        m = self.auth_header_pat.match(handler.request.headers.get("Authorization", ""))
        return m.group(2).strip() if m else None

    # ------------------------------------------------------------ browser session
    def start_session(self, handler, user, id_token: str | None = None) -> None:
        """A server-side session for a browser sign-in, and its cookie (which holds only the
        session id and expiry and lives no longer than the session). A browser holds one
        session: the one its cookie named until now ends (a copy of that cookie would
        otherwise outlive this browser's `/logout`), and so do its websockets."""
        earlier = self.session_id(handler)
        ended = self.sessions.end(earlier) if earlier else None
        if ended is not None:
            self.sessions.close_sockets(ended, SESSION_ENDED)
        sid, expires_at = self.sessions.start(
            getattr(user, "audit_identity", None) or {}, self.session_lifetime, id_token
        )
        user.expires_at = expires_at
        options = {"httponly": True, "path": handler.base_url, **self.cookie_options}
        secure = self.secure_cookie
        if secure is None:
            secure = handler.request.protocol == "https"
        if secure:
            options.setdefault("secure", True)
        options["expires_days"] = None
        options["max_age"] = self.session_lifetime
        options["expires"] = datetime.datetime.fromtimestamp(expires_at, datetime.UTC)
        value = json.dumps({"sid": sid, "exp": expires_at})
        handler.set_secure_cookie(self.get_cookie_name(handler), value, **options)

    def set_login_cookie(self, handler, user) -> None:
        if getattr(handler, "_audit_bearer", False):
            return  # a bearer request never turns into a cookie session
        self.start_session(handler, user)

    def session_id(self, handler) -> str | None:
        """The session id in this request's cookie, if its signature checks."""
        raw = handler.get_secure_cookie(
            self.get_cookie_name(handler), **self.get_secure_cookie_kwargs
        )
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            return None
        sid = data.get("sid") if isinstance(data, dict) else None
        return sid if isinstance(sid, str) else None

    def get_user_cookie(self, handler):
        if not handler.get_cookie(self.get_cookie_name(handler)):
            return None
        raw = handler.get_secure_cookie(
            self.get_cookie_name(handler), **self.get_secure_cookie_kwargs
        )
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("sid"), str):
            refuse(
                handler,
                "session cookie invalid (not signed by this server); sign in again",
                self.log,
            )
            return None
        exp = data.get("exp")
        if not isinstance(exp, int | float) or exp < time.time():
            ended = self.sessions.end(data["sid"])
            if ended is not None:
                self.sessions.close_sockets(ended, SESSION_EXPIRED)
            handler._audit_session_state = "session_expired"
            refuse(handler, "session expired; sign in again", self.log)
            return None
        session = self.sessions.get(data["sid"])
        if session is None:
            handler._audit_session_state = "session_ended"
            refuse(
                handler,
                "session ended or unknown to this server (signed out, or the server "
                "restarted); sign in again",
                self.log,
            )
            return None
        handler._audit_session_id = data["sid"]  # its websockets close when it ends
        return user_for(make_snapshot(**session.identity), expires_at=session.expires_at)

    def end_session(self, handler):
        """Sign-out: the request's session ends on the server (the same cookie no longer
        works anywhere), its kernel websockets and terminals are closed ("session ended:
        sign in again") and its cookie is cleared. The session it was, if live."""
        sid = self.session_id(handler)
        self.clear_login_cookie(handler)
        session = self.sessions.end(sid) if sid else None
        if session is not None:
            self.sessions.close_sockets(session, SESSION_ENDED)
        return session

    def consume_nonce(self, nonce: str) -> None:
        """Each sign-in's nonce works once: a replayed callback is refused."""
        now = time.time()
        if len(self._used_nonces) > 10_000:
            self._used_nonces = {n: t for n, t in self._used_nonces.items() if t > now}
        if nonce in self._used_nonces:
            raise OIDCError("this sign-in response was already used (replayed nonce)")
        self._used_nonces[nonce] = now + max(3600, 2 * self.sign_in_timeout)
