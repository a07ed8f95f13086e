"""What an ``op.sql`` payload holds: statement text (capped), parameters as JSON, a database
without its password. Pure rendering: never records an event nor touches the transport."""

from __future__ import annotations

import hashlib
import math
import os
import re

STATEMENT_CAP = 100_000  # characters of a statement kept in the event
PARAM_ITEMS_CAP = 100  # parameters (or param sets of executemany) kept
PARAM_TEXT_CAP = 1_000  # characters of one parameter value kept
SAFE_INT = 2**53
MIN_SAFE_INT = -SAFE_INT


def statement_text(statement) -> tuple[str, dict]:
    """The statement as text (capped), plus extra payload fields when it was cut."""
    if isinstance(statement, bytes | bytearray | memoryview):
        text = bytes(statement).decode("utf-8", "replace")
    elif isinstance(statement, str):
        text = statement
    else:
        text = str(statement)
    if len(text) <= STATEMENT_CAP:
        return text, {}
    digest = hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()
    return text[:STATEMENT_CAP], {
        "statement_truncated": True,
        "statement_chars": len(text),
        "statement_sha256": digest,
    }


def jsonable(value, depth: int = 0):
    """A JSON-safe rendering of a parameter value: JSON scalars as they are (strings
    capped, integers beyond 2**53 and non-finite floats as repr), containers recursively,
    anything else as its repr (capped)."""
    if value is None or value is True or value is False:
        return value
    t = type(value)
    if t is str:
        return value if len(value) <= PARAM_TEXT_CAP else value[:PARAM_TEXT_CAP] + "…"
    if t is int:
        return value if MIN_SAFE_INT < value < SAFE_INT else repr(value)
    if t is float:
        return value if math.isfinite(value) else repr(value)
    if depth < 4:
        if isinstance(value, list | tuple):
            out = [jsonable(v, depth + 1) for v in value[:PARAM_ITEMS_CAP]]
            if len(value) > PARAM_ITEMS_CAP:
                out.append(f"… {len(value) - PARAM_ITEMS_CAP} more")
            return out
        if isinstance(value, dict):
            obj = {}
            for i, (k, v) in enumerate(value.items()):
                if i >= PARAM_ITEMS_CAP:
                    obj["…"] = f"{len(value) - PARAM_ITEMS_CAP} more"
                    break
                obj[k if isinstance(k, str) else repr(k)] = jsonable(v, depth + 1)
            return obj
    try:
        text = repr(value)
    except Exception:
        text = f"<{t.__name__}>"
    return text if len(text) <= PARAM_TEXT_CAP else text[:PARAM_TEXT_CAP] + "…"


def params_json(params):
    """Parameters of one statement as a JSON array/object, or None."""
    if params is None:
        return None
    t = type(params)
    if t is tuple or t is list:
        if not params:
            return []
        return jsonable(params)
    if isinstance(params, dict):
        return jsonable(params)
    try:  # other sequences / mappings (e.g. sqlite3.Row, ChainMap)
        if hasattr(params, "keys"):
            return jsonable(dict(params))
        return jsonable(list(params))
    except Exception:
        return [jsonable(params)]


class Sampler:
    """Wraps the parameter sets of executemany: keeps the first few for the event and
    counts them all, consuming the user's iterable exactly once, lazily."""

    __slots__ = ("sample", "count")

    def __init__(self) -> None:
        self.sample: list = []
        self.count = 0

    def wrap(self, seq):
        if isinstance(seq, list | tuple):
            self.sample = list(seq[:PARAM_ITEMS_CAP])
            self.count = len(seq)
            return seq
        return self._gen(iter(seq))

    def _gen(self, it):
        for item in it:
            if self.count < PARAM_ITEMS_CAP:
                self.sample.append(item)
            self.count += 1
            yield item

    def payload(self):
        return [params_json(p) for p in self.sample]


_PW_KV = re.compile(r"(?i)\b(password|passwd|pwd)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)")
_PW_URL = re.compile(r"(?i)^([a-z][a-z0-9+.\-]*://[^:/@\s]*):[^@/\s]*@")


def strip_password(dsn) -> str | None:
    """A DSN, URL or path with any password removed."""
    if dsn is None:
        return None
    if isinstance(dsn, bytes):
        dsn = dsn.decode("utf-8", "replace")
    else:
        try:
            dsn = os.fspath(dsn)
        except TypeError:
            dsn = str(dsn)
        if isinstance(dsn, bytes):
            dsn = dsn.decode("utf-8", "replace")
    dsn = _PW_URL.sub(r"\1@", dsn)
    return _PW_KV.sub("", dsn).strip()


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
