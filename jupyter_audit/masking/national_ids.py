"""National identifiers: US SSN and a pluggable set of others, each with its own checks.

Every format here is fixed (``000-00-0000``, ``AA 00 00 00 A`` ...), so it is found on the
character-class view, where its regex starts with a literal, and accepted only when the
number passes its rules (SSN's invalid ranges, a check digit or check letter). A bare run of
digits is taken for an identifier only right after its label (``ssn: 078051120``). To add a
country, append a :class:`~.base.PatternRecognizer` to :data:`NATIONAL_IDS`; configuration
disables one by its name. This module must never accept a number that fails its checks.
"""

from __future__ import annotations

import re

from .base import ClsScreen, PatternRecognizer, Recognizer

SSN = "SSN"
NATIONAL_ID = "NATIONAL_ID"

_NOT_DIGIT = re.compile(r"[^0-9]")


def ssn_valid(value: str) -> bool:
    """US SSN rules (SSA): area 001-899 but not 666, group 01-99, serial 0001-9999."""
    d = _NOT_DIGIT.sub("", value)
    if len(d) != 9:
        return False
    area, group, serial = int(d[:3]), int(d[3:5]), int(d[5:])
    return 0 < area < 900 and area != 666 and group > 0 and serial > 0


# first letter: not D F I Q U V; second: not D F I O Q U V; these pairs are never issued
_NINO_FIRST = frozenset("ABCEGHJKLMNOPRSTWXYZ")
_NINO_SECOND = frozenset("ABCEGHJKLMNPRSTWXYZ")
_NINO_BAD_PREFIXES = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})


def nino_valid(value: str) -> bool:
    """UK National Insurance number (HMRC NIM39110): prefix letters, six digits, A-D."""
    v = value.replace(" ", "").upper()
    return (
        len(v) == 9
        and v[0] in _NINO_FIRST
        and v[1] in _NINO_SECOND
        and v[:2] not in _NINO_BAD_PREFIXES
        and v[2:8].isdigit()
        and v[8] in "ABCD"
    )


def sin_valid(value: str) -> bool:
    """Canadian Social Insurance Number: nine digits passing Luhn."""
    d = _NOT_DIGIT.sub("", value)
    if len(d) != 9 or d == "000000000":
        return False
    total = 0
    for i, c in enumerate(d):
        n = int(c) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def bsn_valid(value: str) -> bool:
    """Dutch burgerservicenummer: nine digits passing the "11-proof" (last weight -1)."""
    d = _NOT_DIGIT.sub("", value)
    if len(d) != 9 or d == "000000000":
        return False
    total = sum(int(c) * w for c, w in zip(d[:8], range(9, 1, -1), strict=True)) - int(d[8])
    return total % 11 == 0


_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def dni_valid(value: str) -> bool:
    """Spanish DNI (8 digits + letter) or NIE (X/Y/Z + 7 digits + letter): mod-23 letter."""
    v = value.upper()
    if len(v) != 9 or not v[-1].isalpha():
        return False
    body = v[:8]
    if body[0] in "XYZ":
        body = str("XYZ".index(body[0])) + body[1:]
    return body.isdigit() and _DNI_LETTERS[int(body) % 23] == v[-1]


# ends of a fixed-format match on the class view: not glued to letters, digits or a dash
# that continues the number
_L = rb"(?<![0Aa.-])"
_R = rb"(?![0Aa]|[.-]0)"
# a label, then an optional closing quote and a separator, then the value (on the low view)
_LABEL_SEP = rb"(?![a-z0-9])[\"']?[ \t]*(?:[:=]|==|=>|->)?[ \t]*[\"']?"

#: the national identifiers (TYPE SSN for the US one, NATIONAL_ID for the others)
NATIONAL_IDS: list[Recognizer] = [
    PatternRecognizer(
        SSN,
        rb"000(?<![0Aa.-]000)(?:-00-|\ 00\ )0000" + _R,
        on="cls",
        gate="cluster",
        screen=ClsScreen(rb"000-00-0000", rb"000 00 0000"),
        validator=ssn_valid,
        priority=60,
        name="us-ssn",
    ),
    PatternRecognizer(
        SSN,
        rb"(?<![a-z])(?:ssn|social[_ ]security(?:[_ ](?:number|no))?)"
        + _LABEL_SEP
        + rb"([0-9]{9})(?![0-9])",
        group=1,
        on="low",
        needles=("ssn", "social"),
        haystack="low",
        anchored=True,
        gate="cluster",
        validator=ssn_valid,
        priority=60,
        name="us-ssn-labelled",
    ),
    PatternRecognizer(
        NATIONAL_ID,
        rb"AA(?<![0Aa.-]AA)(?:(?:00){3}A|(?: 00){3} A)" + _R,
        on="cls",
        gate="digits",
        screen=ClsScreen(rb"000000A", rb" 00 00 00 A"),  # literal prefixes (not "AA")
        validator=nino_valid,
        priority=60,
        name="uk-nino",
    ),
    PatternRecognizer(
        NATIONAL_ID,
        rb"000(?<![0Aa.-]000)(?:-000-|\ 000\ )000" + _R,
        on="cls",
        gate="cluster",
        screen=ClsScreen(rb"000-000-000", rb"000 000 000"),
        validator=sin_valid,
        priority=45,
        name="ca-sin",
    ),
    PatternRecognizer(
        NATIONAL_ID,
        rb"(?<![a-z])(?:bsn|burgerservicenummer)" + _LABEL_SEP + rb"([0-9]{9})(?![0-9])",
        group=1,
        on="low",
        needles=("bsn", "burgerservicenummer"),
        haystack="low",
        anchored=True,
        gate="cluster",
        validator=bsn_valid,
        priority=60,
        name="nl-bsn",
    ),
    PatternRecognizer(
        NATIONAL_ID,
        _L + rb"(?:00000000|A0000000)A" + _R,
        on="cls",
        gate="cluster",
        screen=ClsScreen(rb"0000000A"),
        validator=dni_valid,
        priority=60,
        name="es-dni",
    ),
]
