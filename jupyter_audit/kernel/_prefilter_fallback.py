"""Stand-in for the policy's ``prefilter.might_write`` until that lands (then deleted).

Fails towards asking: True unless no write/DDL keyword is left once comments, string
literals and quoted identifiers are removed."""

from __future__ import annotations

import re

_NOISE = re.compile(
    r"--[^\n]*|/\*.*?(?:\*/|$)|'(?:[^']|'')*(?:'|$)|\"(?:[^\"]|\"\")*(?:\"|$)", re.S
)
_WRITE = re.compile(
    r"\b(?:insert|update|delete|merge|upsert|replace|create|drop|alter|truncate|rename|grant|"
    r"revoke|copy|export|import|attach|detach|install|load|call|do|execute|exec|vacuum|"
    r"reindex|cluster|comment|lock|set|reset|pragma|checkpoint|refresh|analyze|into)\b",
    re.I,
)


def might_write(statement: str) -> bool:
    if statement.__class__ is not str:
        return True
    return _WRITE.search(_NOISE.sub(" ", statement)) is not None
