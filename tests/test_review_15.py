"""Holes an adversarial review of the trace panel's server side found, kept closed: acting
on someone's kernel or deciding their approval makes no one a participant; a group of
folded steps holds only identical, unflagged steps; an operation the server could not tie
to a cell is described and rated as what it was."""

import duckdb
import pytest
from helpers.trail import ALICE, BOB

from jupyter_audit.cli import main as cli_main
from jupyter_audit.store.folding import fold_key

RITA = {"username": "rita", "auth_method": "oidc", "groups": ["reviewers"]}
T = "trace-of-alice"


def _ev(kind, who, payload, msg_id=None, **extra):
    return {
        "kind": kind,
        "identity": who,
        "trace_id": T,
        "kernel_id": T,
        "msg_id": msg_id,
        "payload": payload,
        **extra,
    }


def _participants(db):
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(
            "SELECT username FROM trace_users WHERE trace_id = ? ORDER BY 1", [T]
        ).fetchall()


def test_acting_on_anothers_kernel_or_approval_makes_no_participant(make_writer, trail_dir, capsys):
    w = make_writer()
    w.append_many(
        [
            _ev("session.started", ALICE, {"reason": "start"}),
            _ev("cell.requested", ALICE, {"code": "salary = load('hr')"}, "m1"),
            _ev("session.interrupted", BOB, {"reason": "interrupt"}),
            _ev("session.started", BOB, {"reason": "restart"}),
            _ev(
                "approval.decided",
                RITA,
                {"request_id": "1", "decision": "approve", "reviewer": "rita", "reason": "ok"},
            ),
            _ev("session.ended", BOB, {"reason": "shutdown"}),
        ]
    )
    w.close()
    db = trail_dir / "trail.duckdb"
    assert _participants(db) == [("alice",)]
    # the rule the derived check and a rebuild use says the same
    assert cli_main(["verify", "--db", str(db)]) == 0, capsys.readouterr()


def _sql(statement, rowcount, msg="m1"):
    return {
        "kind": "op.sql",
        "msg_id": msg,
        "payload": {"driver": "sqlite3", "statement": statement, "rowcount": rowcount},
    }


@pytest.mark.parametrize(
    "a, b",
    [
        # a bulk DELETE that removed rows never hides in a group behind one that did not
        (_sql("DELETE FROM customers", 0), _sql("DELETE FROM customers", 5000)),
        # case is meaning: literals, paths
        (_sql("UPDATE t SET v = 1 WHERE k = 'A'", 1), _sql("UPDATE t SET v = 1 WHERE k = 'a'", 1)),
        (
            {"kind": "op.shell", "msg_id": "m1", "payload": {"command": "cat /srv/Public/x"}},
            {"kind": "op.shell", "msg_id": "m1", "payload": {"command": "cat /srv/public/x"}},
        ),
        # the whole URL, not only its host
        (
            {
                "kind": "op.http",
                "msg_id": "m1",
                "payload": {"method": "GET", "url": "https://api.example.org/health"},
            },
            {
                "kind": "op.http",
                "msg_id": "m1",
                "payload": {"method": "GET", "url": "https://api.example.org/upload?dump=all"},
            },
        ),
    ],
)
def test_a_group_holds_only_identical_unflagged_steps(a, b):
    ka, kb = fold_key(a), fold_key(b)
    assert ka is None or kb is None or ka != kb


def test_identical_plain_steps_still_fold():
    assert fold_key(_sql("SELECT ?  + 1", 1)) == fold_key(_sql("SELECT ? + 1", 1)) is not None


def test_an_unattributed_statement_is_described_and_rated_as_what_it_was(make_writer):
    from helpers.trail import writer_events

    w = make_writer()
    w.append(
        _ev(
            "op.unattributed",
            BOB,
            {
                "original_kind": "op.sql",
                "driver": "sqlite3",
                "statement": "DELETE FROM customers",
                "statement_type": "SELECT",
                "tables": ["harmless_lookup"],
                "rowcount": 5000,
            },
            "m9",
        )
    )
    w.flush()

    (ev,) = [e for e in writer_events(w) if e["kind"] == "op.unattributed"]
    assert (ev["payload"]["statement_type"], ev["payload"]["tables"]) == ("DELETE", ["customers"])
    (risky,) = w.cursor().execute("SELECT risky FROM traces WHERE trace_id = ?", [T]).fetchone()
    assert risky == 1


@pytest.mark.parametrize("hidden", ["\U000e0041", "\u00ad", "\u3164", "\ufe0f", "\u180e"])
def test_characters_that_draw_nothing_are_shown(hidden):
    from jupyter_audit.cli.replay_notebook import _text
    from jupyter_audit.cli.terminal import printable

    name = f"report{hidden}.ipynb"
    assert hidden not in printable(name) and hidden not in _text(name)
