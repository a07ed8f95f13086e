"""Recognizers: what they are, and the generic kinds most of them are built from.

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

The recognizers themselves live by what they find: `checksums` (card numbers, IBANs),
`assignments` (secrets by their name), `formats` (secrets by their form: keys, tokens,
passwords in URLs and commands), `contact` (e-mail addresses); `recognizers` assembles the
default set. This module holds no recognizer of a particular kind and must never import one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from .context import GATES, Context

# the TYPEs of the built-in recognizers
SECRET = "SECRET"
EMAIL = "EMAIL"
CARD = "CARD"
IBAN = "IBAN"

#: A pseudonym token. Text matching it passes through masking unchanged.
MASKED_RE = re.compile(r"‹[A-Z_]+:[0-9a-f]{16}›")

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
    #: True when :meth:`may_match` is an exact pre-screen: it never says False for a text in
    #: which :meth:`find` would find something (the engine's quick path relies on it)
    screened: bool = False

    def may_match(self, ctx: Context) -> bool:
        """A cheap necessary condition for :meth:`find` to find anything (see ``screened``)."""
        return True

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


class ClsScreen:
    """A pre-screen: one of these ``bytes`` regexes (each starting with a literal, so each
    search runs at C speed; an alternation of them would not) finds something in the
    character-class view. (A class rather than a closure: engines are pickled for the
    prepare workers.)"""

    def __init__(self, *patterns: bytes) -> None:
        self.searches = tuple(re.compile(p).search for p in patterns)

    def __getstate__(self) -> dict:
        return {"patterns": [s.__self__.pattern for s in self.searches]}  # type: ignore[attr-defined]

    def __setstate__(self, state: dict) -> None:
        self.__init__(*state["patterns"])  # type: ignore[misc]

    def __call__(self, ctx: Context) -> bool:
        cls = ctx.cls
        for search in self.searches:
            if search(cls) is not None:
                return True
        return False


class TextHas:
    """A pre-screen: the text contains this substring (``"-p"``), or with ``digits=True`` an
    ASCII digit (the context's shared flag)."""

    def __init__(self, substring: str = "", *, digits: bool = False) -> None:
        self.substring = substring
        self.digits = digits

    def __call__(self, ctx: Context) -> bool:
        if self.digits and not ctx.digits:
            return False
        return self.substring in ctx.text


def _needles(needles: Iterable[str | bytes]) -> tuple[bytes, ...]:
    return tuple(n.encode("ascii") if isinstance(n, str) else bytes(n) for n in needles)


def _compile(pattern: str | bytes | re.Pattern, flags: int = 0) -> re.Pattern:
    return pattern if isinstance(pattern, re.Pattern) else re.compile(pattern, flags)


class PatternRecognizer(Recognizer):
    """TYPE + regex + optional validator + which group to replace.

    For speed, the pattern should start with a literal (CPython's ``re`` searches literal
    prefixes fast and tries every position otherwise), or be guarded by ``needles`` / ``gate``.
    ``on="low"`` runs a ``bytes`` pattern on the lowercased ASCII view (case-insensitive
    without ``re.IGNORECASE``, which is slow), ``on="cls"`` on the character-class view
    (digits ``0``, letters ``A``/``a``: fixed formats such as ``000-00-0000`` start with a
    literal there). With ``needles`` (one of them must occur) or ``screen`` (an exact
    pre-screen of the text), the recognizer is ``screened``; ``anchored=True`` tries the
    pattern only where a needle starts (the pattern must start with one).
    ``after``: when given, the match must start the
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
        screen: Callable[[Context], bool] | None = None,
        anchored: bool = False,
        name: str = "",
    ) -> None:
        self.type = type.upper()
        self.pattern = _compile(pattern, flags)
        self.screen = screen
        self.group = group
        self.validator = validator
        self.needles = _needles(needles)
        if haystack not in ("ab", "low") or on not in ("text", "low", "cls"):
            raise ValueError("haystack must be 'ab' or 'low', on must be 'text', 'low' or 'cls'")
        if gate not in GATES:
            raise ValueError(f"gate must be one of {GATES}")
        self.haystack = haystack
        self.gate = gate
        self.on = on
        self.after = after
        self.priority = priority
        if normalize is not None:
            self.normalize = normalize  # type: ignore[method-assign, assignment]
        self.name = name or self.type
        self.screened = bool(self.needles) or screen is not None
        if anchored and not self.needles:
            raise ValueError("anchored needs needles")
        self.anchored = anchored
        # decided once, not at every call: whether `collect` may do `find`'s work inline
        self._inline = self.__class__.find is PatternRecognizer.find

    def may_match(self, ctx: Context) -> bool:
        if self.screen is not None and not self.screen(ctx):
            return False
        if not self.needles:
            return True
        hay = ctx.ab if self.haystack == "ab" else ctx.low
        for needle in self.needles:
            if hay.find(needle) >= 0:  # cheaper than `in` on bytes
                return True
        return False

    def collect(self, ctx: Context, out: list) -> None:
        # (find's work inlined: this runs for every recognizer on every text that gets here)
        if not self._inline:  # a subclass finds its own way
            Recognizer.collect(self, ctx, out)
            return
        needles = self.needles
        if needles:  # (an anchored search finds them again: a needle is rare, a call is not)
            hay = ctx.ab if self.haystack == "ab" else ctx.low
            for needle in needles:
                if hay.find(needle) >= 0:
                    break
            else:
                return
        if self.screen is not None and not self.screen(ctx):
            return
        for s, e in self._find(ctx):
            out.append((s, e, self))

    def find(self, ctx: Context) -> Iterable[tuple[int, int]]:
        if self.screened and not self.may_match(ctx):
            return ()
        return self._find(ctx)

    def _find(self, ctx: Context) -> Iterable[tuple[int, int]]:
        on = self.on
        subject = ctx.text if on == "text" else ctx.low if on == "low" else ctx.cls
        if self.anchored:
            return self._find_anchored(ctx, subject)
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

    def _find_anchored(self, ctx: Context, subject: str | bytes) -> list[tuple[int, int]]:
        """The pattern tried only where a needle occurs (a label such as ``dob`` that the
        pattern starts with): a pattern that starts with a lookbehind or an alternation is
        otherwise tried at every position of the text."""
        hay = ctx.ab if self.haystack == "ab" else ctx.low
        match, group, validator, text = self.pattern.match, self.group, self.validator, ctx.text
        found: set[tuple[int, int]] = set()
        for needle in self.needles:
            pos = hay.find(needle)
            while pos >= 0:
                m = match(subject, pos)
                if m is not None:
                    s, e = m.span(group)
                    if s < e and (validator is None or validator(text[s:e])):
                        found.add((s, e))
                pos = hay.find(needle, pos + 1)
        return sorted(found)


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

    def _search_in(
        self, text: str, start: int, end: int
    ) -> Callable[[str, int, int], re.Match[str] | None] | None:
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
