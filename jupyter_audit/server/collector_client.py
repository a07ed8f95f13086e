"""How a single-user server talks to the Hub's collector: one client, authenticated with the
server's Hub token (`JUPYTERHUB_API_TOKEN`), that never follows a redirect (the token would
go with it, to another host too).

- `request(...)`: blocking (urllib), for worker threads (the forwarder).
- `fetch(...)`: for the event loop (tornado's AsyncHTTPClient), for handlers that proxy a
  person's request or wait on the collector (long polls), without holding a worker thread.

Both answer the decoded JSON object, or raise `CollectorRefused` (the collector answered
with an HTTP error: its status and message, passed on to the caller) or
`CollectorUnavailable` (it could not be reached or answered no JSON).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request

TOKEN_ENV = "JUPYTERHUB_API_TOKEN"
COLLECTOR_CLIENT_KEY = "jupyter_audit_collector_client"  # settings: the client, or None


class CollectorUnavailable(Exception):
    """The collector could not be reached or refused a request (retried with backoff)."""


class CollectorRefused(CollectorUnavailable):
    """The collector answered with an HTTP error."""

    def __init__(self, status: int, message: str, text: str):
        super().__init__(text)
        self.status = status
        self.message = message


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is a failure: urllib would carry the Hub token (an added header) to
    wherever the collector's URL redirects, another host included."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def server_claim() -> str | None:
    """This server's id as the Hub names it (`<user>/<server name>`), from the spawner's
    environment; the collector checks it against the Hub's answer for the token."""
    user = os.environ.get("JUPYTERHUB_USER")
    return f"{user}/{os.environ.get('JUPYTERHUB_SERVER_NAME', '')}" if user else None


def _message(raw: bytes) -> str | None:
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    return body.get("message") if isinstance(body, dict) else None


class CollectorClient:
    def __init__(self, url: str, token: str | None, *, server: str | None = None):
        self.url = url.rstrip("/") + "/"
        self.token = token
        self.server = server  # the server id claimed (checked by the collector with the Hub)

    @classmethod
    def from_environment(cls, url: str) -> CollectorClient:
        return cls(url, os.environ.get(TOKEN_ENV), server=server_claim())

    def _url(self, path: str, params: dict | None) -> str:
        url = self.url + path.lstrip("/")
        query = [(k, v) for k, v in (params or {}).items() if v is not None]
        return url + ("?" + urllib.parse.urlencode(query, doseq=True) if query else "")

    def _headers(self, has_body: bool) -> dict:
        headers = {"Authorization": f"token {self.token}"} if self.token else {}
        if has_body:
            headers["Content-Type"] = "application/json"
        return headers

    def request(
        self,
        method: str,
        path: str,
        body: dict | None = None,
        params: dict | None = None,
        timeout: float = 60,
    ) -> dict:
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(
            self._url(path, params), data=data, method=method, headers=self._headers(bool(data))
        )
        try:
            with _OPENER.open(req, timeout=timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            message = _message(e.read())
            raise CollectorRefused(
                e.code, message or str(e.reason), f"{method} {path}: {e.code} {message or e.reason}"
            ) from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise CollectorUnavailable(f"{method} {path}: {type(e).__name__}: {e}") from None

    async def fetch(
        self,
        method: str,
        path: str,
        body: dict | None = None,
        params: dict | None = None,
        timeout: float = 60,
    ) -> dict:
        from tornado.httpclient import AsyncHTTPClient, HTTPClientError

        data = None if body is None else json.dumps(body).encode("utf-8")
        try:
            resp = await AsyncHTTPClient().fetch(
                self._url(path, params),
                method=method,
                body=data if data is not None else (b"" if method == "POST" else None),
                headers=self._headers(data is not None),
                follow_redirects=False,
                request_timeout=timeout,
                connect_timeout=min(timeout, 20),
            )
            return json.loads(resp.body)
        except HTTPClientError as e:
            if e.code == 599 or e.response is None:
                # no answer: a time-out, a connection closed mid-way, a body over the
                # client's limit (tornado's 599) is an unavailable collector, not a status
                raise CollectorUnavailable(f"{method} {path}: {e}") from None
            raw = e.response.body if e.response is not None else b""
            message = _message(raw or b"")
            raise CollectorRefused(
                e.code, message or str(e.message), f"{method} {path}: {e.code} {message or e}"
            ) from None
        except (OSError, ValueError) as e:
            raise CollectorUnavailable(f"{method} {path}: {type(e).__name__}: {e}") from None
