"""The labelled masking corpus (tests/masking_corpus/): every positive is masked with its TYPE,
every negative survives, every recognizer and every form is represented, and the committed
corpus is what its builder writes (values from the formats' specifications, not the engine)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from jupyter_audit.masking import DEFAULT_RECOGNIZERS, MASKED_RE, MaskingEngine
from tests.masking_corpus import build

KEY = bytes(range(32))


@pytest.fixture(scope="module")
def corpus() -> list[dict]:
    with build.CORPUS.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def eng() -> MaskingEngine:
    return MaskingEngine(KEY)


def test_the_corpus_is_what_its_builder_writes(corpus):
    assert build.dumps(build.build()) == build.CORPUS.read_text(encoding="utf-8")


def test_the_corpus_covers_every_form_and_kind(corpus):
    assert len(corpus) >= 600
    forms = Counter(s["form"] for s in corpus)
    for form in ("code", "sql", "sql-params", "url", "http-body", "traceback", "shell",
                 "terminal", "dataframe", "env", "yaml", "ini", "json", "log"):  # fmt: skip
        assert forms[form] >= 20, form
    kinds = Counter(p["kind"] for s in corpus for p in s["positives"])
    assert set(kinds) == set(build.POSITIVE)
    assert min(kinds.values()) >= 5, kinds
    negatives = Counter(n["kind"] for s in corpus for n in s["negatives"])
    assert set(negatives) == set(build.NEGATIVE)
    # positives' offsets are exact
    for s in corpus:
        for p in s["positives"]:
            assert s["text"][p["start"] : p["end"]] == p["value"]


def test_every_positive_is_masked_and_every_negative_survives(corpus, eng):
    missed, lost = [], []
    for s in corpus:
        out = eng.mask_text(s["text"])
        types = Counter(m.group()[1:].split(":")[0] for m in MASKED_RE.finditer(out))
        for p in s["positives"]:
            if p["value"] in out or not types[p["type"]]:
                missed.append((s["id"], p["kind"], out))
        for n in s["negatives"]:
            if n["value"] not in out:
                lost.append((s["id"], n["kind"], n["value"], out))
    assert missed == []
    assert lost == []


def test_every_default_recognizer_finds_something_in_the_corpus(corpus, eng):
    """Each built-in recognizer is exercised by the corpus (a new one needs positives)."""
    from jupyter_audit.masking.context import Context

    used: set[str] = set()
    for s in corpus:
        ctx = Context(s["text"])
        for rec in DEFAULT_RECOGNIZERS:
            if ctx.gate(rec.gate) and list(rec.find(ctx)):
                used.add(rec.name)
    # token formats that have no place in this corpus (their own unit tests cover them)
    unused = {r.name for r in DEFAULT_RECOGNIZERS} - used - {"stripe", "google", "huggingface"}
    assert unused == set()
