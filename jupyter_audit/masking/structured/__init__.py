"""Structure-aware masking: values masked by the column or key that names them.

The text recognizers find values by their form (an e-mail, a card number); a customer's name
or a phone number in a query parameter has no form to find. This package reads the structure
around such values in an event's payload, by kind, and masks them by their column or key:

- ``op.sql``: literals and parameters given to a sensitive column (`sql`); the same in an
  ``approval.requested`` for SQL, so reviewers see what the trail's op.sql shows;
- ``op.http``: the query string of ``url`` and the captured bodies, by key (`http`);
- ``cell.finished``: output summaries holding tables, printed query rows or dicts (`tables`);
- ``cell.requested``, ``cell.started``, ``cell.finished``: SQL written in the code (`code`).

It runs before the text recognizers (:meth:`MaskingEngine.mask_structure`, called by the
Writer's ``prepare``), which then mask the whole payload as before. Never raises: when reading a
structure fails, the fields it would have masked are withheld (``‹WITHHELD:…›``), never passed on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .code import CodeMasker
from .http import KeyMasker
from .names import (
    DEFAULT_SENSITIVE_COLUMNS,
    DEFAULT_SENSITIVE_KEYS,
    SECRET_KEYS,
    SensitiveNames,
)
from .sql import SqlMasker
from .tables import TableMasker

__all__ = [
    "DEFAULT_SENSITIVE_COLUMNS",
    "DEFAULT_SENSITIVE_KEYS",
    "SensitiveNames",
    "StructureMasker",
]

Pseudonym = Callable[[str, str], str]
_WITHHELD = "WITHHELD"


class StructureMasker:
    """Masks the structured fields of one event payload by its kind."""

    def __init__(
        self,
        sensitive_columns: Iterable[str] | None = None,
        sensitive_keys: Iterable[str] | None = None,
    ) -> None:
        columns = SensitiveNames(
            DEFAULT_SENSITIVE_COLUMNS if sensitive_columns is None else sensitive_columns
        )
        keys = SensitiveNames(
            DEFAULT_SENSITIVE_KEYS if sensitive_keys is None else sensitive_keys, SECRET_KEYS
        )
        self.columns, self.keys = columns, keys
        self.sql = SqlMasker(columns)
        self.tables = TableMasker(columns)
        self.http = KeyMasker(keys)
        self.code = CodeMasker(self.sql)
        self._by_kind: dict[str, tuple[Callable[[dict, Pseudonym], dict], tuple[str, ...]]] = {
            "op.sql": (self.sql.mask, ("statement", "params")),
            # a SQL request for approval: its statement and parameters, as op.sql's
            "approval.requested": (self._approval, ("statement", "params")),
            "op.http": (self._http, ("url", "request_body", "response_body")),
            "cell.requested": (self._code, ("code",)),
            "cell.started": (self._code, ("code",)),
            "cell.finished": (self._cell_finished, ("code", "outputs")),
        }

    def mask(self, kind: str, payload, pseudonym: Pseudonym):
        """``payload`` with its structured sensitive values replaced (a new dict when
        anything changed; ``payload`` itself for other kinds)."""
        entry = self._by_kind.get(kind)
        if entry is None or type(payload) is not dict:
            return payload
        handler, fields = entry
        try:
            return handler(payload, pseudonym)
        except Exception:  # noqa: BLE001 - withhold what could not be read, never pass it
            out = dict(payload)
            for field in fields:
                value = out.get(field)
                if isinstance(value, str):
                    out[field] = pseudonym(_WITHHELD, value)
                elif value is not None:
                    out[field] = None
            return out

    def _approval(self, payload: dict, pseudonym: Pseudonym) -> dict:
        if payload.get("operation") != "sql":
            return payload
        return self.sql.mask(payload, pseudonym)

    def _http(self, payload: dict, pseudonym: Pseudonym) -> dict:
        out = payload
        url = payload.get("url")
        if type(url) is str:
            masked = self.http.mask_url(url, pseudonym)
            if masked != url:
                out = dict(payload)
                out["url"] = masked
        for field in ("request_body", "response_body"):
            body = payload.get(field)
            if type(body) is str:
                masked = self.http.mask_body(body, pseudonym)
                if masked != body:
                    if out is payload:
                        out = dict(payload)
                    out[field] = masked
        return out

    def _code(self, payload: dict, pseudonym: Pseudonym) -> dict:
        code = payload.get("code")
        if type(code) is not str:
            return payload
        masked = self.code.mask(code, pseudonym)
        if masked == code:
            return payload
        out = dict(payload)
        out["code"] = masked
        return out

    def _cell_finished(self, payload: dict, pseudonym: Pseudonym) -> dict:
        return self._code(self._outputs(payload, pseudonym), pseudonym)

    def _outputs(self, payload: dict, pseudonym: Pseudonym) -> dict:
        outputs = payload.get("outputs")
        if type(outputs) is not list or not outputs:
            return payload
        code = payload.get("code")
        code = code if type(code) is str else None
        new = []
        changed = False
        for item in outputs:
            text = item.get("text") if type(item) is dict else None
            if type(text) is str:
                masked = self.tables.mask(text, pseudonym, code)
                if masked != text:
                    item = dict(item)
                    item["text"] = masked
                    changed = True
            new.append(item)
        if not changed:
            return payload
        out = dict(payload)
        out["outputs"] = new
        return out
