"""Secrets by their form: private keys, passwords in URLs and commands, JWTs, API tokens.

Each is recognised by what it looks like wherever it stands, whatever it is called: a PEM
block, ``scheme://user:password@host``, ``curl -u user:password``, SQL ``IDENTIFIED BY``, and
the well-known token formats, which start with a literal prefix (``ghp_``, ``AKIA``...) and
are searched for only in long runs of token characters. Adding a format is a data entry here
and in `recognizers.DEFAULT_RECOGNIZERS`. This module must never match a value by its name
(that is `assignments`).
"""

from __future__ import annotations

import re

from .base import SECRET, PatternRecognizer, TextHas, TokenRecognizer
from .context import Context


class JwtRecognizer(TokenRecognizer):
    """``eyJ<header>.eyJ<payload>.<signature>``. The run that holds "eyJ" may be the payload
    when the header is shorter than MIN_TOKEN_RUN: then the match starts at the header."""

    def __init__(self) -> None:
        super().__init__(
            SECRET,
            ("eyJ",),
            r"eyJ[A-Za-z0-9_-]{2,}\.eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*",
            name="jwt",
        )

    def match_at(self, ctx: Context, pos: int) -> tuple[int, int] | None:
        span = super().match_at(ctx, pos)
        if span is None and pos > 0 and ctx.text[pos - 1] == ".":
            header = ctx.text.rfind("eyJ", max(0, pos - 4096), pos - 1)
            if header >= 0:
                span = super().match_at(ctx, header)
        return span


_A_DIGIT = re.compile(r"[0-9]")
_A_LETTER = re.compile(r"[A-Za-z]")


def _has_digit_and_letter(value: str) -> bool:
    """An ``sk-`` key has both (``sk-learn-tutorial-for-beginners`` is no key)."""
    return _A_DIGIT.search(value, 3) is not None and _A_LETTER.search(value, 3) is not None


#: PEM private key blocks, whole (to the end of the text when the END line is missing)
PEM_PRIVATE_KEY = PatternRecognizer(
    SECRET,
    r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
    r"(?:[^\x00]*?-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|[^\x00]*)",
    gate="longrun",  # the base64 body
    needles=("PRIVATE KEY",),
    priority=100,
    name="pem",
)

#: scheme://user:password@host -- only the password
URL_PASSWORD = PatternRecognizer(
    SECRET,
    r"://[^\s/?#@:\"'<>\x00]{0,256}:([^\s/?#\"'<>\x00]{1,512})@",
    group=1,
    gate="at",
    priority=85,
    name="url-password",
)

#: curl -u user:password / --user user:password
CURL_USER = PatternRecognizer(
    SECRET,
    r"-(?:u|-user)[ \t]+[\"']?[^\s:\"'\x00]{1,256}:([^\s\"'\x00]{1,1024})",
    group=1,
    after=" \t\r\n\"'\x00",
    priority=85,
    name="curl-user",
)

#: SQL: CREATE USER x IDENTIFIED BY 'secret'
SQL_IDENTIFIED_BY = PatternRecognizer(
    SECRET,
    rb"identified[ \t\r\n]+by[ \t\r\n]+(?:password[ \t\r\n]+)?(['\"])([^'\"\n\x00]*)\1",
    group=2,
    on="low",
    priority=85,
    name="sql-identified-by",
)

#: the well-known token formats
TOKEN_FORMATS: list[TokenRecognizer] = [
    JwtRecognizer(),
    TokenRecognizer(SECRET, ("AKIA", "ASIA"), r"A[KS]IA[A-Z0-9]{16}(?![A-Za-z0-9])", name="aws"),
    TokenRecognizer(
        SECRET,
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
        r"(?:gh[pousr]_[A-Za-z0-9]{30,251}|github_pat_[A-Za-z0-9_]{22,255})(?![A-Za-z0-9])",
        name="github",
    ),
    TokenRecognizer(SECRET, ("xox",), r"xox[abposre]-[A-Za-z0-9-]{10,250}", name="slack"),
    TokenRecognizer(
        SECRET,
        ("sk-",),
        r"sk-[A-Za-z0-9_-]{20,250}",
        validator=_has_digit_and_letter,
        name="openai-anthropic",
    ),
    TokenRecognizer(
        SECRET, ("sk_", "rk_"), r"[sr]k_(?:live|test)_[A-Za-z0-9]{16,250}", name="stripe"
    ),
    TokenRecognizer(SECRET, ("AIza",), r"AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])", name="google"),
    TokenRecognizer(SECRET, ("hf_",), r"hf_[A-Za-z0-9]{30,60}(?![A-Za-z0-9])", name="huggingface"),
    TokenRecognizer(SECRET, ("glpat-",), r"glpat-[A-Za-z0-9_-]{20,60}", name="gitlab"),
]

#: ``mysql -pSECRET`` / ``mysqldump -u root -p'SECRET'``: MySQL's password glued to ``-p``
#: (``-p`` alone prompts, ``-P`` is the port); ``sshpass -p SECRET``
CLI_PASSWORD_FLAG = PatternRecognizer(
    SECRET,
    r"(?:(?i:mysql[a-z_]*|mariadb[a-z_-]*)(?![\w-])[^\n\x00|;&]{0,256}?[ \t]-p"
    r"|(?i:sshpass)[ \t]+-p[ \t]*)[\"']?([^\s\"'\x00]+)",
    needles=("mysql", "mariadb", "sshpass"),
    haystack="low",
    anchored=True,
    screen=TextHas("-p"),  # one search before three
    group=1,
    priority=85,
    name="cli-password-flag",
)


def _aws_secret_like(value: str) -> bool:
    """40 base64 characters with upper and lower case letters and a digit or "/" "+" (a
    git SHA or a hex digest has no upper case letter)."""
    return (
        _A_UPPER.search(value) is not None
        and _A_LOWER.search(value) is not None
        and (_A_DIGIT.search(value) is not None or "/" in value or "+" in value)
    )


_A_UPPER = re.compile(r"[A-Z]")
_A_LOWER = re.compile(r"[a-z]")

#: An AWS secret access key in context: 40 base64 characters in a text that speaks of a
#: secret or holds an access key id (``AKIA...,wJalr...`` in a credentials CSV,
#: ``aws configure set aws_secret_access_key wJalr...``)
AWS_SECRET_KEY = PatternRecognizer(
    SECRET,
    r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])",
    validator=_aws_secret_like,
    needles=("secret", "akia", "asia"),
    haystack="low",
    priority=75,
    name="aws-secret-key",
)
