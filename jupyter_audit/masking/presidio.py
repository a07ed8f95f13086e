"""Optional backend: Microsoft Presidio's recognizers beside the built-in ones.

``pip install 'jupyter-audit[presidio]'`` and ``c.AuditApp.masking_presidio = True``. Its
regex and checksum recognizers run through Presidio's no-op NLP engine (no model to load);
its NER recognizer (person names, places) runs only when the deployment names a spaCy model
it has installed (``masking_presidio_spacy_model``). What Presidio finds is masked like the
rest, with its entity type as the pseudonym TYPE (``‹PHONE_NUMBER:…›``). By default DATE_TIME
and URL are left out (they would destroy every timestamp and URL in the trail). The backend
makes no network request (see `_no_downloads`).

Without the extra nothing else changes: this module is imported only when the backend is
configured, and then a missing package is a clear :class:`~.engine.MaskingError`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .base import Recognizer
from .context import Context
from .engine import MaskingError

__all__ = ["DEFAULT_EXCLUDED", "PresidioRecognizer"]

#: Presidio entities left out unless asked for
DEFAULT_EXCLUDED = frozenset({"DATE_TIME", "URL"})
_NOT_TYPE = re.compile(r"[^A-Z_]")


def _no_downloads() -> None:
    """Presidio's e-mail recognizer asks tldextract, which downloads the Public Suffix List on
    first use: the masking server makes no outbound request, tldextract's bundled snapshot
    serves instead."""
    try:
        from tldextract import tldextract
    except ImportError:  # pragma: no cover - a Presidio without tldextract
        return
    extractor = getattr(tldextract, "TLD_EXTRACTOR", None)
    if extractor is not None and hasattr(extractor, "suffix_list_urls"):
        extractor.suffix_list_urls = ()


class _Entity(Recognizer):
    """What one Presidio entity type is masked as."""

    priority = 20  # the built-in recognizers win overlaps

    def __init__(self, entity: str) -> None:
        self.type = _NOT_TYPE.sub("_", entity.upper()) or "PII"
        self.name = f"presidio:{entity}"


class PresidioRecognizer(Recognizer):
    """Presidio's ``AnalyzerEngine`` as one recognizer (not screened: the engine's quick path
    is off while it is configured)."""

    name = "presidio"
    priority = 20

    def __init__(
        self,
        language: str = "en",
        *,
        spacy_model: str | None = None,
        entities: Iterable[str] | None = None,
        score_threshold: float = 0.5,
    ) -> None:
        try:
            import presidio_analyzer  # noqa: F401
        except ImportError:
            raise MaskingError(
                "the Presidio masking backend needs the presidio extra: "
                "pip install 'jupyter-audit[presidio]'"
            ) from None
        self.language = language
        self.spacy_model = spacy_model
        self.entities = None if entities is None else sorted(set(entities))
        self.score_threshold = score_threshold
        self._analyzer: Any = None
        self._types: dict[str, _Entity] = {}
        self.analyzer  # noqa: B018 - fail now (bad model name ...), not on the first event

    def __getstate__(self) -> dict:
        """Pickled without the analyzer (engines go to prepare workers); rebuilt on use."""
        state = dict(self.__dict__)
        state["_analyzer"] = None
        return state

    @property
    def analyzer(self) -> Any:
        if self._analyzer is None:
            self._analyzer = self._build()
        return self._analyzer

    def _build(self) -> Any:
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NlpEngineProvider, NoOpNlpEngine

        _no_downloads()
        lang = self.language
        if self.spacy_model:
            try:
                nlp = NlpEngineProvider(
                    nlp_configuration={
                        "nlp_engine_name": "spacy",
                        "models": [{"lang_code": lang, "model_name": self.spacy_model}],
                    }
                ).create_engine()
            except (OSError, ValueError) as e:
                raise MaskingError(
                    f"Presidio: cannot load the spaCy model {self.spacy_model!r}: {e}"
                ) from None
        else:
            nlp = NoOpNlpEngine(models=[{"lang_code": lang, "model_name": "no_op"}])
        registry = RecognizerRegistry(supported_languages=[lang])
        registry.load_predefined_recognizers(languages=[lang], nlp_engine=nlp)
        if not self.spacy_model:  # no model: no NER
            registry.recognizers = [
                rec
                for rec in registry.recognizers
                if type(rec).__name__ not in ("SpacyRecognizer", "StanzaRecognizer")
            ]
        return AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=[lang])

    def _entity(self, entity: str) -> _Entity:
        rec = self._types.get(entity)
        if rec is None:
            rec = self._types[entity] = _Entity(entity)
        return rec

    def collect(self, ctx: Context, out: list) -> None:
        text = ctx.text.replace("\x00", " ")  # pseudonyms blanked by the engine
        results = self.analyzer.analyze(
            text=text,
            language=self.language,
            entities=self.entities,
            score_threshold=self.score_threshold,
        )
        for r in results:
            if self.entities is None and r.entity_type in DEFAULT_EXCLUDED:
                continue
            if r.start < r.end:
                out.append((r.start, r.end, self._entity(r.entity_type)))

    def find(self, ctx: Context) -> Iterable[tuple[int, int]]:
        out: list = []
        self.collect(ctx, out)
        return [(s, e) for s, e, _ in out]
