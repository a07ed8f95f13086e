"""The masking engine: replaces PII and secrets with keyed pseudonyms ``‹TYPE:16 hex›``.

One engine lives in the server; the Writer applies :meth:`MaskingEngine.mask` to every field
before it is stored, logged, shown or exported. The pseudonym of a value is the first 64 bits
of ``HMAC-SHA256(key, TYPE + "\\x00" + value)``: the same value gives the same pseudonym under
one key (an auditor sees that two steps touched the same value) and an unrelated one under
another key.
"""

from __future__ import annotations

import hmac
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable
from operator import itemgetter

from .assignments import is_secret_name
from .base import MASKED_RE, SECRET, Recognizer, TokenRecognizer, TokenScanner
from .context import GATES, Context
from .recognizers import (
    DEFAULT_RECOGNIZERS,
    default_may_match,
    quick_screen,
    screened_by_default,
)
from .structured import StructureMasker

__all__ = ["MASKED_RE", "MaskingEngine", "MaskingError"]

_TYPE_RE = re.compile(r"[A-Z_]+")
_OPEN, _CLOSE = "‹", "›"
#: Type used when masking a text failed internally: the whole text is replaced.
WITHHELD = "WITHHELD"
_MIN_KEY_BYTES = 16
_MAX_DEPTH = 200
_SHORT = 5  # no recognizer matches fewer characters
_MAX_PASSES = 8
# Texts up to this long are first checked with `default_may_match` (on a long text the
# recognizers' own gates and searches cost about as much and most code passes it anyway)
_QUICK_MAX_LEN = 512


class MaskingError(Exception):
    """Misuse of the masking API (bad key, key file, type name or value type)."""


class _TwoGenerationCache:
    """A bounded dict with LRU-ish eviction: entries live in a young and an old generation;
    when the young one is full (``limit / 2`` entries, or ``max_chars / 2`` characters of
    keys when ``max_chars`` is given) it becomes the old one (the previous old one is dropped),
    and a hit in the old generation is promoted. Safe enough under the GIL without a lock."""

    __slots__ = ("young", "old", "limit", "max_chars", "chars")

    def __init__(self, limit: int, max_chars: int = 0) -> None:
        self.young: dict = {}
        self.old: dict = {}
        self.limit = max(1, limit // 2)
        self.max_chars = max_chars // 2
        self.chars = 0  # characters of the keys in the young generation

    def get(self, key):
        value = self.young.get(key)
        if value is None:
            value = self.old.get(key)
            if value is not None:
                self.put(key, value)
        return value

    def put(self, key, value) -> None:
        young = self.young
        if len(young) >= self.limit or (self.max_chars and self.chars >= self.max_chars):
            self.old = young
            young = self.young = {}
            self.chars = 0
        young[key] = value
        if self.max_chars:
            self.chars += len(key) + (0 if value is key else len(value))

    def clear(self) -> None:
        self.young, self.old = {}, {}
        self.chars = 0

    def __len__(self) -> int:
        return len(self.young) + len(self.old)


class MaskingEngine:
    """Masks text and JSON-like values with keyed pseudonyms.

    ``recognizers`` replaces the default recognizer list (:data:`DEFAULT_RECOGNIZERS`);
    ``extra_recognizers`` are added to it. ``result_cache_size`` bounds the number of masked
    texts remembered (0 disables the cache: statements and cells recur, and masking is a pure
    function of the text under one key), ``result_cache_max_len`` the length of a text worth
    remembering and ``result_cache_chars`` the characters they hold in all (memory; texts
    masked once wait for a second occurrence in a probation cache of half as many);
    ``pseudonym_cache_size`` bounds the cache of pseudonyms. ``prescreen=False`` runs every
    recognizer's full search even where an exact pre-screen proves it would find nothing (the
    reference the tests compare the screened path with; the output is the same).
    ``sensitive_columns`` and ``sensitive_keys`` name the SQL/table columns and HTTP keys
    whose values :meth:`mask_structure` masks (None: the defaults of `structured.names`).
    ``allow`` tells values that are never masked (see `config.AllowList`).
    """

    def __init__(
        self,
        key: bytes,
        recognizers: Iterable[Recognizer] | None = None,
        *,
        extra_recognizers: Iterable[Recognizer] = (),
        pseudonym_cache_size: int = 65536,
        result_cache_size: int = 8192,
        result_cache_max_len: int = 8192,
        result_cache_chars: int = 8_000_000,
        prescreen: bool = True,
        sensitive_columns: Iterable[str] | None = None,
        sensitive_keys: Iterable[str] | None = None,
        allow: Callable[[str], bool] | None = None,
    ) -> None:
        if isinstance(key, bytearray | memoryview):
            key = bytes(key)
        if not isinstance(key, bytes):
            raise MaskingError(
                f"the pseudonym key must be bytes, not {type(key).__name__} "
                "(use load_or_create_key())"
            )
        if len(key) < _MIN_KEY_BYTES:
            raise MaskingError(
                f"the pseudonym key is {len(key)} bytes; at least {_MIN_KEY_BYTES} are required"
            )
        self._key = key
        recs = list(DEFAULT_RECOGNIZERS if recognizers is None else recognizers)
        recs.extend(extra_recognizers)
        for rec in recs:
            if not isinstance(rec, Recognizer):
                raise MaskingError(f"not a Recognizer: {rec!r}")
            if not _TYPE_RE.fullmatch(rec.type):
                raise MaskingError(f"recognizer type must match [A-Z_]+: {rec.type!r}")
            if rec.gate not in GATES:
                raise MaskingError(f"recognizer gate must be one of {GATES}: {rec.gate!r}")
        self.recognizers: tuple[Recognizer, ...] = tuple(sorted(recs, key=lambda r: -r.priority))
        # Recognizers grouped by gate, each gate evaluated at most once per text; all token
        # recognizers share one scan of the long token runs.
        tokens = [r for r in recs if isinstance(r, TokenRecognizer)]
        others = [r for r in recs if not isinstance(r, TokenRecognizer)]
        groups: dict[str | None, list[Recognizer]] = {}
        for rec in others:
            groups.setdefault(rec.gate, []).append(rec)
        if tokens:
            groups.setdefault("longrun", []).append(TokenScanner(tokens))
        self._groups = tuple((gate, tuple(rs)) for gate, rs in groups.items())
        # the groups without the recognizers `default_may_match` covers: all that can find
        # anything in a text it says no to (each of these screens itself in `collect`)
        self._uncovered = tuple(
            (gate, rs)
            for gate, rs in (
                (gate, tuple(r for r in rs if not _covered(r))) for gate, rs in self._groups
            )
            if rs
        )
        self._pseudonyms = _TwoGenerationCache(pseudonym_cache_size)
        self._results = (
            _TwoGenerationCache(result_cache_size, result_cache_chars)
            if result_cache_size
            else None
        )
        self._result_max_len = result_cache_max_len
        self._allow = allow
        # texts masked once, with their masked form: a text moves to the result cache when it
        # comes again (not masked a second time), so one-off texts (ids, urls, request
        # bodies) only ever push other one-off texts out of probation, never recurring ones
        self._probation = _TwoGenerationCache(
            max(1, result_cache_size // 2), max(1, result_cache_chars // 2)
        )
        self._screen = bool(prescreen)
        # a short text is first checked against what the recognizers need at all, when that
        # check covers every one of them (the default set does): `default_may_match` for
        # those it covers, the others' own exact screens for the rest (`QuickScreen`)
        self._quick = quick_screen(recs) if self._screen else None
        # the shortcut for tiny texts knows the default recognizers and the token formats
        self._tiny_exit = all(
            isinstance(r, TokenRecognizer) or any(r is d for d in DEFAULT_RECOGNIZERS) for r in recs
        )
        # dict key -> (masked key, names a secret): keys recur in every event
        self._keys: dict[str, tuple[str, bool]] = {}
        self._structure = StructureMasker(sensitive_columns, sensitive_keys)

    def __repr__(self) -> str:
        return f"<MaskingEngine recognizers={len(self.recognizers)}>"  # never show the key

    @property
    def key_id(self) -> str:
        """16 hex characters naming the pseudonym key (an HMAC of a fixed text under it, which
        no pseudonym's input can equal: TYPEs are upper case): the trail records which key
        is in use (``masking.key_rotated``) without revealing anything about it."""
        return hmac.digest(self._key, b"jupyter-audit masking key id", "sha256")[:8].hex()

    def __getstate__(self) -> dict:
        """Pickled (for prepare workers) without its caches: a fresh engine, same key."""
        state = dict(self.__dict__)
        state["_pseudonyms"] = _TwoGenerationCache(self._pseudonyms.limit * 2)
        if self._results is not None:
            state["_results"] = _TwoGenerationCache(
                self._results.limit * 2, self._results.max_chars * 2
            )
        state["_probation"] = _TwoGenerationCache(
            self._probation.limit * 2, self._probation.max_chars * 2
        )
        state["_keys"] = {}
        return state

    # Pseudonyms ---------------------------------------------------------------------------

    def pseudonym(self, type: str, value: str | bytes) -> str:
        """``‹TYPE:xxxxxxxxxxxxxxxx›`` for ``value``: 16 lowercase hex characters, the first
        64 bits of HMAC-SHA256(key, TYPE + "\\x00" + value)."""
        if not isinstance(type, str) or not _TYPE_RE.fullmatch(t := type.upper()):
            raise MaskingError(f"pseudonym type must match [A-Z_]+: {type!r}")
        if isinstance(value, bytes | bytearray):
            msg = t.encode("ascii") + b"\x00" + bytes(value)
            return f"{_OPEN}{t}:{hmac.digest(self._key, msg, 'sha256')[:8].hex()}{_CLOSE}"
        if not isinstance(value, str):
            raise MaskingError(
                f"pseudonym value must be str or bytes, not {value.__class__.__name__}"
            )
        return self._pseudonym(t, value)

    def _pseudonym(self, t: str, value: str) -> str:
        cache_key = t + "\x00" + value
        token = self._pseudonyms.get(cache_key)
        if token is None:
            digest = hmac.digest(self._key, cache_key.encode("utf-8", "surrogatepass"), "sha256")
            token = f"{_OPEN}{t}:{digest[:8].hex()}{_CLOSE}"
            if len(value) <= 256:
                self._pseudonyms.put(cache_key, token)
        return token

    # Text ------------------------------------------------------------------------------------

    def mask_text(self, text: str) -> str:
        """``text`` with every recognized value replaced by its pseudonym.

        Never raises for a ``str`` (if masking fails internally the whole text is replaced
        by a ``‹WITHHELD:…›`` pseudonym); idempotent; existing pseudonyms pass unchanged.
        """
        if type(text) is not str:
            if not isinstance(text, str):
                raise MaskingError(f"mask_text expects str, not {type(text).__name__}")
            text = str(text)
        n = len(text)
        if n < _SHORT:
            return text
        results = self._results
        if results is not None and n <= self._result_max_len:
            cached = results.get(text)
            if cached is not None:
                return cached
            cached = self._probation.get(text)
            if cached is not None:  # its second occurrence: remembered from now on
                results.put(text, cached)
                return cached
        try:
            out = self._mask_to_fixed_point(text)
        except Exception:  # noqa: BLE001 - never let a field through unmasked
            out = self._pseudonym(WITHHELD, text)
        if results is not None and n <= self._result_max_len:
            self._probation.put(text, out)
        return out

    def _mask_to_fixed_point(self, text: str) -> str:
        """Mask, then mask the result again until nothing changes.

        A replacement changes what its neighbours see (an e-mail's local part can no longer
        reach back into a card number), so a second pass may find more; iterating makes
        ``mask_text`` idempotent by construction. Clean text (the common case) takes a single
        pass; every further pass replaces at least one more character, so this terminates.
        """
        out = self._mask_once(text)
        if out is text:
            return text
        for _ in range(_MAX_PASSES):
            again = self._mask_once(out)
            if again is out:
                break
            out = again
        return out

    def _mask_once(self, text: str) -> str:
        """One pass of all recognizers; ``text`` itself when nothing was found."""
        cands = self._spans(text)
        if not cands:
            return text
        parts, pos = [], 0
        pseudonym = self._pseudonym
        for s, e, rec in cands:
            parts.append(text[pos:s])
            value = text[s:e]
            if rec is None:
                parts.append(pseudonym(SECRET, value))
            else:
                parts.append(pseudonym(rec.type, rec.normalize(value)))
            pos = e
        parts.append(text[pos:])
        return "".join(parts)

    def analyze(self, text: str) -> list[tuple[int, int, str, str]]:
        """What one pass of :meth:`mask_text` replaces: ``(start, end, TYPE, recognizer
        name)`` in text order (name ``"merged"`` for overlapping spans merged into one SECRET).
        For measurements (benchmarks/bench_masking.py); the trail only ever gets masked text."""
        if not isinstance(text, str):
            raise MaskingError(f"analyze expects str, not {type(text).__name__}")
        return [
            (s, e, SECRET, "merged") if rec is None else (s, e, rec.type, rec.name)
            for s, e, rec in self._spans(text) or ()
        ]

    def _spans(self, text: str) -> list[tuple[int, int, Recognizer | None]] | None:
        """The accepted spans of one pass, non-overlapping and in text order (None or empty
        when there are none).

        Recognizers run on a *view* of the text of the same length in which every existing
        pseudonym is blanked with NUL characters (and a NUL of the text itself becomes
        U+0001). No recognizer matches across a NUL, so a pseudonym is a hard boundary
        and is never masked again. A value on the allow-list is never a span.
        """
        n = len(text)
        if n < _SHORT or text.isalpha():
            return None
        barriers: list[tuple[int, int]] = []
        view = text
        if "\x00" in text:
            view = text.replace("\x00", "\x01")
        if _OPEN in text:
            parts, pos = [], 0
            for m in MASKED_RE.finditer(view):
                s, e = m.span()
                barriers.append((s, e))
                parts.append(view[pos:s])
                parts.append("\x00" * (e - s))
                pos = e
            if barriers:
                parts.append(view[pos:])
                view = "".join(parts)
        elif (
            self._tiny_exit
            and n < 20  # shorter than any token format
            and "@" not in text
            and "=" not in text
            and ":" not in text
            and " " not in text
            and "\t" not in text
            and (n < 7 or (n < 9 and text.count(".") < 3) or not _has_digit(text))
        ):
            # no separator for an assignment, no e-mail, shorter than a token, no digit for a
            # card or a bare national id (9 characters), no IPv4 address (7, three dots)
            return None
        ctx = Context(view, self._screen)
        groups = self._groups
        if n <= _QUICK_MAX_LEN and self._quick is not None and not default_may_match(ctx):
            # none of the recognizers `default_may_match` covers can find anything: only the
            # others run, each behind its own exact screen (the rest of `QuickScreen`, which
            # would only repeat those screens before their searches)
            groups = self._uncovered
        cands: list[tuple[int, int, Recognizer | None]] = []
        for gate, recs in groups:
            if gate is None or ctx.gate(gate):
                for recognizer in recs:
                    recognizer.collect(ctx, cands)
        if barriers and cands:
            cands = _outside(cands, barriers)
        if cands and self._allow is not None:
            allowed = self._allow
            cands = [c for c in cands if not allowed(text[c[0] : c[1]])]
        if len(cands) > 1:
            cands = _resolve(cands)
        return cands

    # Structure --------------------------------------------------------------------------------

    def mask_structure(self, kind: str, payload):
        """An event payload with the values its structure marks as sensitive (SQL values given
        to a sensitive column, HTTP values under a sensitive key, output tables' sensitive
        columns) replaced by pseudonyms; :meth:`mask` still has to run on the result. Never
        raises (what cannot be read is withheld)."""
        return self._structure.mask(kind, payload, self._pseudonym)

    # Values -----------------------------------------------------------------------------------

    def is_secret_key(self, key: str) -> bool:
        """True when a dict key names a secret (``password``, ``X-Api-Key``, ``session_id``...)."""
        return is_secret_name(key)

    def mask(self, value):
        """Mask a JSON-like value: str -> :meth:`mask_text`; dict -> new dict with masked keys
        and values (the value of a secret-named key is replaced whole by ``‹SECRET:…›``);
        list and tuple -> list; int, float, bool and None unchanged. Other types raise
        :class:`MaskingError` (the caller withholds the field)."""
        return self._mask(value, 0)

    def _mask(self, value, depth: int):
        t = type(value)
        if t is str:
            return self.mask_text(value)
        if value is None or t is int or t is float or t is bool:
            return value
        if depth >= _MAX_DEPTH:
            raise MaskingError(f"value nested deeper than {_MAX_DEPTH} levels")
        if t is dict:
            return self._mask_dict(value, depth + 1)
        if t is list or t is tuple:
            return [self._mask(v, depth + 1) for v in value]
        # subclasses (str enums, OrderedDict, numpy floats ...)
        if isinstance(value, str):
            return self.mask_text(str(value))
        if isinstance(value, bool | int | float):
            return value
        if isinstance(value, dict):
            return self._mask_dict(value, depth + 1)
        if isinstance(value, list | tuple):
            return [self._mask(v, depth + 1) for v in value]
        raise MaskingError(f"cannot mask a value of type {t.__name__}")

    def _mask_dict(self, value: dict, depth: int) -> dict:
        out: dict = {}
        keys = self._keys
        for k, v in value.items():
            if type(k) is str and (hit := keys.get(k)) is not None:
                masked_key, secret = hit
            elif isinstance(k, str):
                secret = is_secret_name(k)
                masked_key = self.mask_text(k)
                if len(k) <= 256:
                    if len(keys) > 8192:
                        keys.clear()
                    keys[k] = (masked_key, secret)
            elif k is None or isinstance(k, bool | int | float):
                out[k] = self._mask(v, depth)
                continue
            else:
                raise MaskingError(f"cannot mask a dict key of type {type(k).__name__}")
            if masked_key in out:  # two keys with one pseudonym: keep both values
                i = 2
                while f"{masked_key}~{i}" in out:
                    i += 1
                masked_key = f"{masked_key}~{i}"
            if secret:
                out[masked_key] = self._mask_secret(v)
            elif type(v) is str:
                out[masked_key] = self.mask_text(v)
            else:
                out[masked_key] = self._mask(v, depth)
        return out

    def _mask_secret(self, value):
        if value is None:
            return None
        if isinstance(value, str):
            if value == "" or MASKED_RE.fullmatch(value):
                return value
            return self._pseudonym(SECRET, str(value))
        return self._pseudonym(SECRET, repr(value))


def _covered(rec: Recognizer) -> bool:
    """True for what `default_may_match` covers (the scanner of the token formats too)."""
    if isinstance(rec, TokenScanner):
        return all(screened_by_default(r) for r in rec.recognizers)
    return screened_by_default(rec)


def _outside(cands: list, barriers: list[tuple[int, int]]) -> list:
    """The candidates that overlap no barrier (barriers are sorted and disjoint)."""
    starts = [b[0] for b in barriers]
    out = []
    for c in cands:
        i = bisect_right(starts, c[0]) - 1
        if i >= 0 and barriers[i][1] > c[0]:
            continue  # starts inside a barrier
        if i + 1 < len(barriers) and barriers[i + 1][0] < c[1]:
            continue  # reaches into the next barrier
        out.append(c)
    return out


def _has_digit(text: str) -> bool:
    return any(c in text for c in "0123456789")


def _resolve(cands: list) -> list:
    """Non-overlapping spans, in text order. Overlapping candidates form clusters, resolved
    by :func:`_resolve_cluster`."""
    cands.sort(key=itemgetter(0))
    prev_end = -1
    for c in cands:
        if c[0] < prev_end:
            break
        prev_end = c[1]
    else:
        return cands  # no overlap (the common case)
    out: list = []
    cluster = [cands[0]]
    cluster_end = cands[0][1]
    for c in cands[1:]:
        if c[0] < cluster_end:
            cluster.append(c)
            if c[1] > cluster_end:
                cluster_end = c[1]
        else:
            out.extend(_resolve_cluster(cluster) if len(cluster) > 1 else cluster)
            cluster = [c]
            cluster_end = c[1]
    out.extend(_resolve_cluster(cluster) if len(cluster) > 1 else cluster)
    return out


def _priority(c) -> int:
    return 1000 if c[2] is None else c[2].priority  # merged SECRET spans come first


def _resolve_cluster(cluster: list) -> list:
    """Candidates in priority order: one that overlaps nothing accepted so far is accepted; a
    SECRET one that overlaps is merged with what it overlaps into one SECRET span (masking
    more never leaks); any other overlapping one is dropped."""
    if len(cluster) == 2:  # the common case
        a, b = cluster
        hi, lo = (a, b) if _priority(a) >= _priority(b) else (b, a)
        if lo[2] is None or lo[2].type == SECRET:
            return [(min(a[0], b[0]), max(a[1], b[1]), None)]
        return [hi]
    cluster.sort(key=lambda c: (-_priority(c), c[0]))
    accepted: list = []
    for c in cluster:
        s, e = c[0], c[1]
        overlapping = [a for a in accepted if a[0] < e and s < a[1]]
        if not overlapping:
            accepted.append(c)
        elif c[2] is None or c[2].type == SECRET:
            for a in overlapping:
                accepted.remove(a)
            merged_s = min(s, *(a[0] for a in overlapping))
            merged_e = max(e, *(a[1] for a in overlapping))
            accepted.append((merged_s, merged_e, None))
    accepted.sort(key=itemgetter(0))
    return accepted
