"""Checksummed identifiers: payment card numbers (Luhn) and IBANs (ISO 13616, mod-97).

Both are found on the character-class view (`context.Context.cls`) and accepted only when
their check digits hold, so that an order number or a float is not masked as a card. This
module must never accept a candidate whose checksum fails.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .base import CARD, IBAN, Recognizer
from .context import Context

# ASCII digit -> the digit doubled, minus 9 when above 9 (the Luhn "doubled" positions)
_LUHN_DOUBLED = bytes.maketrans(b"0123456789", bytes([0, 2, 4, 6, 8, 1, 3, 5, 7, 9]))


def luhn_valid(digits: str) -> bool:
    """Luhn checksum of a string of ASCII digits (separators must be removed)."""
    if not digits or not digits.isascii() or not digits.isdigit():
        return False
    b = digits.encode("ascii")[::-1]
    plain = b[0::2]
    # sums over bytes run in C: plain digits are ASCII codes minus 48
    total = sum(plain) - 48 * len(plain) + sum(b[1::2].translate(_LUHN_DOUBLED))
    return total % 10 == 0


#: IBAN lengths by country (ISO 13616 registry).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def iban_valid(iban: str) -> bool:
    """Country length and ISO 7064 mod-97 check of an IBAN (spaces allowed)."""
    compact = iban.replace(" ", "").upper()
    if not compact.isascii() or not compact.isalnum() or len(compact) < 15:
        return False
    expected = IBAN_LENGTHS.get(compact[:2])
    if expected is not None and len(compact) != expected:
        return False
    if not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    try:
        number = int("".join(str(int(c, 36)) for c in rearranged))
    except ValueError:
        return False
    return number % 97 == 1


# on the class view: a run of digits, single spaces or dashes between them allowed
DIGIT_RUN = re.compile(rb"000(?:[ -]?0){10,}+")
# A pre-screen at C speed: a run that ``find`` could accept (see there) is not glued to a
# letter or a digit on its left, is no decimal fraction ("0.<run>"), and is followed neither
# by a letter nor by a decimal point and a digit. A run that ``find`` accepts is always found
# by this pattern at the same start (the first digit of a run that ``DIGIT_RUN`` reports never
# follows a digit), so a text where it finds nothing has no card; floats and hex digests, the
# common digit runs, are skipped without a Python-level loop over their runs.
_CARD_SCREEN = re.compile(rb"000(?<![Aa0]000)(?<!0\.000)(?:[ -]?0){10,}+(?![Aa]|\.0)")
_DIGITS_ONLY = re.compile(r"[ -]")
_GROUPS_OK = re.compile(r"[0-9]{3,}(?:[ -][0-9]{3,})*")


class CardRecognizer(Recognizer):
    """13-19 digits passing Luhn, optionally grouped by single spaces or dashes.

    A run of digits without separators must be 13-19 digits long as a whole (no card is cut
    out of a longer number), must not touch letters and must not be part of a decimal number.
    In a grouped run, the leftmost longest window of whole groups (each of at least 3 digits)
    that passes Luhn is a card (``4111 1111 1111 1111 12/25`` -> the first four groups).
    """

    type = CARD
    priority = 40
    gate = "digits"
    name = "card"

    def normalize(self, value: str) -> str:
        return _DIGITS_ONLY.sub("", value)

    def find(self, ctx: Context) -> Iterable[tuple[int, int]]:
        out: list[tuple[int, int]]
        cls, text, out = ctx.cls, ctx.text, []
        if ctx.screen and _CARD_SCREEN.search(cls) is None:
            return out
        n = ctx.n
        search = DIGIT_RUN.search
        m = search(cls)
        while m is not None:
            s, e = m.span()
            m = search(cls, e)
            if (s > 0 and cls[s - 1] in _LETTER_CLS) or (e < n and cls[e] in _LETTER_CLS):
                continue
            if s >= 2 and cls[s - 1] == 0x2E and cls[s - 2] == 0x30:
                continue  # 3.14159265358979323...
            if e + 1 < n and cls[e] == 0x2E and cls[e + 1] == 0x30:
                continue
            run = text[s:e]
            if " " not in run and "-" not in run:
                if len(run) <= 19 and luhn_valid(run):
                    out.append((s, e))
                continue
            digits = _DIGITS_ONLY.sub("", run)
            if len(digits) <= 19 and luhn_valid(digits) and _GROUPS_OK.fullmatch(run):
                out.append((s, e))  # the common case: the whole run is one card
            else:
                out.extend(self._grouped(run, s))
        return out

    @staticmethod
    def _grouped(run: str, offset: int) -> list[tuple[int, int]]:
        groups = []  # (start, end) within run
        pos = 0
        for part in _DIGITS_ONLY.split(run):
            groups.append((pos, pos + len(part)))
            pos += len(part) + 1
        found, i, ng = [], 0, len(groups)
        while i < ng:
            best = None
            total = 0
            for j in range(i, ng):
                gs, ge = groups[j]
                if ge - gs < 3:
                    break
                total += ge - gs
                if total > 19:
                    break
                if total >= 13:
                    digits = run[groups[i][0] : ge].replace(" ", "").replace("-", "")
                    if luhn_valid(digits):
                        best = j
            if best is not None:
                found.append((offset + groups[i][0], offset + groups[best][1]))
                i = best + 1
            else:
                i += 1
        return found


_LETTER_CLS = frozenset(b"Aa")


_IBAN_RUN = re.compile(rb"AA00(?: ?[A0]{4}){2,7}(?: ?[A0]{1,4})?")
_ALNUM_CLS = frozenset(b"Aa0")


class IbanRecognizer(Recognizer):
    """Country code + 2 check digits + up to 30 alphanumerics (compact or in groups of four),
    validated by country length and mod-97. Found on the class view (``AA00...``)."""

    type = IBAN
    priority = 50
    gate = "digits"
    name = "iban"

    def normalize(self, value: str) -> str:
        return value.replace(" ", "").upper()

    def find(self, ctx: Context) -> Iterable[tuple[int, int]]:
        cls, text, out = ctx.cls, ctx.text, []
        start = cls.find(b"AA00")
        while start >= 0:
            m = _IBAN_RUN.match(cls, start)
            if m is None or (start > 0 and cls[start - 1] in _ALNUM_CLS):
                start = cls.find(b"AA00", start + 1)
                continue
            s, e = m.span()
            span = self._trim(text, s, e, cls)
            if span is not None:
                out.append(span)
                start = cls.find(b"AA00", span[1])
            else:
                start = cls.find(b"AA00", start + 1)
        return out

    @staticmethod
    def _trim(text: str, s: int, e: int, cls: bytes) -> tuple[int, int] | None:
        candidate = text[s:e]
        expected = IBAN_LENGTHS.get(candidate[:2])
        if expected is None:
            return None
        # cut the candidate after `expected` alphanumerics (a following group is not part)
        count, end = 0, s
        for i, ch in enumerate(candidate):
            if ch != " ":
                count += 1
                if count == expected:
                    end = s + i + 1
                    break
        else:
            return None
        if end < len(cls) and cls[end] in _ALNUM_CLS:
            return None
        return (s, end) if iban_valid(text[s:end]) else None
