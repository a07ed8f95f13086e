"""`jupyter audit policy check` as a user runs it: a subprocess, config files on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(args: list[str], cwd: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")},
        "PYTHONPATH": str(ROOT),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
    }
    return subprocess.run(
        [sys.executable, "-m", "jupyter_audit.cli", "policy", "check", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def test_json_output_with_the_server_default_of_no_reviewers(tmp_path):
    r = run(["--sql", "DELETE FROM customers", "--json"], tmp_path, tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["decision"] == "warn"
    assert [x["rule"] for x in out["reasons"]] == ["statement.where-required"]
    assert "reviewer_groups" in out["reasons"][0]["message"]
    r = run(["--sql", "SELECT 1", "--json", "--review-possible"], tmp_path, tmp_path)
    assert json.loads(r.stdout) == {"decision": "allow", "reasons": [], "min_approvals": 1}


def test_text_output_names_the_rule(tmp_path):
    r = run(["--sql", "DROP TABLE t", "--review-possible"], tmp_path, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "review"
    assert "table.drop: DROP TABLE t" in r.stdout


def test_the_servers_config_file_is_found_and_mirrored(tmp_path):
    # a config in the Jupyter config directory, where `jupyter server` reads it
    (tmp_path / "jupyter-config").mkdir()
    (tmp_path / "jupyter-config" / "jupyter_server_config.py").write_text(
        "c.ServerApp.identity_provider_class = 'jupyter_audit.identity.OIDCIdentityProvider'\n"
        "c.AuditApp.reviewer_groups = ['dba']\n"
        "c.Policy.rules = [{'rule': 'table.truncate', 'action': 'deny'}]\n"
    )
    r = run(["--sql", "TRUNCATE t", "--json"], tmp_path, tmp_path)
    assert json.loads(r.stdout)["decision"] == "deny", r.stderr
    r = run(["--sql", "DROP TABLE t", "--json"], tmp_path, tmp_path)
    assert json.loads(r.stdout)["decision"] == "review"  # reviewers configured: review
    r = run(["--sql", "DROP TABLE t", "--json", "--no-review-possible"], tmp_path, tmp_path)
    assert json.loads(r.stdout)["decision"] == "warn"


@pytest.mark.parametrize(
    ("config", "environ", "possible"),
    [
        ({}, {}, False),
        ({"ServerApp": {"identity_provider_class": "jupyter_audit.identity.OIDCIdentityProvider"}},
         {}, True),
        ({"ServerApp": {"identity_provider_class": "jupyter_audit.identity.OIDCIdentityProvider"},
          "AuditApp": {"reviewer_groups": []}}, {}, False),
        ({"ServerApp": {"identity_provider_class":
                        "jupyter_server.auth.identity.PasswordIdentityProvider"}}, {}, False),
        ({}, {"JUPYTERHUB_API_TOKEN": "x", "JUPYTERHUB_SERVICE_PREFIX": "/user/a/"}, True),
    ],
)  # fmt: skip
def test_review_is_assumed_as_the_server_decides_it(config, environ, possible):
    from traitlets.config import Config

    from jupyter_audit.cli.policy import review_possible_in

    assert review_possible_in(Config(config), environ) is possible


def test_config_option_shell_and_http(tmp_path):
    cfg = tmp_path / "policy.json"
    cfg.write_text(
        json.dumps(
            {"Policy": {"rules": [{"id": "acme.prod-delete", "method": "DELETE",
                                   "host": "*.prod.acme.com", "action": "review"}]}}
        )
    )  # fmt: skip
    args = ["--config", str(cfg), "--review-possible", "--json"]
    r = run(["--http", "DELETE", "https://api.prod.acme.com/x", *args], tmp_path, tmp_path)
    assert json.loads(r.stdout)["reasons"][0]["rule"] == "acme.prod-delete", r.stderr
    r = run(["--shell", "kubectl delete ns prod", *args], tmp_path, tmp_path)
    assert json.loads(r.stdout)["decision"] == "review"


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ('{"Policy": {"rules": [{"rule": "table.drop", "action": "sometimes"}]}}',
         "action must be one of"),
        ("{not json", "cannot load config"),
    ],
)  # fmt: skip
def test_a_bad_config_is_a_clear_error(tmp_path, content, error):
    cfg = tmp_path / "bad.json"
    cfg.write_text(content)
    r = run(["--sql", "SELECT 1", "--config", str(cfg)], tmp_path, tmp_path)
    assert r.returncode == 2
    assert error in r.stderr
    assert "Traceback" not in r.stderr
    r = run(["--sql", "SELECT 1", "--config", str(tmp_path / "missing.py")], tmp_path, tmp_path)
    assert r.returncode == 2 and "no such file" in r.stderr
