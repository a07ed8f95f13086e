"""HTTP capture: one ``op.http`` event per outbound request made from notebook code.

kernel/: runs inside user kernels; never opens the trail file, never trusts its own identity
claims. Headers are never captured; bodies only for the hosts named in
``JUPYTER_AUDIT_BODY_HOSTS`` (capped), and only a response body the library had already
read (a streamed response is never consumed by the capture).

Covered: requests (``Session.send``), httpx (``Client.send``, ``AsyncClient.send``),
urllib3 (``HTTPConnectionPool.urlopen``), urllib.request (``OpenerDirector.open``). Only the
outermost library reports: requests over urllib3 is one event, with the status of the final
response after redirects. Not covered: raw ``http.client``/sockets, aiohttp, and other
clients (the kernel's own transport uses ``http.client`` and is therefore never captured).
"""

from __future__ import annotations

import functools
import re
from contextvars import ContextVar
from time import perf_counter_ns
from typing import Any
from urllib.parse import urlsplit

from .. import approvals
from ..context import active, is_wrapped, log_once, mark, record

_IN_HTTP: ContextVar[bool] = ContextVar("jupyter_audit_in_http", default=False)
IN_HTTP = _IN_HTTP  # inside a captured HTTP call (the egress capture leaves its connects alone)

_settings: dict[str, Any] = {"body_hosts": frozenset(), "body_cap": 10_000}

_URL_PW = re.compile(r"(?i)^([a-z][a-z0-9+.\-]*://[^:/@\s]*):[^@/\s]*@")


def configure(body_hosts, body_cap: int) -> None:
    _settings["body_hosts"] = frozenset(h.strip().lower() for h in body_hosts if h.strip())
    _settings["body_cap"] = int(body_cap)


def _clean_url(url) -> str:
    if isinstance(url, bytes):
        url = url.decode("utf-8", "replace")
    return _URL_PW.sub(r"\1@", str(url))


def _bodies_for(url: str) -> bool:
    hosts = _settings["body_hosts"]
    if not hosts:
        return False
    try:
        host = (urlsplit(url).hostname or "").lower()
    except Exception:
        return False
    if host in hosts:
        return True
    return any(h.startswith("*.") and host.endswith(h[1:]) for h in hosts)


def _body_text(body) -> str | None:
    if body is None:
        return None
    if isinstance(body, str):
        data = body.encode("utf-8", "replace")
    elif isinstance(body, bytes | bytearray | memoryview):
        data = bytes(body)
    else:
        return f"<{type(body).__name__}>"  # a stream or file: not read by the capture
    cap = _settings["body_cap"]
    text = data[:cap].decode("utf-8", "replace")
    return text if len(data) <= cap else text + "…"


def _size(body) -> int | None:
    if body is None:
        return 0
    if isinstance(body, str):
        return len(body.encode("utf-8", "replace"))
    if isinstance(body, bytes | bytearray):
        return len(body)
    if isinstance(body, memoryview):
        return body.nbytes
    return None


def _content_length(headers) -> int | None:
    try:
        value = headers.get("Content-Length") if headers is not None else None
        return int(value) if value is not None else None
    except Exception:
        return None


def report(
    library: str,
    method,
    url,
    status,
    t0: int,
    *,
    sent_body=None,
    received: int | None = None,
    response_body=None,
    error: BaseException | None = None,
    extra: dict | None = None,
) -> None:
    duration_us = (perf_counter_ns() - t0) // 1000
    try:
        url = _clean_url(url)
        payload = {
            "method": str(method or "GET").upper(),
            "url": url,
            "status": status if type(status) is int else None,
            "duration_us": duration_us,
            "bytes_sent": _size(sent_body),
            "bytes_received": received,
            "error": None if error is None else f"{type(error).__name__}: {error}",
            "library": library,
        }
        if _bodies_for(url):
            payload["request_body"] = _body_text(sent_body)
            payload["response_body"] = _body_text(response_body)
        if extra:
            payload.update(extra)
        record("op.http", payload)
    except Exception as e:
        log_once(f"http report ({library})", e)


def _skip() -> bool:
    return _IN_HTTP.get() or not active()


# -- requests -----------------------------------------------------------------------------


def patch_requests(module, patcher) -> None:
    cls = module.Session
    orig = cls.send
    if is_wrapped(orig):
        return

    @functools.wraps(orig)
    def send(self, request, **kwargs):
        if _skip():
            return orig(self, request, **kwargs)
        ticket = approvals.check_http(request.method, request.url)  # raises: not sent
        t0 = perf_counter_ns()
        token = _IN_HTTP.set(True)
        try:
            resp = orig(self, request, **kwargs)
        except BaseException as e:
            _IN_HTTP.reset(token)
            if ticket is not None:
                ticket.done(None, e)
            report(
                "requests", request.method, request.url, None, t0, sent_body=request.body, error=e
            )
            raise
        _IN_HTTP.reset(token)
        if ticket is not None:
            ticket.done(None, None)
        try:
            content = getattr(resp, "_content", None)
            if isinstance(content, bytes):
                received = len(content)
            else:
                content, received = None, _content_length(resp.headers)
            extra = None
            if resp.history:
                extra = {"redirects": len(resp.history), "final_url": _clean_url(resp.url)}
            report(
                "requests",
                request.method,
                request.url,
                resp.status_code,
                t0,
                sent_body=request.body,
                received=received,
                response_body=content,
                extra=extra,
            )
        except Exception as e:
            log_once("requests report", e)
        return resp

    patcher.replace(cls, "send", mark(send))


# -- httpx --------------------------------------------------------------------------------


def _httpx_request_body(request):
    return getattr(request, "_content", None)  # unset for streaming bodies: not read


def _httpx_done(request, resp, t0):
    try:
        content = getattr(resp, "_content", None)
        if isinstance(content, bytes):
            received = len(content)
        else:
            content, received = None, _content_length(resp.headers)
        report(
            "httpx",
            request.method,
            request.url,
            resp.status_code,
            t0,
            sent_body=_httpx_request_body(request),
            received=received,
            response_body=content,
        )
    except Exception as e:
        log_once("httpx report", e)


def patch_httpx(module, patcher) -> None:
    orig = module.Client.send
    if not is_wrapped(orig):

        @functools.wraps(orig)
        def send(self, request, *args, **kwargs):
            if _skip():
                return orig(self, request, *args, **kwargs)
            ticket = approvals.check_http(request.method, str(request.url))
            t0 = perf_counter_ns()
            token = _IN_HTTP.set(True)
            try:
                resp = orig(self, request, *args, **kwargs)
            except BaseException as e:
                _IN_HTTP.reset(token)
                if ticket is not None:
                    ticket.done(None, e)
                body = _httpx_request_body(request)
                report("httpx", request.method, request.url, None, t0, sent_body=body, error=e)
                raise
            _IN_HTTP.reset(token)
            if ticket is not None:
                ticket.done(None, None)
            _httpx_done(request, resp, t0)
            return resp

        patcher.replace(module.Client, "send", mark(send))

    orig_async = module.AsyncClient.send
    if not is_wrapped(orig_async):

        @functools.wraps(orig_async)
        async def asend(self, request, *args, **kwargs):
            if _skip():
                return await orig_async(self, request, *args, **kwargs)
            ticket = approvals.check_http(request.method, str(request.url))
            t0 = perf_counter_ns()
            token = _IN_HTTP.set(True)
            try:
                resp = await orig_async(self, request, *args, **kwargs)
            except BaseException as e:
                _IN_HTTP.reset(token)
                if ticket is not None:
                    ticket.done(None, e)
                body = _httpx_request_body(request)
                report("httpx", request.method, request.url, None, t0, sent_body=body, error=e)
                raise
            _IN_HTTP.reset(token)
            if ticket is not None:
                ticket.done(None, None)
            _httpx_done(request, resp, t0)
            return resp

        patcher.replace(module.AsyncClient, "send", mark(asend))


# -- urllib3 ------------------------------------------------------------------------------


def _pool_url(pool, url: str) -> str:
    if "://" in url:
        return url
    host = pool.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(pool.scheme)
    port = "" if pool.port in (None, default) else f":{pool.port}"
    return f"{pool.scheme}://{host}{port}{url}"


def patch_urllib3(module, patcher) -> None:
    HTTPConnectionPool = module.HTTPConnectionPool
    orig = HTTPConnectionPool.urlopen
    if is_wrapped(orig):
        return

    @functools.wraps(orig)
    def urlopen(self, method, url, *args, **kwargs):
        if _skip():
            return orig(self, method, url, *args, **kwargs)
        body = args[0] if args else kwargs.get("body")
        ticket = approvals.check_http(method, _pool_url(self, url))
        t0 = perf_counter_ns()
        token = _IN_HTTP.set(True)
        try:
            resp = orig(self, method, url, *args, **kwargs)
        except BaseException as e:
            _IN_HTTP.reset(token)
            if ticket is not None:
                ticket.done(None, e)
            report("urllib3", method, _pool_url(self, url), None, t0, sent_body=body, error=e)
            raise
        _IN_HTTP.reset(token)
        if ticket is not None:
            ticket.done(None, None)
        try:
            content = getattr(resp, "_body", None)
            if isinstance(content, bytes):
                received = len(content)
            else:
                content, received = None, _content_length(getattr(resp, "headers", None))
            report(
                "urllib3",
                method,
                _pool_url(self, url),
                resp.status,
                t0,
                sent_body=body,
                received=received,
                response_body=content,
            )
        except Exception as e:
            log_once("urllib3 report", e)
        return resp

    patcher.replace(HTTPConnectionPool, "urlopen", mark(urlopen))


# -- urllib.request -----------------------------------------------------------------------


def patch_urllib_request(module, patcher) -> None:
    cls = module.OpenerDirector
    orig = cls.open
    if is_wrapped(orig):
        return

    @functools.wraps(orig)
    def open_(self, fullurl, data=None, *args, **kwargs):
        if _skip():
            return orig(self, fullurl, data, *args, **kwargs)
        try:
            if isinstance(fullurl, str):
                url, method, body = fullurl, ("POST" if data is not None else "GET"), data
            else:
                url = fullurl.full_url
                body = data if data is not None else fullurl.data
                method = fullurl.method or ("POST" if body is not None else "GET")
            http = url.lower().startswith(("http:", "https:"))
        except Exception:
            http = False
        if not http:
            return orig(self, fullurl, data, *args, **kwargs)
        ticket = approvals.check_http(method, url)
        t0 = perf_counter_ns()
        token = _IN_HTTP.set(True)
        try:
            resp = orig(self, fullurl, data, *args, **kwargs)
        except BaseException as e:
            _IN_HTTP.reset(token)
            if ticket is not None:
                ticket.done(None, e)
            status = getattr(e, "code", None)  # urllib.error.HTTPError is a response too
            report("urllib", method, url, status, t0, sent_body=body, error=e)
            raise
        _IN_HTTP.reset(token)
        if ticket is not None:
            ticket.done(None, None)
        try:
            status = getattr(resp, "status", None) or resp.getcode()
            received = _content_length(getattr(resp, "headers", None))
            report("urllib", method, url, status, t0, sent_body=body, received=received)
        except Exception as e:
            log_once("urllib report", e)
        return resp

    patcher.replace(cls, "open", mark(open_))


def install(hooks, patcher, body_hosts=(), body_cap: int = 10_000) -> None:
    configure(body_hosts, body_cap)
    hooks.register("requests", lambda m: patch_requests(m, patcher))
    hooks.register("httpx", lambda m: patch_httpx(m, patcher))
    hooks.register("urllib3", lambda m: patch_urllib3(m, patcher))
    hooks.register("urllib.request", lambda m: patch_urllib_request(m, patcher))
