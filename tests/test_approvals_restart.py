"""Approval state lives in the trail: a broker on a reopened trail file (a server restart)
holds what the last one did; what expired meanwhile expires, and what a kernel stop ended
is cancelled, each recorded."""

import pytest

from jupyter_audit.approvals import ApprovalBroker, Refused, parse_ask
from jupyter_audit.server import app as app_module
from jupyter_audit.server.recorder import Recorder


def person(name, groups=()):
    return {
        "username": name,
        "email": f"{name}@example.org",
        "subject": f"sub-{name}",
        "issuer": "https://idp.test",
        "groups": list(groups),
        "auth_method": "oidc",
    }


def cell(kernel_id, who="alice"):
    return {
        "identity": person(who, ["data-science"]),
        "trace_id": kernel_id,
        "kernel_id": kernel_id,
        "session_id": None,
        "notebook": "nb.ipynb",
    }


def broker_on(writer, expiry=3600.0):
    policy = app_module.Policy(review_possible=True)
    broker = ApprovalBroker(Recorder(writer), policy, expiry=expiry)
    broker.rebuild()
    return broker


def ask(broker, kernel_id, statement="DELETE FROM customers", msg_id="m1"):
    body = {"kind": "sql", "statement": statement, "msg_id": msg_id, "driver": "duckdb"}
    answer = broker.ask(kernel_id, parse_ask(body), cell(kernel_id))
    assert answer["decision"] == "review"
    return answer["request"]["id"]


def test_a_pending_request_survives_a_restart_and_can_still_be_approved(make_writer):
    writer = make_writer()
    first = broker_on(writer)
    waiting = ask(first, "k1", msg_id="m1")
    approved = ask(first, "k1", "DROP TABLE t", msg_id="m2")
    first.decide(approved, person("bob"), reviewer=True, decision="approve", reason="ok")
    first.expiry = 0.0  # this one expires while no server runs
    overdue = ask(first, "k1", "DELETE FROM orders", msg_id="m3")
    stopped = ask(first, "k2", msg_id="m4")
    first.recorder.record_now(
        {
            "kind": "session.ended",
            "identity": person("alice"),
            "trace_id": "k2",
            "kernel_id": "k2",
            "payload": {"reason": "died"},
        }
    )
    writer.close()

    writer = make_writer()
    second = broker_on(writer)
    states = {a.id: a.state for a in second.visible(person("bob"), reviewer=True, state=None)}
    assert states == {
        waiting: "pending",
        approved: "approved",
        overdue: "expired",
        stopped: "cancelled",
    }
    kept = second.get(waiting, person("bob"), reviewer=True)
    assert kept.requester["username"] == "alice" and kept.statement == "DELETE FROM customers"
    assert kept.msg_id == "m1" and kept.kernel_id == "k1"
    with pytest.raises(Refused) as e:
        second.decide(waiting, person("alice"), reviewer=True, decision="approve", reason=None)
    assert e.value.status == 403
    done = second.decide(waiting, person("bob"), reviewer=True, decision="approve", reason=None)
    assert done.state == "approved" and done.decided_by == ["bob"]
    assert ask(second, "k1", msg_id="m5") == stopped + 1  # ids go on, never reused

    # a third start finds the same, and records nothing more
    writer.close()
    writer = make_writer()
    count = writer.cursor().execute("SELECT count(*) FROM events").fetchone()[0]
    third = broker_on(writer)
    assert third.get(waiting, person("bob"), reviewer=True).state == "approved"
    assert writer.cursor().execute("SELECT count(*) FROM events").fetchone()[0] == count
    assert writer.verify().ok  # the approval events are ordinary signed records
