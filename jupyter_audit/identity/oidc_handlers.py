"""The browser's side of OIDC sign-in: `/login`, `/oidc/callback` and `/logout`.

A failed sign-in (the issuer's refusal, a wrong client secret, a replayed or late sign-in
response, an ID token from another issuer or without the username claim) is recorded as
`security.rejected` through `refuse` with its reason, never a token or a claim's value. An
issuer that cannot be reached is not a refusal: the answer is 503, try again.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import time
from typing import TYPE_CHECKING, cast
from urllib.parse import urlencode

from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.base.handlers import JupyterHandler
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from .issuer import OIDCError, OIDCUnavailable, _b64
from .users import refuse, user_for

if TYPE_CHECKING:
    from .oidc import OIDCIdentityProvider

FLOW_COOKIE = "jupyter-audit-oidc-flow"
UNREACHABLE = "the identity provider could not be reached; try again in a moment"


class _OIDCHandler(JupyterHandler):
    @property
    def provider(self) -> OIDCIdentityProvider:
        return cast("OIDCIdentityProvider", self.identity_provider)

    def callback_url(self) -> str:
        if self.provider.redirect_uri:
            return self.provider.redirect_uri
        return f"{self.request.protocol}://{self.request.host}{self.base_url}oidc/callback"

    def fail(self, status: int, message: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"Sign-in refused: {message}\n")

    def refused(self, status: int, reason: str) -> None:
        """A failed sign-in: recorded as `security.rejected` (rate-limited per address)."""
        refuse(self, f"sign-in refused: {reason}", self.log)
        self.fail(status, reason)

    def unreachable(self, e: OIDCError) -> None:
        self.log.error("jupyter-audit: OIDC sign-in: %s", e)
        self.set_status(503)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Retry-After", "30")
        self.finish(f"Sign-in failed: {UNREACHABLE}.\n")

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
        except OIDCUnavailable as e:
            return self.unreachable(e)
        except OIDCError as e:
            self.log.error("jupyter-audit: OIDC discovery failed: %s", e)
            return self.fail(502, f"the identity provider's discovery document is unusable ({e})")
        state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
        flow = {"state": state, "nonce": nonce, "verifier": verifier, "t": time.time()}
        flow["next"] = self.safe_next(self.get_argument("next", None))
        self.set_secure_cookie(
            FLOW_COOKIE,
            json.dumps(flow),
            expires_days=None,
            max_age=self.provider.sign_in_timeout,
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


def _state_matches(flow: dict, state: str) -> bool:
    """Whether `state` is the one of the sign-in `flow` (in constant time)."""
    return secrets.compare_digest(state.encode("utf-8"), str(flow.get("state", "")).encode("utf-8"))


def _flow_state_matches(raw: bytes | None, state: str) -> bool:
    """Whether `state` is the one of the sign-in in progress in this browser (`raw`)."""
    try:
        flow = json.loads(raw) if raw else None
    except ValueError:
        return False
    return isinstance(flow, dict) and _state_matches(flow, state)


class OIDCCallbackHandler(_OIDCHandler):
    """The issuer's redirect back: check state, exchange the code (with the PKCE verifier),
    validate the ID token (nonce used once), start the session."""

    @allow_unauthenticated
    async def get(self):
        provider = self.provider
        raw = self.get_secure_cookie(FLOW_COOKIE, max_age_days=1)
        self.clear_cookie(FLOW_COOKIE, path=self.base_url)
        error = self.get_argument("error", None)
        if error:
            code = re.sub(r"[^A-Za-z0-9_.-]", "?", error[:64])
            # the error code only in the trail: the description is the issuer's free text
            refuse(self, f"sign-in refused by the identity provider ({code})", self.log)
            detail = code
            if _flow_state_matches(raw, self.get_argument("state", "")):
                # only a response to this browser's own sign-in may put the issuer's words
                # on this server's page (anyone can link here with a made-up description)
                description = self.get_argument("error_description", "")[:300]
                detail = f"{code}: {description}" if description else code
            return self.fail(403, f"the identity provider said: {detail}")
        if not raw:
            return self.refused(
                400,
                f"no sign-in in progress in this browser (or it took over "
                f"{provider.sign_in_timeout} s); start again",
            )
        try:
            flow = json.loads(raw)
        except ValueError:
            flow = None
        if not isinstance(flow, dict):
            return self.refused(400, "sign-in state unreadable; start again")
        if time.time() - flow.get("t", 0) > provider.sign_in_timeout:
            return self.refused(
                400, f"sign-in response expired (over {provider.sign_in_timeout} s); start again"
            )
        if not _state_matches(flow, self.get_argument("state", "")):
            return self.refused(400, "state does not match this sign-in")
        # RFC 9207: an issuer that names itself in the response must be ours (mix-up attacks)
        iss = self.get_argument("iss", None)
        if iss is not None and iss.rstrip("/") != provider.remote.url:
            return self.refused(403, "sign-in response from another issuer")
        try:
            provider.consume_nonce(flow["nonce"])
            tokens = await self._exchange(flow)
            claims = await provider.validate_jwt(
                tokens["id_token"], [provider.client_id], nonce=flow["nonce"]
            )
            snapshot = provider.snapshot(claims, "oidc")
        except OIDCUnavailable as e:
            return self.unreachable(e)
        except OIDCError as e:
            return self.refused(403, str(e))
        user = user_for(snapshot)
        self._jupyter_current_user = user
        provider.start_session(self, user, tokens["id_token"])
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
        try:
            secret = self.provider.secret()
        except OSError as e:
            raise OIDCError(
                f"the client secret cannot be read ({e.strerror}): check "
                "c.OIDCIdentityProvider.client_secret_file"
            ) from None
        basic = base64.b64encode(f"{self.provider.client_id}:{secret}".encode()).decode()
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
            if e.code == 599 or e.code >= 500:
                raise OIDCUnavailable(f"the token endpoint answered {e}") from None
            raise OIDCError(exchange_refused(e)) from None
        except OSError as e:
            raise OIDCUnavailable(f"cannot reach the token endpoint: {e}") from None
        try:
            tokens = json.loads(resp.body)
        except ValueError:
            raise OIDCError("the token endpoint did not answer JSON") from None
        if not isinstance(tokens, dict) or not isinstance(tokens.get("id_token"), str):
            raise OIDCError("the token endpoint returned no ID token")
        return tokens


def exchange_refused(e: HTTPClientError) -> str:
    """What a refused code exchange says, with what an admin can do about it."""
    error = ""
    if e.response is not None:
        try:
            answer = json.loads(e.response.body)
            error = answer.get("error", "") if isinstance(answer, dict) else ""
        except ValueError:
            pass
    error = error if isinstance(error, str) and error.isascii() else ""
    message = f"code exchange refused (HTTP {e.code} {error[:64]})".replace(" )", ")")
    if e.code == 401 or error in ("invalid_client", "unauthorized_client"):
        message += (
            ": check c.OIDCIdentityProvider.client_id and client_secret_file "
            "(or client_secret / the client_secret_env variable)"
        )
    elif error == "invalid_grant":
        message += ": the sign-in code was already used or has expired; start again"
    return message


class OIDCLogoutHandler(_OIDCHandler):
    """Sign-out: the session ends on the server, then at the issuer when it offers an
    end-session endpoint (with the session's ID token as `id_token_hint`)."""

    @allow_unauthenticated
    async def get(self):
        session = self.provider.end_session(self)
        try:
            end = (await self.provider.remote.discovery()).get("end_session_endpoint")
        except OIDCError:
            end = None
        if end:
            back = f"{self.request.protocol}://{self.request.host}{self.base_url}"
            params = {"client_id": self.provider.client_id, "post_logout_redirect_uri": back}
            if session is not None and session.id_token:
                params["id_token_hint"] = session.id_token
            sep = "&" if "?" in end else "?"
            return self.redirect(end + sep + urlencode(params))
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish("Signed out.\n")
