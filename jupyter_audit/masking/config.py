"""Masking as configured: which recognizers run, added regex recognizers, allow-lists.

The server (``AuditApp.masking_*`` traits) and ``jupyter audit mask`` build their engine with
:func:`configured_engine`, so the CLI prints exactly what the trail would store. Bad
configuration (an unknown recognizer name, a regex that does not compile, a validator that
cannot be imported) raises :class:`~.engine.MaskingError` naming the entry: the server does
not start with a masking configuration it cannot honour.

- ``disabled``: names of default recognizers to leave out (``phone``, ``ipv4``, ``es-dni`` ...;
  :func:`recognizer_names` lists them);
- ``extra``: dicts ``{"name", "type", "pattern"}`` with optional ``"validator"`` (a dotted
  import path ``package.module:function`` or ``package.module.function`` of a callable taking
  the matched text and returning a bool), ``"group"`` (the group to replace) and
  ``"needles"`` (literals of which one must occur: lets the fast path skip it);
- ``allow_values`` / ``allow_patterns``: values never masked (exactly, or a regex matching
  the whole value), e.g. a support address or the documentation IP ranges;
- ``presidio``: add Microsoft Presidio's recognizers (`presidio` module; needs the
  ``jupyter-audit[presidio]`` extra), with ``presidio_spacy_model`` for its NER and
  ``presidio_entities`` to choose its entity types.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .base import PatternRecognizer, Recognizer
from .engine import MaskingEngine, MaskingError
from .recognizers import DEFAULT_RECOGNIZERS

__all__ = [
    "TRAITS",
    "AllowList",
    "configured_engine",
    "options_from",
    "recognizer_names",
    "regex_recognizer",
]

_EXTRA_KEYS = frozenset({"name", "type", "pattern", "validator", "group", "needles"})


def recognizer_names() -> list[str]:
    """The names of the default recognizers (what ``disabled`` may name)."""
    return [r.name for r in DEFAULT_RECOGNIZERS]


class AllowList:
    """Values never masked: exact values, and regexes that must match a whole value. (A class,
    not a closure: engines are pickled for the prepare workers.)"""

    def __init__(self, values: Iterable[str] = (), patterns: Iterable[str] = ()) -> None:
        self.values = frozenset(values)
        self.patterns: tuple[re.Pattern, ...] = ()
        compiled = []
        for p in patterns:
            try:
                compiled.append(re.compile(p))
            except re.error as e:
                raise MaskingError(f"masking allow pattern {p!r} does not compile: {e}") from None
        self.patterns = tuple(compiled)

    def __bool__(self) -> bool:
        return bool(self.values or self.patterns)

    def __call__(self, value: str) -> bool:
        if value in self.values:
            return True
        return any(p.fullmatch(value) for p in self.patterns)


def _import_callable(path: str, where: str) -> Callable[[str], bool]:
    module, sep, attr = path.partition(":")
    if not sep:
        module, _, attr = path.rpartition(".")
    if not module or not attr:
        raise MaskingError(f"{where}: validator {path!r} is not a dotted path to a callable")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise MaskingError(f"{where}: cannot import validator {path!r}: {e}") from None
    if not callable(fn):
        raise MaskingError(f"{where}: validator {path!r} is not callable")
    return fn


def regex_recognizer(spec: Mapping[str, Any]) -> PatternRecognizer:
    """A :class:`PatternRecognizer` from a configuration entry (see the module doc)."""
    if not isinstance(spec, Mapping):
        raise MaskingError(f"an extra masking recognizer must be a dict, not {spec!r}")
    name = spec.get("name")
    where = f"extra masking recognizer {name!r}"
    unknown = set(spec) - _EXTRA_KEYS
    if unknown:
        raise MaskingError(f"{where}: unknown keys {sorted(unknown)}")
    if not isinstance(name, str) or not name:
        raise MaskingError(f"extra masking recognizer needs a name: {dict(spec)!r}")
    typ, pattern = spec.get("type"), spec.get("pattern")
    if not isinstance(typ, str) or not re.fullmatch(r"[A-Za-z_]+", typ):
        raise MaskingError(f"{where}: type must be letters and _ (e.g. EMPLOYEE_ID): {typ!r}")
    if not isinstance(pattern, str) or not pattern:
        raise MaskingError(f"{where}: pattern must be a regular expression")
    try:
        compiled = re.compile(pattern)
    except re.error as e:
        raise MaskingError(f"{where}: pattern does not compile: {e}") from None
    group = spec.get("group", 0)
    if isinstance(group, bool) or not isinstance(group, int | str):
        raise MaskingError(f"{where}: group must be a number or a group name")
    if isinstance(group, int) and not 0 <= group <= compiled.groups:
        raise MaskingError(f"{where}: the pattern has no group {group}")
    if isinstance(group, str) and group not in compiled.groupindex:
        raise MaskingError(f"{where}: the pattern has no group {group!r}")
    validator = spec.get("validator")
    if validator is not None and not isinstance(validator, str):
        raise MaskingError(f"{where}: validator must be a dotted import path")
    needles = spec.get("needles", ())
    if isinstance(needles, str) or not all(isinstance(n, str) and n.isascii() for n in needles):
        raise MaskingError(f"{where}: needles must be a list of ASCII strings")
    return PatternRecognizer(
        typ,
        compiled,
        group=group,
        validator=_import_callable(validator, where) if validator else None,
        needles=needles,
        name=name,
    )


def configured_engine(
    key: bytes,
    *,
    disabled: Iterable[str] = (),
    extra: Iterable[Mapping[str, Any]] = (),
    allow_values: Iterable[str] = (),
    allow_patterns: Iterable[str] = (),
    presidio: bool = False,
    presidio_language: str = "en",
    presidio_spacy_model: str | None = None,
    presidio_entities: Iterable[str] | None = None,
    **engine_options: Any,
) -> MaskingEngine:
    """The engine the configuration describes (see the module doc)."""
    disabled = set(disabled)
    known = set(recognizer_names())
    unknown = disabled - known
    if unknown:
        raise MaskingError(
            f"unknown masking recognizers to disable: {sorted(unknown)}; "
            f"known: {', '.join(recognizer_names())}"
        )
    recs: list[Recognizer] = [r for r in DEFAULT_RECOGNIZERS if r.name not in disabled]
    names = {r.name for r in recs}
    for spec in extra:
        rec = regex_recognizer(spec)
        if rec.name in known:
            raise MaskingError(f"extra masking recognizer {rec.name!r}: the name is taken")
        if rec.name in names:
            raise MaskingError(f"extra masking recognizer {rec.name!r} is given twice")
        names.add(rec.name)
        recs.append(rec)
    if presidio:
        from .presidio import PresidioRecognizer

        recs.append(
            PresidioRecognizer(
                presidio_language,
                spacy_model=presidio_spacy_model or None,
                entities=presidio_entities or None,
            )
        )
    allow = AllowList(allow_values, allow_patterns)
    return MaskingEngine(key, recs, allow=allow or None, **engine_options)


#: ``AuditApp`` trait -> :func:`configured_engine` argument (the server and the CLI share it)
TRAITS = {
    "masking_disabled_recognizers": "disabled",
    "masking_extra_recognizers": "extra",
    "masking_allow_values": "allow_values",
    "masking_allow_patterns": "allow_patterns",
    "masking_presidio": "presidio",
    "masking_presidio_spacy_model": "presidio_spacy_model",
    "masking_presidio_entities": "presidio_entities",
}


def options_from(section: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`configured_engine` arguments from a config section (``c.AuditApp``): only the
    masking traits that are set."""
    return {kw: section[trait] for trait, kw in TRAITS.items() if trait in section}
