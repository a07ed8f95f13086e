"""Parts of the live demo that need no server: its configuration file cannot be turned into
code by a directory name, its API stub refuses bad input with a clear 400, and its sample
data holds the fake PII the end-to-end test looks for."""

import json
import sqlite3
import urllib.error
import urllib.request

import pytest
from traitlets.config import Config

from jupyter_audit.demo.data import create_shop, fake_pii
from jupyter_audit.demo.stub import ApiStub
from jupyter_audit.demo.world import DemoWorld, server_config


def test_a_hostile_directory_name_stays_a_string_in_the_server_config(tmp_path):
    evil = tmp_path / "x'; import os; os.system('touch pwned') #\n\"\"\"q"
    world = DemoWorld(evil, port=8899)
    text = server_config(world)
    compile(text, "jupyter_server_config.py", "exec")

    c = Config()
    exec(text, {"get_config": lambda: c})  # noqa: S102 - what jupyter does with the file
    assert c["ServerApp"]["root_dir"] == str(evil / "notebooks")
    assert c["AuditApp"]["db_path"] == str(evil / "audit" / "trail.duckdb")
    assert c["AuditApp"]["reviewer_groups"] == ["audit-reviewers"]
    assert not (tmp_path / "pwned").exists()


@pytest.fixture
def stub():
    s = ApiStub().start()
    yield s
    s.stop()


def _call(url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def test_the_api_stub_answers_and_refuses_bad_input(stub):
    assert _call(f"{stub.url}/risk-score?customer_id=2") == (
        200,
        {"customer_id": 2, "score": 0.74, "band": "high"},
    )
    assert _call(f"{stub.url}/risk-score?customer_id=2%20OR%201")[0] == 400
    assert _call(f"{stub.url}/nothing")[0] == 404
    body = json.dumps([{"customer_id": 1, "score": 0.5}]).encode()
    assert _call(f"{stub.url}/scores", body) == (200, {"accepted": 1})
    code, answer = _call(f"{stub.url}/scores", b"{not json")
    assert code == 400 and "not JSON" in answer["message"]
    code, answer = _call(f"{stub.url}/scores", b'{"a": 1}')
    assert code == 400 and "list" in answer["message"]


def test_the_shop_holds_the_fake_customers(tmp_path):
    db = create_shop(tmp_path / "shop.db")
    con = sqlite3.connect(db)
    emails = {e for (e,) in con.execute("SELECT email FROM customers")}
    phones = {p for (p,) in con.execute("SELECT phone FROM customers")}
    names = {n for (n,) in con.execute("SELECT name FROM customers")}
    assert names | emails | phones == set(fake_pii())
    assert all(e.endswith("@example.com") for e in emails)  # reserved domain: never real mail
    con.close()
