"""Recognizers: what the masking engine looks for.

A recognizer finds spans of a text and says what TYPE they are (``EMAIL``, ``CARD``, ``IBAN``,
``SECRET`` ...). The engine replaces accepted spans with keyed pseudonyms. Adding a recognizer
is a data entry in :data:`DEFAULT_RECOGNIZERS`; most are a :class:`PatternRecognizer` (TYPE,
compiled regex, optional validator, which group to replace) or a :class:`TokenRecognizer`
(a well-known token format with a literal prefix).

Performance model (this runs on every field of every event): in CPython's ``re``, a search
for a pattern that starts with a literal runs at C speed, while a pattern that starts with a
character class is tried at every position (an order of magnitude slower). ``bytes.translate``
and substring tests are also C speed. So every recognizer either starts with a literal or is
gated, and the gates are shared, lazily computed properties of the text (:class:`Context`):

- ``"longrun"``: the text has a run of at least 20 token characters ``[A-Za-z0-9_-]``, which
  every well-known token format (and a PEM body) has;
- ``"digits"``: the text has a digit (card numbers, IBANs);
- ``"at"``: the text has an ``@`` (e-mails, passwords in URLs).

``PatternRecognizer`` also takes ``needles``: literals of which one must occur in the text.
All views share the positions of the text (non-ASCII characters become ``?`` in the ASCII
view), so a span found on a view is a span of the text. The engine blanks existing pseudonyms
with NUL characters in the text it hands to recognizers; no built-in pattern matches across
a NUL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

__all__ = [
    "CARD",
    "DEFAULT_RECOGNIZERS",
    "EMAIL",
    "IBAN",
    "SECRET",
    "Context",
    "PatternRecognizer",
    "Recognizer",
    "GATES",
    "JwtRecognizer",
    "TokenRecognizer",
    "TokenScanner",
    "iban_valid",
    "is_secret_name",
    "luhn_valid",
]

SECRET = "SECRET"
EMAIL = "EMAIL"
CARD = "CARD"
IBAN = "IBAN"

#: A run of this many token characters gates the well-known token formats.
MIN_TOKEN_RUN = 20

# Views ------------------------------------------------------------------------------------

_TOKEN_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
# token characters -> "a", everything else -> " "
_T_TOK = bytes(0x61 if b in _TOKEN_CHARS else 0x20 for b in range(256))


def _cls(b: int) -> int:
    c = chr(b)
    if b < 128 and c.isupper():
        return ord("A")
    if b < 128 and c.islower():
        return ord("a")
    if b < 128 and c.isdigit():
        return ord("0")
    if c in " -.":
        return b
    return ord("_")


# character classes: upper -> "A", lower -> "a", digit -> "0", " ", "-" and "." kept,
# other -> "_"
_T_CLS = bytes(_cls(b) for b in range(256))
_RUN_NEEDLE = b"a" * MIN_TOKEN_RUN


class Context:
    """Per-call views of one text, computed lazily and shared by all recognizers.

    ``screen``: recognizers may skip work with exact pre-screens (a cheap test that proves
    their full search would find nothing). ``False`` runs every search in full; the engine
    uses that as the reference the tests compare the screened path with.
    """

    __slots__ = ("text", "n", "ab", "screen", "_low", "_cls", "_runs", "_digits")

    def __init__(self, text: str, screen: bool = True) -> None:
        self.text = text
        self.n = len(text)
        self.screen = screen
        # one byte per character, so positions are shared with ``text``
        self.ab = text.encode("ascii") if text.isascii() else text.encode("ascii", "replace")
        self._low: bytes | None = None
        self._cls: bytes | None = None
        self._runs: list[tuple[int, int]] | None = None
        self._digits: bool | None = None

    @property
    def low(self) -> bytes:
        """ASCII-lowercased view."""
        if self._low is None:
            self._low = self.ab.lower()
        return self._low

    @property
    def cls(self) -> bytes:
        """Character-class view (see ``_T_CLS``)."""
        if self._cls is None:
            self._cls = self.ab.translate(_T_CLS)
        return self._cls

    @property
    def runs(self) -> list[tuple[int, int]]:
        """(start, end) of every run of >= MIN_TOKEN_RUN token characters."""
        if self._runs is None:
            tok = self.ab.translate(_T_TOK)
            runs = []
            i = tok.find(_RUN_NEEDLE)
            while i >= 0:
                j = tok.find(b" ", i + MIN_TOKEN_RUN)
                if j < 0:
                    j = self.n
                runs.append((i, j))
                i = tok.find(_RUN_NEEDLE, j)
            self._runs = runs
        return self._runs

    @property
    def digits(self) -> bool:
        """True when the text has an ASCII digit (computes the class view)."""
        if self._digits is None:
            self._digits = self.cls.find(b"0") >= 0
        return self._digits

    def gate(self, name: str | None) -> bool:
        if name is None:
            return True
        if name == "longrun":
            return bool(self.runs)
        if name == "digits":
            return self.digits
        if name == "at":
            return "@" in self.text
        raise ValueError(f"unknown gate {name!r}")


GATES = (None, "longrun", "digits", "at")


_ALNUM = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


class Recognizer:
    """Base class: finds spans of one TYPE. Subclasses implement :meth:`find`.

    ``gate`` names a shared property of the text that must hold before :meth:`find` is
    called (``None``, ``"longrun"``, ``"digits"`` or ``"at"``); ``priority`` decides overlaps
    (higher wins; a SECRET span that overlaps is merged with what it overlaps instead, so a
    secret is never partly shown).
    """

    type: str = SECRET
    priority: int = 50
    gate: str | None = None
    name: str = ""

    def normalize(self, value: str) -> str:
        """The value the pseudonym is computed from (so equal values get equal pseudonyms)."""
        return value

    def find(self, ctx: Context) -> Iterable[tuple[int, int]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def collect(self, ctx: Context, out: list) -> None:
        for s, e in self.find(ctx):
            out.append((s, e, self))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name or self.type}>"


def _needles(needles: Iterable[str | bytes]) -> tuple[bytes, ...]:
    return tuple(n.encode("ascii") if isinstance(n, str) else bytes(n) for n in needles)


def _compile(pattern: str | bytes | re.Pattern, flags: int = 0) -> re.Pattern:
    return pattern if isinstance(pattern, re.Pattern) else re.compile(pattern, flags)


class PatternRecognizer(Recognizer):
    """TYPE + regex + optional validator + which group to replace.

    For speed, the pattern should start with a literal (CPython's ``re`` searches literal
    prefixes fast and tries every position otherwise), or be guarded by ``needles`` / ``gate``.
    ``on="low"`` runs a ``bytes`` pattern on the lowercased ASCII view (case-insensitive
    without ``re.IGNORECASE``, which is slow). ``after``: when given, the match must start the
    text or follow one of these characters. The validator receives the replaced text.
    """

    def __init__(
        self,
        type: str,
        pattern: str | bytes | re.Pattern,
        *,
        group: int | str = 0,
        validator: Callable[[str], bool] | None = None,
        needles: Iterable[str | bytes] = (),
        haystack: str = "ab",
        gate: str | None = None,
        on: str = "text",
        after: str | None = None,
        flags: int = 0,
        priority: int = 50,
        normalize: Callable[[str], str] | None = None,
        name: str = "",
    ) -> None:
        self.type = type.upper()
        self.pattern = _compile(pattern, flags)
        self.group = group
        self.validator = validator
        self.needles = _needles(needles)
        if haystack not in ("ab", "low") or on not in ("text", "low"):
            raise ValueError("haystack must be 'ab' or 'low', on must be 'text' or 'low'")
        if gate not in GATES:
            raise ValueError(f"gate must be one of {GATES}")
        self.haystack = haystack
        self.gate = gate
        self.on = on
        self.after = after
        self.priority = priority
        if normalize is not None:
            self.normalize = normalize  # type: ignore[method-assign]
        self.name = name or self.type

    def find(self, ctx: Context) -> Iterable[tuple[int, int]]:
        if self.needles:
            hay = ctx.ab if self.haystack == "ab" else ctx.low
            for needle in self.needles:
                if hay.find(needle) >= 0:  # cheaper than `in` on bytes
                    break
            else:
                return ()
        subject = ctx.text if self.on == "text" else ctx.low
        search = self.pattern.search
        m = search(subject)  # a search loop: cheaper than finditer when nothing matches
        if m is None:
            return ()
        out = []
        group, validator, text, after = self.group, self.validator, ctx.text, self.after
        while m is not None:
            start, end = m.span()
            if after is None or start == 0 or text[start - 1] in after:
                s, e = m.span(group)
                if s < e and (validator is None or validator(text[s:e])):
                    out.append((s, e))
            m = search(subject, end if end > start else end + 1)
        return out


class TokenRecognizer(Recognizer):
    """A well-known token format that starts with a literal prefix (``ghp_``, ``AKIA``...).

    Only runs of >= MIN_TOKEN_RUN token characters are searched for the prefixes (the engine
    scans all token recognizers in one pass over the runs, see :class:`TokenScanner`), and a
    match must not be glued to a preceding letter or digit (``task-...`` is no ``sk-`` key).
    """

    gate = "longrun"

    def __init__(
        self,
        type: str,
        prefixes: Iterable[str],
        pattern: str | re.Pattern,
        *,
        validator: Callable[[str], bool] | None = None,
        priority: int = 80,
        name: str = "",
    ) -> None:
        self.type = type.upper()
        self.prefixes = tuple(prefixes)
        self.pattern = _compile(pattern)
        self.validator = validator
        self.priority = priority
        self.name = name or self.prefixes[0]

    def match_at(self, ctx: Context, pos: int) -> tuple[int, int] | None:
        m = self.pattern.match(ctx.text, pos)
        if m is not None and (self.validator is None or self.validator(m.group())):
            return m.span()
        return None

    def find(self, ctx: Context) -> Iterable[tuple[int, int]]:
        out: list = []
        TokenScanner([self]).collect(ctx, out)
        return [(s, e) for s, e, _ in out]


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


_LONG_RUN = 96  # a token run at least this long is screened for its prefixes first


class TokenScanner(Recognizer):
    """Runs many :class:`TokenRecognizer` in one pass over the long token runs."""

    gate = "longrun"

    def __init__(self, recognizers: Iterable[TokenRecognizer]) -> None:
        self.recognizers = tuple(recognizers)
        self.by_prefix: dict[str, list[TokenRecognizer]] = {}
        for rec in self.recognizers:
            for prefix in rec.prefixes:
                self.by_prefix.setdefault(prefix, []).append(rec)
        # longest first, so "github_pat_" is not shadowed by a shorter prefix
        self.prefixes = tuple(sorted(self.by_prefix, key=len, reverse=True))
        self.prefix_re = self._prefix_re(self.prefixes)
        self._res: dict[tuple[str, ...], re.Pattern] = {}
        self.name = "tokens"

    @staticmethod
    def _prefix_re(prefixes: tuple[str, ...]) -> re.Pattern:
        return re.compile("|".join(map(re.escape, prefixes)))

    def _search_in(self, text: str, start: int, end: int):
        """The prefix search for one run. An alternation of many prefixes is tried at every
        position whose character starts one of them (~15 ns a character); in a long run,
        ``str.find`` first tells which prefixes occur at all (~1 ns a character each), and the
        alternation of only those (in the same order) finds the same matches."""
        if end - start < _LONG_RUN:
            return self.prefix_re.search
        present = tuple(p for p in self.prefixes if text.find(p, start, end) >= 0)
        if not present:
            return None
        pattern = self._res.get(present)
        if pattern is None:
            if len(self._res) > 256:
                self._res.clear()
            pattern = self._res[present] = self._prefix_re(present)
        return pattern.search

    def collect(self, ctx: Context, out: list) -> None:
        ab, by_prefix = ctx.ab, self.by_prefix
        for start, end in ctx.runs:
            if ctx.screen:
                search = self._search_in(ctx.text, start, end)
                if search is None:
                    continue
            else:
                search = self.prefix_re.search
            m = search(ctx.text, start, end)
            while m is not None:
                pos = m.start()
                if pos == 0 or ab[pos - 1] not in _ALNUM:
                    for rec in by_prefix[m.group()]:
                        span = rec.match_at(ctx, pos)
                        if span is not None:
                            out.append((span[0], span[1], rec))
                            break
                m = search(ctx.text, m.end(), end)


# Validators ---------------------------------------------------------------------------------


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


# Secret names --------------------------------------------------------------------------------

# A name is secret when, lowercased with separators removed (and neutral trailing words such as
# "value" or "prod" dropped), it ends with one of these ...
_KEY_QUALIFIERS = (
    "api", "access", "private", "secret", "account", "master", "encryption", "signing",
    "session", "subscription", "client", "app", "auth", "shared", "storage", "license",
    "consumer", "service", "webhook", "admin",
)  # fmt: skip
SECRET_NAME_SUFFIXES = (
    "password", "passwords", "passwd", "passphrase", "pwd", "secret", "secrets", "token",
    "authorization", "auth", "credential", "credentials", "creds", "cookie", "cookies",
    "sessionid", "sessid", "signature", "privkey",
) + tuple(q + "key" for q in _KEY_QUALIFIERS)  # fmt: skip
# ... or when its last word is one of these ...
SECRET_NAME_WORDS = frozenset({"pass", "pw", "sig"})
# ... unless it ends with one of these (tokenizer special tokens are not secrets).
NOT_SECRET_SUFFIXES = (
    "eostoken", "bostoken", "padtoken", "unktoken", "septoken", "clstoken", "masktoken",
    "nostoken", "startoken",
)  # fmt: skip
_NEUTRAL_WORDS = frozenset(
    """value val str string text txt raw b64 base64 hex plain plaintext clear cleartext bytes
    data enc encoded hash hashed env var header headers hdr literal input new old orig original
    current cur tmp temp default prod production dev development staging stage test testing
    local live qa sandbox""".split()
)
_NAME_SPLIT = re.compile(r"[^a-z0-9]+")
_name_cache: dict[str, bool] = {}


def is_secret_name(name: str) -> bool:
    """True when a key / variable / header / parameter name denotes a secret.

    ``password``, ``DB_PASSWORD``, ``PGPASSWORD``, ``X-Api-Key``, ``clientSecret``,
    ``session_id``, ``Authorization``, ``--token``, ``secret_value`` -> True;
    ``token_id``, ``auth_method``, ``tokenizer``, ``max_tokens``, ``password_file``,
    ``eos_token`` -> False.
    """
    cached = _name_cache.get(name)
    if cached is not None:
        return cached
    result = False
    if len(name) <= 128:
        words = [w for w in _NAME_SPLIT.split(name.lower()) if w]
        while words and (words[-1] in _NEUTRAL_WORDS or words[-1].isdigit()):
            words.pop()
        if words:
            if words[-1] in SECRET_NAME_WORDS:
                result = True
            else:
                squashed = "".join(words).rstrip("0123456789")
                result = squashed.endswith(SECRET_NAME_SUFFIXES) and not squashed.endswith(
                    NOT_SECRET_SUFFIXES
                )
    if len(_name_cache) > 8192:
        _name_cache.clear()
    _name_cache[name] = result
    return result


# Secret assignments ---------------------------------------------------------------------------

# Every secret name contains one of these stems (token, key, cookie / pass, pw / secret, sess,
# sig / auth / cred). Each regex starts with a literal, so ``re`` scans for it at C speed.
_STEMS = tuple(
    re.compile(p)
    for p in (
        rb"k(?:ey|en|ie)",
        rb"p(?:ass(?:w|p|(?![a-z]))|w)",  # not "passenger"
        rb"s(?:ecret|ess(?:ion)?[_-]?(?:id|key)|ig(?:nature)?(?![a-z]))",  # not "signup"
        rb"auth",
        rb"cred(?:s|ential)",  # not "credit"
    )
)
_NAME_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_.-")
_NAME_FWD = re.compile(rb"[a-z0-9_.\-]{0,128}")

_SCHEME = r"(?:(?i:bearer|basic|token|digest|bot|negotiate|ntlm|jwt|apikey|sswss)[ \t]+)?+"
_STR_PREFIX = r"(?:[rRbBuUfF]{1,2}(?=[\"']))?+"
# an opening quote that is not the closing quote of a prompt: "Password: ")
_OPEN_Q = r"(?![ \t]*(?:[),;+\]}%\r\n\x00]|\Z))"
# what follows the name: closing quote of a quoted name, then a separator
_SEP = r"""
    (?:\\?["'])?
    (?>                                                                  # atomic: no retry
        [ \t]*:[ \t]*[A-Za-z_][\w.\[\], |]{0,60}?[ \t]+=(?![=>])[ \t]*   # name: type = value
      | [ \t]*(?:=>|[=!]=|:=|[=:])[ \t]*                                 # = : == != := =>
      | [ \t]+(?=[rRbBuUfF]{0,2}\\?["'])                                 # SQL: PASSWORD 'x'
    )
"""
# the value; exactly one of the named groups matches
_VALUE = rf"""
    (?:
        \\"{_SCHEME}(?P<e>(?:[^"\\\n\x00]|\\(?!"))*+)                   # \"escaped\"
      | \\'{_SCHEME}(?P<f>(?:[^'\\\n\x00]|\\(?!'))*+)
      | {_STR_PREFIX}\"\"\"(?P<t>(?:[^"\\\x00]|\\[^\n\x00]|"(?!""))*+)     # triple quotes
      | {_STR_PREFIX}'''(?P<r>(?:[^'\\\x00]|\\[^\n\x00]|'(?!''))*+)
      | {_STR_PREFIX}"{_OPEN_Q}{_SCHEME}(?P<d>(?:[^"\\\n\x00]|\\[^\n\x00])*+)
      | {_STR_PREFIX}'{_OPEN_Q}{_SCHEME}(?P<s>(?:[^'\\\n\x00]|\\[^\n\x00])*+)
      | \{{(?P<b>[^}}\n\x00]*+)                                          # ODBC {{...}}, dicts
      | \((?P<p>[^()\n\x00]*+)\)                                         # ("user", "pass")
      | (?P<c>[A-Za-z_][\w.]*+)\((?P<a>[^()\n\x00]*+)\)                  # call("...")
      | {_SCHEME}(?![=:]|[rRbBuUfF]{{1,2}}["'])                             # unquoted
        (?P<u>[^\s"'`,;&(){{}}\[\]<>\\\x00]++)(?![(\[])
    )
"""
_ASSIGN_TAIL = re.compile(_SEP + _VALUE, re.X)
_CLI_TAIL = re.compile(r"(?:[ \t]+|=)" + _VALUE, re.X)  # --password hunter2
_LINE_REST = re.compile(r"[^\r\n\"'\\\x00]*")
_VALUE_GROUPS = ("e", "f", "t", "r", "d", "s", "b", "p", "a", "u")
_NOT_VALUES = frozenset(
    "none null true false nil undefined nan yes no on off required optional str bytes".split()
)
# calls whose arguments name where a secret comes from rather than the secret itself
_SAFE_CALLS = frozenset(
    """getpass getenv get input get_password get_secret getsecret read read_text load loads
    open environ prompt ask secret_from_env from_env lookup fetch""".split()
)
_LINE_VALUE_SUFFIXES = ("cookie", "cookies", "authorization")


class SecretAssignmentRecognizer(Recognizer):
    """``password = "hunter2"``, ``"client_secret": "..."``, ``--token x``, ``PGPASSWORD=...``,
    ``Authorization: Bearer ...``, ``?api_key=...&sig=...``, ``Pwd=...;``, ``PASSWORD 'x'``.

    Finds the stems (``pass``, ``token``, ``key``...) in the lowercased view, widens each to the
    surrounding name, classifies the name with :func:`is_secret_name`, then matches a separator
    and a value after it. Only the value is replaced; the name and separator stay.
    """

    type = SECRET
    priority = 90
    name = "assignment"

    def find(self, ctx: Context) -> Iterable[tuple[int, int]]:
        low = ctx.low
        positions: list[int] = []
        for stem in _STEMS:
            m = stem.search(low)  # cheaper than finditer when there is nothing
            if m is not None:
                positions.append(m.start())
                positions.extend(x.start() for x in stem.finditer(low, m.end()))
        if not positions:
            return ()
        positions.sort()
        text, out, done = ctx.text, [], -1
        for p in positions:
            if p < done:
                continue
            j, floor = p, max(0, p - 128)
            while j > floor and low[j - 1] in _NAME_BYTES:
                j -= 1
            k = _NAME_FWD.match(low, p).end()
            done = k
            name = text[j:k].strip(".")
            if not name or not is_secret_name(name):
                continue
            m = _ASSIGN_TAIL.match(text, k)
            if m is None and low.startswith(b"--", j):
                m = _CLI_TAIL.match(text, k)
            if m is None:
                continue
            span = self._value_span(m, name)
            if span is not None:
                out.append(span)
                done = max(done, span[1])
        return out

    @staticmethod
    def _value_span(m: re.Match, name: str) -> tuple[int, int] | None:
        for g in _VALUE_GROUPS:
            s = m.start(g)
            if s >= 0:
                break
        else:  # pragma: no cover - the pattern always sets one group
            return None
        e = m.end(g)
        if s >= e:
            return None
        value = m.string[s:e]
        if g == "u":
            if value.lower() in _NOT_VALUES:
                return None
            if name.lower().replace("-", "_").endswith(_LINE_VALUE_SUFFIXES):
                e = _LINE_REST.match(m.string, e).end()  # Cookie: a=1; b=2 -> whole line
        elif g == "a":
            callee = m.group("c").rsplit(".", 1)[-1].lower()
            if callee in _SAFE_CALLS or not ('"' in value or "'" in value):
                return None
        return s, e


# Email ------------------------------------------------------------------------------------------

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


# Card numbers ----------------------------------------------------------------------------------

# on the class view: a run of digits, single spaces or dashes between them allowed
_DIGIT_RUN = re.compile(rb"000(?:[ -]?0){10,}+")
# A pre-screen at C speed: a run that ``find`` could accept (see there) is not glued to a
# letter or a digit on its left, is no decimal fraction ("0.<run>"), and is followed neither
# by a letter nor by a decimal point and a digit. A run that ``find`` accepts is always found
# by this pattern at the same start (the first digit of a run that ``_DIGIT_RUN`` reports never
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
        cls, text, out = ctx.cls, ctx.text, []
        if ctx.screen and _CARD_SCREEN.search(cls) is None:
            return out
        n = ctx.n
        search = _DIGIT_RUN.search
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

# IBAN -----------------------------------------------------------------------------------------

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


# Well-known formats ----------------------------------------------------------------------------


_A_DIGIT = re.compile(r"[0-9]")
_A_LETTER = re.compile(r"[A-Za-z]")


def _has_digit_and_letter(value: str) -> bool:
    """An ``sk-`` key has both (``sk-learn-tutorial-for-beginners`` is no key)."""
    return _A_DIGIT.search(value, 3) is not None and _A_LETTER.search(value, 3) is not None


DEFAULT_RECOGNIZERS: list[Recognizer] = [
    # PEM private key blocks, whole (to the end of the text when the END line is missing)
    PatternRecognizer(
        SECRET,
        r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
        r"(?:[^\x00]*?-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|[^\x00]*)",
        gate="longrun",  # the base64 body
        needles=("PRIVATE KEY",),
        priority=100,
        name="pem",
    ),
    SecretAssignmentRecognizer(),
    # scheme://user:password@host -- only the password
    PatternRecognizer(
        SECRET,
        r"://[^\s/?#@:\"'<>\x00]{0,256}:([^\s/?#\"'<>\x00]{1,512})@",
        group=1,
        gate="at",
        priority=85,
        name="url-password",
    ),
    # curl -u user:password / --user user:password
    PatternRecognizer(
        SECRET,
        r"-(?:u|-user)[ \t]+[\"']?[^\s:\"'\x00]{1,256}:([^\s\"'\x00]{1,1024})",
        group=1,
        after=" \t\r\n\"'\x00",
        priority=85,
        name="curl-user",
    ),
    # SQL: CREATE USER x IDENTIFIED BY 'secret'
    PatternRecognizer(
        SECRET,
        rb"identified[ \t\r\n]+by[ \t\r\n]+(?:password[ \t\r\n]+)?(['\"])([^'\"\n\x00]*)\1",
        group=2,
        on="low",
        priority=85,
        name="sql-identified-by",
    ),
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
    IbanRecognizer(),
    CardRecognizer(),
    EmailRecognizer(),
]
"""The first engine's recognizers (order does not matter: overlaps are decided by priority)."""


# Pre-screen of the default set ---------------------------------------------------------------

# a literal that every match of each stem in ``_STEMS`` (and "identified") contains
_STEM_LITERALS = ("key", "ken", "kie", "pass", "pw", "secret", "sess", "sig", "auth", "cred")
_STEM_LITERALS += ("identified",)


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
    if cls.find(b"AA00") >= 0 or _DIGIT_RUN.search(cls) is not None:
        return True
    return ctx.ab.translate(_T_TOK).find(_RUN_NEEDLE) >= 0


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
