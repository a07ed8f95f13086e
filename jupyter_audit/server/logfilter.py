"""Secrets out of the server's log: a filter on every log handler of the server process that
masks credentials and search words in query strings (`?token=…`, `code=`, `state=`, `q=`,
`notebook=`, …) and service tokens
(`jat_<id>_<secret>`) in each line, whoever logs it (tornado's request summaries of refused
requests, jupyter_server, this extension). jupyter_server scrubs its own access log; the
warnings tornado writes for 4xx/5xx answers carry the raw URI."""

from __future__ import annotations

import logging
import re

_PARAMS = ("token", "access_token", "id_token", "refresh_token", "code", "state", "key", "auth")
# what a reviewer types to find a trace (`GET traces?q=…&notebook=…`) may be the very value
# the trail masked (a customer's address): it is not written to the log either
_SEARCHES = ("q", "notebook")


def _spelled_any_way(name: str) -> str:
    """A parameter name as tornado accepts it: each character also percent-encoded (and
    encoded twice, inside a URL that is itself a parameter)."""
    return "".join(f"(?:{re.escape(c)}|%{ord(c):02x}|%25{ord(c):02x})" for c in name)


_NAMES = "(?:" + "|".join(_spelled_any_way(n) for n in (*_PARAMS, *_SEARCHES, "password")) + ")"
_QUERY = re.compile(r"(?i)([?&;]" + _NAMES + r"=)[^&\s#]+")
# the same inside a URL that is itself a parameter (a login redirect's `next=`)
_ENCODED = re.compile(r"(?i)((?:%3F|%26|%3B)" + _NAMES + r"%3D)(?:(?!%26|%23)[^&\s#])+")
_SERVICE_TOKEN = re.compile(r"\b(jat_[0-9a-f]{16}_)[A-Za-z0-9_-]{20,}")
_AUTH_HEADER = re.compile(
    r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?(?:token|bearer)\s+)[^\s'\",}]+"
)
HIDDEN = "[secret]"


def scrub(text: str) -> str:
    if "=" not in text and "%3" not in text and "jat_" not in text and "uthorization" not in text:
        return text
    text = _QUERY.sub(r"\1" + HIDDEN, text)
    text = _ENCODED.sub(r"\1" + HIDDEN, text)
    text = _SERVICE_TOKEN.sub(r"\1" + HIDDEN, text)
    return _AUTH_HEADER.sub(r"\1" + HIDDEN, text)


class ScrubSecrets(logging.Filter):
    """Rewrites a record's message with its secrets masked (the record is formatted once
    here; its arguments are dropped)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is the handler's to report
            return True
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            # formatted here, once, so that the handler prints the scrubbed text
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


def install(*loggers: logging.Logger) -> None:
    """Put the filter on every handler of these loggers, of tornado's and of the root
    logger (once per handler)."""
    names = ("tornado", "tornado.access", "tornado.application", "tornado.general")
    targets = [*loggers, logging.getLogger(), *(logging.getLogger(n) for n in names)]
    for logger in targets:
        for handler in logger.handlers:
            if not any(isinstance(f, ScrubSecrets) for f in handler.filters):
                handler.addFilter(ScrubSecrets())
