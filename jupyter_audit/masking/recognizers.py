"""The default recognizers, and the pre-screen that proves a short text holds none of them.

:data:`DEFAULT_RECOGNIZERS` is what a :class:`~.engine.MaskingEngine` looks for unless told
otherwise: the secret formats (`formats`), secrets by name (`assignments`), IBANs and card
numbers (`checksums`), e-mail addresses and phone numbers (`contact`), national identifiers
(`national_ids`), IP addresses (`network`) and dates of birth (`personal`). Each has a unique
``name`` (configuration disables recognizers by name). :func:`default_may_match` is an exact
pre-screen of the first engine's set (it must never say False for a text one of them would
match in; a property test compares the two), :func:`screened_by_default` tells which
recognizers it covers, and :func:`quick_screen` adds the screens of the others.
"""

from __future__ import annotations

from collections.abc import Iterable

from .assignments import SecretAssignmentRecognizer
from .base import PatternRecognizer, Recognizer, TokenRecognizer
from .checksums import DIGIT_RUN, CardRecognizer, IbanRecognizer
from .contact import PHONE_LABELLED, EmailRecognizer, PhoneRecognizer
from .context import RUN_NEEDLE, T_TOK, Context
from .formats import (
    AWS_SECRET_KEY,
    CLI_PASSWORD_FLAG,
    CURL_USER,
    PEM_PRIVATE_KEY,
    SQL_IDENTIFIED_BY,
    TOKEN_FORMATS,
    URL_PASSWORD,
)
from .national_ids import NATIONAL_IDS
from .network import IPv4Recognizer, IPv6Recognizer
from .personal import DATE_OF_BIRTH

__all__ = ["DEFAULT_RECOGNIZERS", "default_may_match", "quick_screen", "screened_by_default"]

DEFAULT_RECOGNIZERS: list[Recognizer] = [
    PEM_PRIVATE_KEY,
    SecretAssignmentRecognizer(),
    URL_PASSWORD,
    CURL_USER,
    SQL_IDENTIFIED_BY,
    *TOKEN_FORMATS,
    IbanRecognizer(),
    CardRecognizer(),
    EmailRecognizer(),
    CLI_PASSWORD_FLAG,
    AWS_SECRET_KEY,
    PhoneRecognizer(),
    PHONE_LABELLED,
    IPv4Recognizer(),
    IPv6Recognizer(),
    DATE_OF_BIRTH,
    *NATIONAL_IDS,
]
"""The default recognizers (order does not matter: overlaps are decided by priority)."""


# a literal that every match of each stem in ``_STEMS`` (and "identified") contains
_STEM_LITERALS: tuple[str, ...]
_STEM_LITERALS = ("key", "ken", "kie", "pass", "pw", "secret", "sess", "sig", "auth", "cred")
_STEM_LITERALS += ("identified",)


# bound once: CPython compiles `DIGIT_RUN.search(...)` on an imported name as an attribute
# load, which makes a bound method at every call
_digit_run = DIGIT_RUN.search


def default_may_match(ctx: Context) -> bool:
    """False only when no recognizer of :data:`DEFAULT_RECOGNIZERS` can find anything in
    ``ctx``: each one's first necessary condition is checked at C speed. On a short text this
    costs a fraction of running the recognizers, whose fixed costs dominate there.

    - "@": emails and URL passwords (gate ``at``); "-u": ``-u`` / ``--user``;
    - a stem of a secret name, case-insensitively (assignments; "key" also covers
      ``PRIVATE KEY``), or "identified" (``IDENTIFIED BY``);
    - "AA00" in the class view (IBAN) or a run of 13 digits as the card search reads it;
    - a run of MIN_TOKEN_RUN token characters (well-known token formats, JWTs, PEM bodies).

    (Substring tests on ``str`` here: ``bytes in bytes`` costs several times more.) The engine
    uses it only when :func:`screened_by_default` holds for every recognizer it has; a
    property test compares it with the recognizers.
    """
    text = ctx.text
    if "@" in text or "-u" in text:
        return True
    # ASCII letters lowercase to ASCII letters, whatever the characters around them
    low = text.lower()
    for stem in _STEM_LITERALS:
        if stem in low:
            return True
    cls = ctx.cls
    if cls.find(b"AA00") >= 0 or _digit_run(cls) is not None:
        return True
    return ctx.ab.translate(T_TOK).find(RUN_NEEDLE) >= 0


# the pattern recognizers `default_may_match` was written for (by name: a pattern added to
# DEFAULT_RECOGNIZERS later is not covered until the screen learns its condition)
_SCREENED_PATTERNS = tuple(
    r
    for r in DEFAULT_RECOGNIZERS
    if type(r) is PatternRecognizer
    and r.name in ("pem", "url-password", "curl-user", "sql-identified-by")
)
_SCREENED_TYPES = (SecretAssignmentRecognizer, IbanRecognizer, CardRecognizer, EmailRecognizer)


def screened_by_default(rec: Recognizer) -> bool:
    """True when :func:`default_may_match` covers ``rec``: any token format (found only in a
    run of token characters), the built-in assignment, IBAN, card and e-mail recognizers (not
    subclasses, which may find more), and the built-in pattern recognizers themselves."""
    return (
        isinstance(rec, TokenRecognizer)
        or type(rec) in _SCREENED_TYPES
        or any(rec is r for r in _SCREENED_PATTERNS)
    )


class QuickScreen:
    """An exact pre-screen of a set of recognizers (False only when none of them can find
    anything): :func:`default_may_match` for those it covers, then, gate by gate, the
    ``may_match`` of each other, ``screened`` one. Build it with :func:`quick_screen`."""

    def __init__(self, extra: Iterable[Recognizer]) -> None:
        groups: dict[str | None, list[Recognizer]] = {}
        for rec in extra:
            groups.setdefault(rec.gate, []).append(rec)
        self.groups = tuple((gate, tuple(recs)) for gate, recs in groups.items())

    def __call__(self, ctx: Context) -> bool:
        if default_may_match(ctx):
            return True
        for gate, recs in self.groups:
            if gate is None or ctx.gate(gate):
                for rec in recs:
                    if rec.may_match(ctx):
                        return True
        return False


def quick_screen(recs: Iterable[Recognizer]) -> QuickScreen | None:
    """The :class:`QuickScreen` of ``recs``, or None when one of them has no screen."""
    recs = list(recs)
    if not all(screened_by_default(r) or r.screened for r in recs):
        return None
    return QuickScreen(r for r in recs if not screened_by_default(r))
