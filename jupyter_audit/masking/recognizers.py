"""The default recognizers, and the pre-screen that proves a short text holds none of them.

:data:`DEFAULT_RECOGNIZERS` is what a :class:`~.engine.MaskingEngine` looks for unless told
otherwise: the secret formats (`formats`), secrets by name (`assignments`), IBANs and card
numbers (`checksums`) and e-mail addresses (`contact`). :func:`default_may_match` is an
exact pre-screen of that set (it must never say False for a text one of them would match in;
a property test compares the two), and :func:`screened_by_default` tells which recognizers
it covers.
"""

from __future__ import annotations

from .assignments import SecretAssignmentRecognizer
from .base import PatternRecognizer, Recognizer, TokenRecognizer
from .checksums import DIGIT_RUN, CardRecognizer, IbanRecognizer
from .contact import EmailRecognizer
from .context import RUN_NEEDLE, T_TOK, Context
from .formats import CURL_USER, PEM_PRIVATE_KEY, SQL_IDENTIFIED_BY, TOKEN_FORMATS, URL_PASSWORD

__all__ = ["DEFAULT_RECOGNIZERS", "default_may_match", "screened_by_default"]

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
]
"""The first engine's recognizers (order does not matter: overlaps are decided by priority)."""


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
