"""Fixtures for every test: a trail directory and real Writers on it. Helpers the tests
share are in tests/helpers."""

from pathlib import Path

import pytest

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def trail_dir(tmp_path) -> Path:
    d = tmp_path / "audit"
    d.mkdir()
    return d


@pytest.fixture
def make_writer(trail_dir):
    """Writers on a real DuckDB file in a temporary directory, with the real masking
    engine and a real signing key; closed at the end of the test."""
    from jupyter_audit.masking import MaskingEngine, load_or_create_key
    from jupyter_audit.store.signing import SigningKey
    from jupyter_audit.store.writer import Writer

    opened = []

    def make(**kwargs):
        masker = MaskingEngine(load_or_create_key(trail_dir / "masking.key"))
        key = SigningKey.load_or_create(trail_dir / "signing-key.pem")
        w = Writer(trail_dir / "trail.duckdb", masker, key, **kwargs).open()
        opened.append(w)
        return w

    yield make
    for w in opened:
        w.close()


@pytest.fixture
def writer_at(tmp_path):
    """Real Writers, each on a trail in a directory of its own under the test's temporary
    directory (e.g. a server's trail and a collector's), with their own keys; closed at the
    end of the test."""
    from jupyter_audit.masking import MaskingEngine, load_or_create_key
    from jupyter_audit.store.signing import SigningKey
    from jupyter_audit.store.writer import Writer

    opened = []

    def make(name: str, **kwargs):
        d = tmp_path / name
        d.mkdir(exist_ok=True)
        masker = MaskingEngine(load_or_create_key(d / "masking.key"))
        key = SigningKey.load_or_create(d / "signing-key.pem")
        w = Writer(d / "trail.duckdb", masker, key, **kwargs).open()
        opened.append(w)
        return w

    yield make
    for w in opened:
        w.close()


@pytest.fixture
def issuer():
    """A real OIDC issuer over HTTP whose keys the test controls (helpers/oidc.py)."""
    from helpers.oidc import KeyIssuer

    i = KeyIssuer()
    yield i
    i.stop()
