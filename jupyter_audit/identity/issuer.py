"""The OpenID Connect issuer as this server sees it: its discovery document and signing keys,
fetched over HTTP and cached, and the two ways talking to it fails: a refusal (`OIDCError`)
or an issuer that could not be reached (`OIDCUnavailable`, worth trying again)."""

from __future__ import annotations

import base64
import json
import time

import jwt
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest


class OIDCError(Exception):
    """A sign-in or token that is refused; the message says why and is safe to show."""


class OIDCUnavailable(OIDCError):
    """The issuer could not be reached (connection refused, timeout, HTTP 5xx): nothing was
    refused, the person should try again."""


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
            if e.code == 599 or e.code >= 500:  # 599: tornado's timeout / connection error
                raise OIDCUnavailable(f"cannot reach {url}: {e}") from None
            raise OIDCError(f"{url} answered HTTP {e.code}") from None
        except OSError as e:
            raise OIDCUnavailable(f"cannot reach {url}: {e}") from None
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
