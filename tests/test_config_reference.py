"""docs/config-reference.md is generated from the traitlets (scripts/config_reference.py):
the committed file must be what the script writes now, and name every configurable trait."""

import subprocess
import sys

from helpers.servers import REPO

SCRIPT = REPO / "scripts" / "config_reference.py"
REFERENCE = REPO / "docs" / "config-reference.md"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300
    )


def test_the_committed_reference_is_not_stale():
    p = run("--check")
    assert p.returncode == 0, p.stderr + "\n(run: python scripts/config_reference.py)"


def test_it_names_every_configurable_trait():
    from jupyter_audit.identity import OIDCIdentityProvider
    from jupyter_audit.policy.engine import Policy
    from jupyter_audit.server.app import AuditApp

    text = REFERENCE.read_text("utf-8")
    for cls in (AuditApp, OIDCIdentityProvider, Policy):
        for name in cls.class_own_traits(config=True):
            assert f"### `c.{cls.__name__}.{name}`" in text


def test_a_stale_reference_fails_the_check(tmp_path):
    stale = tmp_path / "config-reference.md"
    stale.write_text(REFERENCE.read_text("utf-8").replace("Groups whose", "Groups that"))
    p = run("--check", "-o", str(stale))
    assert p.returncode == 1 and "is stale" in p.stderr
