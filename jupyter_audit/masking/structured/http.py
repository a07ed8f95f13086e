"""HTTP: query strings and bodies masked by key name.

``?email=ann@x.io&api_key=abc``, ``{"customer": {"phone": "555 0100"}, "token": "..."}``,
``name=Ann+Lee&password=...``: the value of a sensitive key (a sensitive column name, a
secret-looking key such as ``password`` or ``api_key``, or any name ``is_secret_name``
calls secret) is replaced by its pseudonym, wherever it is nested. Covers the ``op.http``
``url`` and the ``request_body`` / ``response_body`` captured for the hosts named in
``JUPYTER_AUDIT_BODY_HOSTS``. A JSON body is parsed and written back compactly; a body that
is neither JSON nor form-encoded is left to the text recognizers. Never raises.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from urllib.parse import quote_plus, unquote_plus

from ..assignments import is_secret_name
from ..base import MASKED_RE
from .names import SensitiveNames

Pseudonym = Callable[[str, str], str]

_PAIR = re.compile(r"([^&=#;\s]+)=([^&#;\s]*)")
_FORM = re.compile(r"[^&=\s]+=[^&\s]*(?:&[^&=\s]+=[^&\s]*)*")
_MAX_DEPTH = 64
_JSON_KEY = re.compile(r'"((?:[^"\\]|\\.){1,128})"\s*:')
# every name `is_secret_name` calls secret holds one of these (its stems), lowercased
_SECRET_STEMS = re.compile(r"pass|pw|secret|tok|key|auth|cred|cookie|sess|sig|priv")


class KeyMasker:
    """Masks values by the key that names them."""

    def __init__(self, keys: SensitiveNames) -> None:
        self.keys = keys

    def type_of(self, key: str) -> str | None:
        t = self.keys.type_of(key)
        if t is None and is_secret_name(key):
            return "SECRET"
        return t

    def may_occur(self, text: str) -> bool:
        """False when no sensitive or secret key can occur in ``text``."""
        low = text.lower()
        return self.keys.may_occur(low) or _SECRET_STEMS.search(low) is not None

    def mask_url(self, url: str, pseudonym: Pseudonym) -> str:
        q = url.find("?")
        if q < 0 or "=" not in url[q:] or not self.may_occur(url[q:]):
            return url
        end = url.find("#", q)
        end = len(url) if end < 0 else end
        return url[: q + 1] + self._form(url[q + 1 : end], pseudonym) + url[end:]

    def mask_body(self, body: str, pseudonym: Pseudonym) -> str:
        stripped = body.strip()
        if not stripped:
            return body
        if stripped[0] in "{[":
            # its keys first (one C-speed scan): most bodies have no sensitive one
            if not any(self.type_of(k) for k in set(_JSON_KEY.findall(stripped))):
                return body
            try:
                value = json.loads(stripped)
            except ValueError:
                return body  # capped or not JSON: the recognizers read it
            masked = self._json(value, None, pseudonym, 0)
            if masked == value:
                return body
            return json.dumps(masked, ensure_ascii=False, separators=(",", ":"))
        if self.may_occur(stripped) and _FORM.fullmatch(stripped):
            return self._form(stripped, pseudonym)
        return body

    def _form(self, query: str, pseudonym: Pseudonym) -> str:
        def sub(m: re.Match) -> str:
            key, value = m.group(1), m.group(2)
            t = self.type_of(unquote_plus(key))
            if t is None or not value:
                return m.group()
            plain = unquote_plus(value)
            if MASKED_RE.fullmatch(plain):
                return m.group()
            return key + "=" + quote_plus(pseudonym(t, plain), safe="‹›:")

        return _PAIR.sub(sub, query)

    def _json(self, value, t: str | None, pseudonym: Pseudonym, depth: int):
        if depth > _MAX_DEPTH:
            return pseudonym(t or "WITHHELD", json.dumps(value))
        if type(value) is dict:
            return {
                k: self._json(v, self.type_of(k) if isinstance(k, str) else None, pseudonym,
                              depth + 1) if t is None else self._json(v, t, pseudonym, depth + 1)
                for k, v in value.items()
            }  # fmt: skip
        if type(value) is list:
            return [self._json(v, t, pseudonym, depth + 1) for v in value]
        if t is None or value is None or value is True or value is False:
            return value
        if type(value) is str:
            return value if not value or MASKED_RE.fullmatch(value) else pseudonym(t, value)
        return pseudonym(t, json.dumps(value))
