"""The approval broker in a real jupyter_server on a real trail: kernels ask (per-kernel
secret), people decide over REST, and every step is in the trail.

People sign in through a header identity provider with groups (tests/helpers/approvals.py;
tests/test_approvals_oidc.py signs in through a real OIDC provider); kernels are the
server's own kernels where the test is about the kernel's cell, and a kernel id with an
issued secret plus a cell the gateway would have remembered where it is about the broker's
rules.
"""

import asyncio
import dataclasses
import json
import uuid

import pytest
from helpers.approvals import (
    FakeKernel,
    GroupsIdentityProvider,
    as_user,
    refused,
    sha,
)
from helpers.kernels import open_kernel
from helpers.servers import server_config
from helpers.trail import trail_events
from tornado.httpclient import HTTPClientError

from jupyter_audit.cli import main as cli_main
from jupyter_audit.server import app as app_module


@pytest.fixture
def audit_config():
    return {"break_glass_groups": ["break-glass"]}


@pytest.fixture
def jp_server_config(trail_dir, audit_config):
    return server_config(
        trail_dir / "trail.duckdb",
        server={"identity_provider_class": GroupsIdentityProvider},
        **audit_config,
    )


async def test_a_risky_statement_waits_then_bob_approves_and_it_runs_once(jp_serverapp, jp_fetch):
    kernel = FakeKernel(jp_serverapp, jp_fetch)
    msg_id = kernel.cell("alice", "cur.execute('DELETE FROM customers')")
    answer = await kernel.ask(msg_id)
    assert answer["decision"] == "review"
    assert answer["reasons"][0]["rule"] == "statement.where-required"
    request = answer["request"]
    assert request["state"] == "pending"
    assert request["message"].startswith(f"waiting for approval #{request['id']}: ")
    assert request["message"].endswith("by alice")
    rid = request["id"]

    status = await kernel.call(str(rid), params={"wait": "0"})
    assert status["state"] == "pending" and status["decided_by"] == []

    decided = await as_user(
        jp_fetch, "bob", "approvals", str(rid), method="POST", body={"decision": "approve"}
    )
    assert decided["state"] == "approved"
    status = await kernel.call(str(rid), params={"wait": "5"})
    assert status["state"] == "approved" and status["decided_by"] == ["bob"]

    report = {"statement_sha256": sha("DELETE FROM customers"), "rowcount": 3, "error": None}
    done = await kernel.call(str(rid), method="POST", body={"executed": report})
    assert done["state"] == "executed"
    code, message = await refused(kernel.call(str(rid), method="POST", body={"executed": report}))
    assert code == 409 and "executed" in message

    events = [e for e in trail_events(kernel.audit) if e["kind"].startswith("approval.")]
    assert [e["kind"] for e in events] == [
        "approval.requested",
        "approval.decided",
        "approval.executed",
    ]
    requested, decision, executed = events
    assert requested["identity"]["username"] == "alice"
    assert requested["msg_id"] == msg_id and requested["kernel_id"] == kernel.id
    assert requested["payload"]["statement_sha256"] == sha("DELETE FROM customers")
    assert requested["payload"]["rules"] == ["statement.where-required"]
    assert requested["payload"]["decision"] == "review"
    assert decision["identity"]["username"] == "bob"
    assert decision["payload"]["decision"] == "approve"
    assert executed["payload"]["rowcount"] == 3


async def pending(kernel, who="alice", statement="DELETE FROM customers") -> int:
    answer = await kernel.ask(kernel.cell(who), statement)
    assert answer["decision"] == "review", answer
    return answer["request"]["id"]


async def decide(jp_fetch, who, rid, decision="approve", reason=None):
    body = {"decision": decision, **({"reason": reason} if reason is not None else {})}
    return await as_user(jp_fetch, who, "approvals", str(rid), method="POST", body=body)


async def test_an_ordinary_write_is_allowed_and_nothing_is_recorded(jp_serverapp, jp_fetch):
    kernel = FakeKernel(jp_serverapp, jp_fetch)
    for statement in ("INSERT INTO t VALUES (1)", "UPDATE t SET x = 1 WHERE id = 2"):
        answer = await kernel.ask(kernel.cell("alice"), statement)
        assert answer["decision"] == "allow" and answer["request"] is None
    assert not [e for e in trail_events(kernel.audit) if e["kind"].startswith("approval.")]


async def test_the_requester_never_decides_their_own_request_admins_included(
    jp_serverapp, jp_fetch
):
    kernel = FakeKernel(jp_serverapp, jp_fetch)
    rid = await pending(kernel, "alice")  # alice: reviewer and admin
    for decision in ("approve", "deny"):
        code, message = await refused(decide(jp_fetch, "alice", rid, decision, "mine"))
        assert code == 403 and "your own" in message and "admins included" in message
    # dave is no reviewer: 403 naming the setting that would make him one
    code, message = await refused(decide(jp_fetch, "dave", rid))
    assert code == 403 and "c.AuditApp.reviewer_groups" in message
    assert (await as_user(jp_fetch, "alice", "approvals", str(rid)))["state"] == "pending"
    approved = await decide(jp_fetch, "bob", rid, reason="checked with the team")
    assert approved["state"] == "approved"
    assert approved["decisions"] == [
        {
            "reviewer": "bob",
            "decision": "approve",
            "reason": "checked with the team",
            "time": approved["decisions"][0]["time"],
            "break_glass": False,
        }
    ]
    code, message = await refused(decide(jp_fetch, "carol", rid))
    assert code == 409 and "no longer pending" in message


async def test_a_service_token_owned_by_the_requester_is_the_requester(jp_serverapp, jp_fetch):
    """alice's job token (owned by alice) cannot approve alice's request, nor can alice
    approve what her job's token asked for."""
    kernel = FakeKernel(jp_serverapp, jp_fetch)
    rid = await pending(kernel, "alice")
    tokens = jp_serverapp.web_app.settings["jupyter_audit_tokens"]
    token, _ = tokens.create("alice-job", "alice@example.org", "1d", {"username": "alice"})
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch(
            "jupyter-audit",
            "api",
            "approvals",
            str(rid),
            method="POST",
            body=json.dumps({"decision": "approve"}),
            headers={"Authorization": f"Bearer {token}"},
        )
    assert e.value.code == 403 and "your own" in json.loads(e.value.response.body)["message"]

    # a request from a cell run with that token is alice's too
    job_cell = uuid.uuid4().hex
    kernel.audit.request_cell(
        {
            "kind": "cell.requested",
            "identity": tokens.check(token)[0],
            "trace_id": kernel.id,
            "kernel_id": kernel.id,
            "session_id": None,
            "notebook": "jobs/nightly.ipynb",
            "msg_id": job_cell,
            "payload": {"code": "cleanup()", "cell_id": None, "silent": False},
        },
        uuid.uuid4().hex,
    )
    # the token holds no groups: under the stand-in and the real policy alike a job's
    # request still needs review from someone else
    answer = await kernel.ask(job_cell)
    assert answer["decision"] == "review"
    job_rid = answer["request"]["id"]
    code, message = await refused(decide(jp_fetch, "alice", job_rid))
    assert code == 403 and "your own" in message
    assert (await decide(jp_fetch, "bob", job_rid))["state"] == "approved"


async def test_a_token_an_admin_made_for_another_owner_is_still_the_admin(jp_serverapp, jp_fetch):
    """Review of issue 14: alice (admin) makes a token naming someone else as its owner, runs
    a risky statement with it, and must not approve it herself: the token's creator is as
    much its person as its owner."""
    kernel = FakeKernel(jp_serverapp, jp_fetch)
    tokens = jp_serverapp.web_app.settings["jupyter_audit_tokens"]
    token, _ = tokens.create("cleanup-job", "mallory@example.org", "1d", {"username": "alice"})
    job_cell = uuid.uuid4().hex
    kernel.audit.request_cell(
        {
            "kind": "cell.requested",
            "identity": tokens.check(token)[0],
            "trace_id": kernel.id,
            "kernel_id": kernel.id,
            "session_id": None,
            "notebook": "jobs/cleanup.ipynb",
            "msg_id": job_cell,
            "payload": {"code": "cleanup()", "cell_id": None, "silent": False},
        },
        uuid.uuid4().hex,
    )
    answer = await kernel.ask(job_cell)
    assert answer["decision"] == "review"
    rid = answer["request"]["id"]
    code, message = await refused(decide(jp_fetch, "alice", rid))
    assert code == 403 and "your own" in message
    assert (await decide(jp_fetch, "bob", rid))["state"] == "approved"


async def test_reviewers_see_everything_others_only_their_own(jp_serverapp, jp_fetch):
    kernel = FakeKernel(jp_serverapp, jp_fetch)
    mine = await pending(kernel, "dave", "DELETE FROM orders")
    other = await pending(kernel, "alice")
    seen = await as_user(jp_fetch, "dave", "approvals", params={"state": "pending"})
    assert [a["id"] for a in seen["approvals"]] == [mine]
    one = seen["approvals"][0]
    assert one["requester"] == "dave" and one["statement"] == "DELETE FROM orders"
    assert one["rules"] == ["statement.where-required"] and one["kind"] == "sql"
    assert one["notebook"] == "work/cleanup.ipynb" and one["cell_code"] == "run it"
    assert one["kernel_id"] == kernel.id and one["min_approvals"] == 1
    assert one["expires_at"] > one["requested_at"]
    code, _ = await refused(as_user(jp_fetch, "dave", "approvals", str(other)))
    assert code == 404
    seen = await as_user(jp_fetch, "bob", "approvals")
    assert [a["id"] for a in seen["approvals"]] == [other, mine]
    seen = await as_user(jp_fetch, "bob", "approvals", params={"limit": "1"})
    assert [a["id"] for a in seen["approvals"]] == [other]
    code, message = await refused(as_user(jp_fetch, "bob", "approvals", params={"state": "x"}))
    assert code == 400 and "state must be one of" in message
    code, _ = await refused(jp_fetch("jupyter-audit", "api", "approvals"))  # no credentials
    assert code == 401


async def test_bad_decision_bodies_are_400(jp_serverapp, jp_fetch):
    kernel = FakeKernel(jp_serverapp, jp_fetch)
    rid = await pending(kernel)
    for body in ({}, {"decision": "yes"}, {"decision": "approve", "reason": 3}, {"x": 1}):
        code, message = await refused(
            as_user(jp_fetch, "bob", "approvals", str(rid), method="POST", body=body)
        )
        assert code == 400 and message, body
    code, _ = await refused(decide(jp_fetch, "bob", 999))
    assert code == 404


async def test_one_deny_decides(jp_serverapp, jp_fetch):
    kernel = FakeKernel(jp_serverapp, jp_fetch)
    rid = await pending(kernel, "alice", "DROP TABLE customers")
    denied = await decide(jp_fetch, "bob", rid, "deny", "not on a Friday")
    assert denied["state"] == "denied" and denied["reason"] == "not on a Friday"
    status = await kernel.call(str(rid))
    assert status["state"] == "denied" and status["reason"] == "not on a Friday"
    assert status["message"] == f"request #{rid} denied by bob: not on a Friday"
    code, _ = await refused(decide(jp_fetch, "carol", rid))
    assert code == 409
    report = {"statement_sha256": sha("DROP TABLE customers")}
    code, message = await refused(kernel.call(str(rid), method="POST", body={"executed": report}))
    assert code == 409 and "not approved" in message


async def test_break_glass_approves_alone_with_a_reason_and_is_flagged(jp_serverapp, jp_fetch):
    kernel = FakeKernel(jp_serverapp, jp_fetch)
    rid = await pending(kernel)
    code, message = await refused(decide(jp_fetch, "erin", rid))
    assert code == 400 and "break-glass decision needs a reason" in message
    code, _ = await refused(decide(jp_fetch, "erin", rid, reason="   "))
    assert code == 400
    done = await decide(jp_fetch, "erin", rid, reason="incident 4711: disk full")
    assert done["state"] == "approved" and done["decisions"][0]["break_glass"] is True
    decided = [e for e in trail_events(kernel.audit) if e["kind"] == "approval.decided"]
    assert decided[-1]["payload"]["break_glass"] is True
    assert decided[-1]["identity"]["username"] == "erin"
    # `me` names the role, as the collector's does, so the panel asks erin for a reason
    assert "break-glass" in (await as_user(jp_fetch, "erin", "me"))["roles"]
    assert "break-glass" not in (await as_user(jp_fetch, "carol", "me"))["roles"]


async def test_the_kernel_endpoints_refuse_a_wrong_secret_and_another_kernels_request(
    jp_serverapp, jp_fetch
):
    kernel, other = FakeKernel(jp_serverapp, jp_fetch), FakeKernel(jp_serverapp, jp_fetch)
    rid = await pending(kernel)
    for call in (
        kernel.call(method="POST", body={"kind": "sql"}, secret="wrong"),
        kernel.call(str(rid), secret="wrong"),
        kernel.call(str(rid), method="POST", body={"cancel": "interrupt"}, secret=other.secret),
    ):
        code, message = await refused(call)
        assert code == 403 and "kernel secret" in message
    for call in (
        other.call(str(rid)),
        other.call(str(rid), method="POST", body={"cancel": "interrupt"}),
        other.call("424242"),
    ):
        code, _ = await refused(call)
        assert code == 404
    assert (await kernel.call(str(rid)))["state"] == "pending"
    # a cell of another kernel, an unknown cell, a finished cell: cannot be attributed
    for msg_id in (other.cell("alice"), "no-such-cell"):
        answer = await kernel.ask(msg_id)
        assert answer["decision"] == "deny" and answer["request"] is None
        assert answer["reasons"][0]["rule"] == "approval.unattributed"
    finished = kernel.cell("alice")
    kernel.audit.cells.replied(finished)
    assert (await kernel.ask(finished))["decision"] == "deny"
    rejected = [e for e in trail_events(kernel.audit) if e["kind"] == "security.rejected"]
    assert len(rejected) == 4  # three wrong secrets, one cell of another kernel
    assert rejected[-1]["payload"]["reason"] == "approval request names a cell of another kernel"


@pytest.mark.parametrize("audit_config", [{"reviewer_groups": [], "break_glass_groups": []}])
async def test_a_forced_review_no_one_can_decide_says_so_and_fails_closed(
    jp_serverapp, jp_fetch, audit_config
):
    """Review not possible (no reviewer groups) and a rule forcing review: no one may decide,
    the waiting cell is told so, and the request can only expire."""
    policy = jp_serverapp.web_app.settings["jupyter_audit_approvals"].policy
    assert not policy.review_possible
    policy.rules = [{"rule": "statement.where-required", "action": "review", "force": True}]
    kernel = FakeKernel(jp_serverapp, jp_fetch)
    answer = await kernel.ask(kernel.cell("alice"))
    assert answer["decision"] == "review"
    message = answer["request"]["message"]
    assert "no one here can decide it" in message and "will not run and expires at" in message
    rid = answer["request"]["id"]
    for who in ("bob", "alice"):
        code, _ = await refused(decide(jp_fetch, who, rid, "approve"))
        assert code == 403, who
    status = await kernel.call(str(rid))
    assert status["state"] == "pending" and "no one here can decide it" in status["message"]


async def test_bad_kernel_bodies_are_400(jp_serverapp, jp_fetch):
    kernel = FakeKernel(jp_serverapp, jp_fetch)
    msg_id = kernel.cell("alice")
    for body in (
        {},
        {"kind": "sql", "msg_id": msg_id},
        {"kind": "sql", "statement": "DELETE FROM t", "msg_id": 3},
        {"kind": "sql", "statement": "DELETE FROM t", "msg_id": msg_id, "params_sha256": "xyz"},
        {"kind": "http", "method": "DELETE", "msg_id": msg_id},
        {"kind": "fax", "msg_id": msg_id},
        {"kind": "sql", "statement": "DELETE FROM t", "msg_id": msg_id, "params": "1"},
        {"kind": "sql", "statement": "DELETE FROM t", "msg_id": msg_id, "executemany": 1},
        {"kind": "shell", "command": "rm -rf x", "msg_id": msg_id, "params": [1]},
        {
            "kind": "sql",
            "statement": "DELETE FROM t",
            "msg_id": msg_id,
            "params": {"a": 1},
            "executemany": True,
        },
    ):
        code, message = await refused(kernel.call(method="POST", body=body))
        assert code == 400 and message, body
    rid = await pending(kernel)
    for body in ({}, {"cancel": "lunch"}, {"executed": "yes"}, {"executed": {}, "cancel": "x"}):
        code, _ = await refused(kernel.call(str(rid), method="POST", body=body))
        assert code == 400, body
    code, _ = await refused(kernel.call(str(rid), params={"wait": "soon"}))
    assert code == 400


async def test_executed_only_for_exactly_what_was_approved(jp_serverapp, jp_fetch):
    kernel = FakeKernel(jp_serverapp, jp_fetch)
    params = sha("[42]")
    answer = await kernel.ask(kernel.cell("alice"), "DELETE FROM customers", params)
    rid = answer["request"]["id"]
    early = {"statement_sha256": sha("DELETE FROM customers"), "params_sha256": params}
    code, message = await refused(kernel.call(str(rid), method="POST", body={"executed": early}))
    assert code == 409 and "pending, not approved" in message
    await decide(jp_fetch, "bob", rid)
    for wrong in (
        {"statement_sha256": sha("DELETE FROM customers; DROP TABLE x"), "params_sha256": params},
        {"statement_sha256": sha("DELETE FROM customers"), "params_sha256": sha("[43]")},
        {"statement_sha256": sha("DELETE FROM customers"), "params_sha256": None},
    ):
        code, message = await refused(
            kernel.call(str(rid), method="POST", body={"executed": wrong})
        )
        assert code == 409 and "must not run" in message
    done = await kernel.call(str(rid), method="POST", body={"executed": {**early, "error": None}})
    assert done["state"] == "executed"
    executed = [e for e in trail_events(kernel.audit) if e["kind"] == "approval.executed"]
    assert len(executed) == 1


async def test_the_kernel_cancels_and_then_nothing_runs(jp_serverapp, jp_fetch):
    kernel = FakeKernel(jp_serverapp, jp_fetch)
    rid = await pending(kernel)
    waiting = asyncio.ensure_future(kernel.call(str(rid), params={"wait": "30"}))
    cancelled = await kernel.call(str(rid), method="POST", body={"cancel": "interrupt"})
    assert cancelled["state"] == "cancelled"
    assert (await waiting)["state"] == "cancelled"  # the long poll returned at once
    code, _ = await refused(decide(jp_fetch, "bob", rid))
    assert code == 409
    code, _ = await refused(kernel.call(str(rid), method="POST", body={"cancel": "interrupt"}))
    assert code == 409
    decided = [e for e in trail_events(kernel.audit) if e["kind"] == "approval.decided"]
    assert decided[-1]["payload"]["decision"] == "cancelled"
    assert decided[-1]["payload"]["reason"] == "cancelled by the kernel: interrupt"


class TestExpiry:
    @pytest.fixture
    def audit_config(self):
        return {"approval_expiry": 1.0}

    async def test_an_undecided_request_expires(self, jp_serverapp, jp_fetch):
        kernel = FakeKernel(jp_serverapp, jp_fetch)
        rid = await pending(kernel)
        status = await kernel.call(str(rid), params={"wait": "20"})  # returns at the expiry
        assert status["state"] == "expired"
        assert status["message"] == f"request #{rid} expired: not decided within 0.0166667 minutes"
        code, message = await refused(decide(jp_fetch, "bob", rid))
        assert code == 409 and "expired" in message
        decided = [e for e in trail_events(kernel.audit) if e["kind"] == "approval.decided"]
        assert [e["payload"]["decision"] for e in decided] == ["expired"]


class TestTwoApprovals:
    @pytest.fixture
    def audit_config(self):
        return {"policy_class": TwoApprovalsPolicy, "break_glass_groups": ["break-glass"]}

    async def test_two_distinct_reviewers_other_than_the_requester(self, jp_serverapp, jp_fetch):
        kernel = FakeKernel(jp_serverapp, jp_fetch)
        rid = await pending(kernel, "alice")
        first = await decide(jp_fetch, "bob", rid)
        assert first["state"] == "pending" and first["min_approvals"] == 2
        assert "1 more approvals needed" in first["message"]
        code, message = await refused(decide(jp_fetch, "bob", rid))
        assert code == 409 and "already decided" in message
        code, _ = await refused(decide(jp_fetch, "alice", rid))
        assert code == 403
        second = await decide(jp_fetch, "carol", rid)
        assert second["state"] == "approved"
        assert [d["reviewer"] for d in second["decisions"]] == ["bob", "carol"]

    async def test_one_deny_after_an_approval_decides(self, jp_serverapp, jp_fetch):
        kernel = FakeKernel(jp_serverapp, jp_fetch)
        rid = await pending(kernel, "alice")
        await decide(jp_fetch, "bob", rid)
        assert (await decide(jp_fetch, "carol", rid, "deny"))["state"] == "denied"

    async def test_break_glass_completes_what_one_reviewer_began(self, jp_serverapp, jp_fetch):
        kernel = FakeKernel(jp_serverapp, jp_fetch)
        rid = await pending(kernel, "alice")
        await decide(jp_fetch, "bob", rid)
        done = await decide(jp_fetch, "erin", rid, reason="outage")
        assert done["state"] == "approved" and done["decisions"][1]["break_glass"] is True


def _two(decision):
    return dataclasses.replace(decision, min_approvals=2)


class TwoApprovalsPolicy(app_module.Policy):
    """The server's policy, with two approvals for everything it sends to review."""

    def check_sql(self, statement, **kw):
        return _two(super().check_sql(statement, **kw))


async def test_a_real_kernels_running_cell_is_the_requester_and_an_interrupt_cancels(
    jp_serverapp, jp_fetch, jp_ws_fetch
):
    """The gateway saw alice's cell go to the kernel: the request from that cell is alice's
    (the body names only the msg_id); interrupting the kernel cancels it, and once the cell
    has finished nothing more can be asked under its msg_id."""
    alice = {"X-Test-User": "alice"}
    kid, client = await open_kernel(jp_fetch, jp_ws_fetch, headers=alice)
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    status, out = await client.run("import os; print(os.environ['JUPYTER_AUDIT_APPROVALS_URL'])")
    assert status == "ok" and out.strip().endswith("/jupyter-audit/api/kernel/approvals")
    msg_id = client.send_execute("import time\nfor _ in range(600): time.sleep(0.1)")
    while audit.cells.lookup(msg_id) is None:  # the gateway forwards it
        await asyncio.sleep(0.05)
    kernel = FakeKernel(jp_serverapp, jp_fetch, kernel_id=kid)
    answer = await kernel.ask(msg_id)
    rid = answer["request"]["id"]
    assert answer["request"]["message"].endswith("by alice")
    seen = await as_user(jp_fetch, "bob", "approvals", str(rid))
    assert seen["requester"] == "alice" and seen["cell_code"].startswith("import time")
    waiting = asyncio.ensure_future(kernel.call(str(rid), params={"wait": "30"}))
    await jp_fetch("api", "kernels", kid, "interrupt", method="POST", body="", headers=alice)
    status = await waiting
    assert status["state"] == "cancelled" and status["reason"] == "kernel interrupt"
    while "replied_at" not in audit.cells.lookup(msg_id):  # the cell ends: KeyboardInterrupt
        await asyncio.sleep(0.05)
    assert (await kernel.ask(msg_id))["decision"] == "deny"
    # a restart cancels too
    msg_id = client.send_execute("import time\nfor _ in range(600): time.sleep(0.1)")
    while audit.cells.lookup(msg_id) is None:
        await asyncio.sleep(0.05)
    rid = (await kernel.ask(msg_id))["request"]["id"]
    await jp_fetch("api", "kernels", kid, "restart", method="POST", body="", headers=alice)
    status = await kernel.call(str(rid))
    assert status["state"] == "cancelled" and status["reason"] == "kernel restart"
    kinds = [
        (e["kind"], e["payload"].get("decision"))
        for e in trail_events(audit)
        if e["kernel_id"] == kid and not e["kind"].startswith("op.")
    ]
    assert kinds.index(("approval.requested", "review")) > kinds.index(("cell.requested", None))
    assert kinds.index(("approval.decided", "cancelled")) > kinds.index(
        ("session.interrupted", None)
    )


async def test_the_cli_lists_approves_and_denies_through_the_live_server(
    jp_serverapp, jp_fetch, jp_http_port, jp_base_url, capsys
):
    url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}"
    kernel = FakeKernel(jp_serverapp, jp_fetch)
    first = await pending(kernel, "alice")
    second = await pending(kernel, "alice", "DROP TABLE t -- \x1b[2J\x1b]0;owned\x07")

    def cli(*args, who="bob"):
        return asyncio.to_thread(
            cli_main, ["approvals", *args, "--url", url, "--token", f"as-{who}"]
        )

    capsys.readouterr()
    assert await cli("list") == 0
    out = capsys.readouterr().out
    assert f"#{first:<5} pending   alice" in out and "statement.where-required" in out
    assert "\x1b" not in out and "\\x1b[2J" in out  # escapes shown, never sent to the terminal
    assert await cli("approve", str(first), who="alice") == 2
    err = capsys.readouterr().err
    assert "server answered 403" in err and "your own" in err
    assert await cli("approve", str(first), "--reason", "ok") == 0
    assert capsys.readouterr().out.strip() == f"request #{first} approved by bob: ok"
    assert await cli("deny", str(second), "--json") == 0
    assert json.loads(capsys.readouterr().out)["state"] == "denied"
    assert await cli("list", "--state", "all", "--json", who="dave") == 0
    assert json.loads(capsys.readouterr().out) == {"approvals": []}
    assert await cli("list", "--state", "pending") == 0
    assert capsys.readouterr().out.strip() == "no pending approval requests"


async def test_pii_in_a_request_is_masked_wherever_reviewers_read_it(jp_serverapp, jp_fetch):
    """Review of issue 14: an email and a card number in the statement, its table names and
    the cell's code never reach the approvals API unmasked."""
    kernel = FakeKernel(jp_serverapp, jp_fetch)
    code = "# for jane.doe@example.com card 4111 1111 1111 1111\nrun()"
    statement = (
        'DELETE FROM "jane.doe@example.com" -- card 4111 1111 1111 1111\n'
        "WHERE 1=1 OR note = 'jane.doe@example.com'"
    )
    answer = await kernel.ask(kernel.cell("alice", code), statement)
    assert answer["decision"] == "review"
    rid = answer["request"]["id"]
    for raw in (
        json.dumps(answer),
        json.dumps(await as_user(jp_fetch, "bob", "approvals", str(rid))),
        json.dumps(await as_user(jp_fetch, "bob", "approvals")),
        json.dumps(await decide(jp_fetch, "bob", rid, "deny", "not for jane.doe@example.com")),
    ):
        assert "jane.doe@example.com" not in raw
        assert "4111 1111 1111 1111" not in raw
