"""Which column and key names hold personal data or secrets, and the pseudonym TYPE of each.

A name is normalised into lowercase words (``customer_email``, ``"Email"``, ``phoneNumber``,
``c.full_name``, ``[birth_date]`` -> words), and is sensitive when one configured entry's words
start or end it (``email`` matches ``customer_email`` and ``email_address``). Two kinds of
name are *not* sensitive, because what they hold is not the person's value: a name ending in
a word that describes the value rather than being it (``account_id``, ``email_verified``,
``card_type``, ``phone_count``), and a name whose other words say it names a thing
(``table_name``, ``file_name``, ``product_name``). Surrogate keys such as ``account_id`` stay
readable on purpose: an auditor needs to see which account a step touched, and a value that
looks like a card number or IBAN is still masked by the recognizers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: default sensitive column names (configurable: ``AuditApp.sensitive_columns``)
DEFAULT_SENSITIVE_COLUMNS = (
    "email", "phone", "mobile", "ssn", "dob", "birth_date", "date_of_birth", "birthday",
    "name", "first_name", "last_name", "full_name", "surname", "address", "iban", "card",
    "cardholder", "account", "passport",
)  # fmt: skip
#: secret-looking key names added to the column names for keys (HTTP bodies, query strings)
SECRET_KEYS = (
    "password", "passwd", "pwd", "token", "api_key", "apikey", "secret", "authorization",
    "access_token", "refresh_token", "client_secret", "private_key",
)  # fmt: skip
DEFAULT_SENSITIVE_KEYS = DEFAULT_SENSITIVE_COLUMNS + SECRET_KEYS

# TYPE of the pseudonym by the entry that matched; other entries give their own words in
# upper case (``passport`` -> PASSPORT), secret keys give SECRET
_TYPES = {
    "email": "EMAIL", "phone": "PHONE", "mobile": "PHONE", "ssn": "SSN", "dob": "DOB",
    "birth_date": "DOB", "date_of_birth": "DOB", "birthday": "DOB", "name": "NAME",
    "first_name": "NAME", "last_name": "NAME", "full_name": "NAME", "surname": "NAME",
    "cardholder": "NAME", "address": "ADDRESS", "iban": "IBAN", "card": "CARD",
    "account": "ACCOUNT",
}  # fmt: skip
# last words that describe a value instead of being it
_NOT_VALUE = frozenset(
    """id ids uuid guid pk fk key count cnt num_of type kind status state verified confirmed
    valid validated present exists hash hashed length len format domain at on flag enabled
    source sources label scheme mask masked version policy""".split()
)
# words that make "... name" or "... address" the name of a thing
_THINGS = frozenset(
    """table column col schema database db file filename host hostname index constraint
    sequence view function func procedure product item type event job task field app
    application service project branch tag model feature module package class method
    attribute attr param parameter variable var sheet bucket queue topic metric dataset
    collection container image device server cluster node region zone role group team
    org organization company brand category screen""".split()
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SPLIT = re.compile(r"[^a-z0-9]+")
_TYPE_OK = re.compile(r"[A-Z_]+")


def words(name: str) -> tuple[str, ...]:
    """``c."customerEmail"`` -> ``("customer", "email")``: the last dotted part, unquoted,
    camelCase split, lowercased, split on anything but letters and digits."""
    name = name.strip().rsplit(".", 1)[-1].strip("\"'`[] ")
    return tuple(w for w in _SPLIT.split(_CAMEL.sub("_", name).lower()) if w)


def _type_of_entry(entry: str, secret: bool) -> str:
    if secret:
        return "SECRET"
    key = "_".join(words(entry))
    t = _TYPES.get(key) or key.upper()
    return t if _TYPE_OK.fullmatch(t) else "PII"


class SensitiveNames:
    """A set of sensitive names: :meth:`type_of` gives the pseudonym TYPE of a column or key
    name, or None when the name is not sensitive. ``secret`` entries give ``SECRET``."""

    def __init__(self, entries: Iterable[str], secret: Iterable[str] = ()) -> None:
        secret_set = {"_".join(words(s)) for s in secret}
        self.entries: dict[tuple[str, ...], str] = {}
        for entry in entries:
            if not isinstance(entry, str):
                raise TypeError(f"a sensitive name must be a string, not {entry!r}")
            w = words(entry)
            if not w:
                raise ValueError(f"a sensitive name needs a letter or digit: {entry!r}")
            self.entries[w] = _type_of_entry(entry, "_".join(w) in secret_set)
        # every word that starts an entry: a cheap screen of a text before parsing it
        firsts = sorted({w[0] for w in self.entries} | {w[-1] for w in self.entries})
        self.screen = re.compile("|".join(map(re.escape, firsts))) if firsts else None
        self._cache: dict[str, str | None] = {}

    def may_occur(self, lowered: str) -> bool:
        """False when no sensitive name can occur in the (lowercased) text."""
        return self.screen is not None and self.screen.search(lowered) is not None

    def type_of(self, name: str) -> str | None:
        cache = self._cache
        if name in cache:
            return cache[name]
        found = None
        if len(name) <= 128:
            w = words(name)
            found = self._match(w)
            if found is None and w and len(w[-1]) > 3 and w[-1].endswith("s"):
                found = self._match((*w[:-1], w[-1][:-1]))  # phones, emails, addresses
                if found is None and w[-1].endswith("es"):
                    found = self._match((*w[:-1], w[-1][:-2]))
        if len(cache) > 4096:
            cache.clear()
        cache[name] = found
        return found

    def _match(self, w: tuple[str, ...]) -> str | None:
        if not w:
            return None
        exact = self.entries.get(w)
        if exact is not None:
            return exact
        for entry, t in self.entries.items():
            n = len(entry)
            if n >= len(w):
                continue
            if w[-n:] == entry:
                rest = w[:-n]
            elif w[:n] == entry:
                rest = w[n:]
                if rest[-1] in _NOT_VALUE:
                    continue
            else:
                continue
            if any(r in _THINGS for r in rest):
                continue
            return t
        return None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state
