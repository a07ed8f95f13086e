"""Contact data: e-mail addresses and phone numbers.

This module must never mask what only looks like an address (``@property``, ``a@b``) nor a
number that only has as many digits as a phone number (order numbers, timestamps, seeds).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .base import EMAIL, PatternRecognizer, Recognizer
from .context import Context

# the local part, read backwards from the "@" on the reversed text
_LOCAL_REVERSED = re.compile(rb"[A-Za-z0-9._%+\-]{1,64}")
_DOMAIN = re.compile(
    rb"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}"
    rb"(?![A-Za-z0-9(-]|\.[A-Za-z0-9])"
)


class EmailRecognizer(Recognizer):
    """local@domain.tld -- found from each "@" (``@property`` and ``a@b`` are not emails)."""

    type = EMAIL
    priority = 30
    gate = "at"
    name = "email"

    def normalize(self, value: str) -> str:
        return value.lower()

    def find(self, ctx: Context) -> Iterable[tuple[int, int]]:
        ab = ctx.ab
        at = ab.find(b"@")
        out = []
        while at >= 0:
            m = _DOMAIN.match(ab, at + 1)
            if m is not None:
                local = _LOCAL_REVERSED.match(ab[max(0, at - 64) : at][::-1])
                if local is not None:
                    j = at - local.end()
                    while j < at and ab[j] == 0x2E:  # no leading dot
                        j += 1
                    if j < at:
                        out.append((j, m.end()))
                at = ab.find(b"@", m.end())
            else:
                at = ab.find(b"@", at + 1)
        return out


PHONE = "PHONE"

# The forms (searched only in a text that passes the gate "cluster", seven digits):
# The first character is consumed first (a character set: ``re`` then skips every position
# that cannot start a number at C speed); the branches look back at it.
_NANP_PAREN = r"[2-9][0-9]{2}\)[ ]?[2-9][0-9]{2}[ .-][0-9]{4}"  # after "(": 415) 555-2671
_PHONE = re.compile(
    rf"""
    [+(0-9](?<![\w.+/-].)(?<![0-9][ ][0-9(])
    (?:
        (?<=\+)(?P<intl>[1-9][0-9]{{0,2}}(?:[ .-]?\(0\))?
                         (?:[ -]?\(?[0-9]{{1,5}}\)?|\.[0-9]{{1,4}}(?![0-9])){{2,6}})
      | (?<=1)(?P<n1>[ .-](?:\({_NANP_PAREN}
                            |[2-9][0-9]{{2}}(?P<s1>[ .-])[2-9][0-9]{{2}}(?P=s1)[0-9]{{4}}))
      | (?<=\()(?P<n2>{_NANP_PAREN})
      | (?<=[2-9])(?P<n3>[0-9]{{2}}(?P<s3>[ .-])[2-9][0-9]{{2}}(?P=s3)[0-9]{{4}})
      | (?<=\()(?P<t1>0[1-9][0-9]{{0,4}}\)(?P<s4>[ /-])?[0-9]{{2,8}}
                    (?:(?(s4)(?P=s4)|[ /-])[0-9]{{2,8}}){{0,3}})
      | (?<=0)(?P<t2>[1-9][0-9]{{0,4}}(?:(?P<s5>[ /-])[0-9]{{2,8}}(?:(?P=s5)[0-9]{{2,8}}){{0,3}}
                                        |\.[0-9]{{2,4}}(?:\.[0-9]{{2,4}}){{0,3}}))
    )
    (?![\w]|[.-][0-9]|/[0-9]|:[0-9])
    """,
    re.X,
)
_MIN_MAX_DIGITS = {
    "intl": (8, 15), "n1": (11, 11), "n2": (10, 10), "n3": (10, 10), "t1": (10, 11), "t2": (10, 11)
}  # fmt: skip
_DIGIT = re.compile(r"[0-9]")


def _phone_digits(value: str) -> int:
    return len(_DIGIT.findall(value))


class PhoneRecognizer(Recognizer):
    """Phone numbers as people write them: E.164 (``+44 20 7946 0958``, ``+14155552671``),
    North American (``(415) 555-2671``, ``415-555-2671``, ``1-800-555-0199``) and national
    numbers with a trunk 0 and separators (``020 7946 0958``, ``01 23 45 67 89``,
    ``030/12345678``). A run of digits without separators or a leading "+" is a phone number
    only after its label (:data:`PHONE_LABELLED`): order numbers, timestamps, seeds and ids
    are not. Dates (``2024-01-15``, ``01.02.2024 10:30``) and dotted versions do not fit."""

    type = PHONE
    priority = 35
    gate = "cluster"
    name = "phone"
    screened = True

    def normalize(self, value: str) -> str:
        return ("+" if value.startswith("+") else "") + "".join(_DIGIT.findall(value))

    def may_match(self, ctx: Context) -> bool:
        return ctx.cluster

    def find(self, ctx: Context) -> Iterable[tuple[int, int]]:
        text, out = ctx.text, []
        search = _PHONE.search  # (the gate proved a run of seven digits)
        p = search(text)
        while p is not None:
            if self._valid(p):
                out.append(p.span())
            p = search(text, p.end())
        return out

    @staticmethod
    def _valid(p: re.Match) -> bool:
        lo, hi = _MIN_MAX_DIGITS[p.lastgroup or "intl"]
        return lo <= _phone_digits(p.group()) <= hi


#: a bare number right after a phone label: ``phone = "4155552671"``, ``tel: 02079460958``
PHONE_LABELLED = PatternRecognizer(
    PHONE,
    rb"(?<![a-z])(?:phone(?:[_ -]?(?:number|num|no))?|telephone|tel"
    rb"|mobile(?:[_ -]?(?:number|no|phone))?|cell(?:[_ -]?phone)?|fax|msisdn)(?![a-z0-9])"
    rb"[\"']?[ \t]*(?:[:=]|==|=>)[ \t]*[\"']?"
    rb"(\+?[0-9]{7,15})(?![0-9])",
    group=1,
    on="low",
    needles=("phone", "tel", "mobile", "cell", "fax", "msisdn"),
    haystack="low",
    anchored=True,
    gate="cluster",  # seven digits
    priority=35,
    name="phone-labelled",
)
