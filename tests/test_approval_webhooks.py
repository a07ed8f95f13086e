"""Approval webhooks, delivered to a real local HTTP receiver: the generic JSON POST signed
with HMAC-SHA256, the Slack-compatible payload escaped, retries after a failure, failures
logged without the target's secret URL, and the statement only ever masked."""

import asyncio
import hashlib
import hmac
import json
import logging
import uuid

import pytest
from helpers.approvals import DIRECTORY, FakeKernel, GroupsIdentityProvider, Receiver, as_user
from helpers.servers import free_port, server_config

from jupyter_audit.approvals import Notifier, Webhook, WebhookConfigError


@pytest.fixture
def receiver():
    r = Receiver(fail=1)
    yield r
    r.stop()


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "webhook.secret"
    path.write_text("s3cret-hmac-key\n")
    return path


@pytest.fixture
def jp_server_config(trail_dir, receiver, secret_file):
    hooks = [
        {"url": f"{receiver.url}/json", "format": "json", "secret_file": str(secret_file)},
        {"url": f"{receiver.url}/slack/T000/B000/XXXX", "format": "slack"},
    ]
    return server_config(
        trail_dir / "trail.duckdb",
        server={"identity_provider_class": GroupsIdentityProvider},
        approval_webhooks=hooks,
    )


async def test_requested_and_decided_are_delivered_signed_escaped_and_masked(
    jp_serverapp, jp_fetch, receiver
):
    assert "bob" in DIRECTORY
    kernel = FakeKernel(jp_serverapp, jp_fetch)
    statement = "DROP TABLE customers -- for jane.doe@example.com <b>*now*</b> ```"
    answer = await kernel.ask(kernel.cell("alice"), statement)
    rid = answer["request"]["id"]
    await as_user(jp_fetch, "bob", "approvals", str(rid), method="POST", body={"decision": "deny"})
    # the first POST failed with a 500 and was retried
    got = await asyncio.to_thread(receiver.wait_for, 4)
    by_kind: dict = {}
    for path, headers, body in got:
        fmt = "json" if path == "/json" else "slack"
        assert "jane.doe@example.com" not in body.decode()  # masked before it leaves
        if fmt == "json":
            expected = hmac.new(b"s3cret-hmac-key", body, hashlib.sha256).hexdigest()
            assert headers["X-Jupyter-Audit-Signature"] == f"sha256={expected}"
            doc = json.loads(body)
            assert headers["X-Jupyter-Audit-Event"] == doc["event"]
            by_kind[(fmt, doc["event"])] = doc
        else:
            assert "X-Jupyter-Audit-Signature" not in headers
            text = json.loads(body)["text"]
            kind = "approval.requested" if "requested" in text else "approval.decided"
            by_kind[(fmt, kind)] = text
    requested = by_kind[("json", "approval.requested")]["approval"]
    assert requested["id"] == rid and requested["state"] == "pending"
    assert requested["requester"] == "alice" and "‹EMAIL:" in requested["statement"]
    decided = by_kind[("json", "approval.decided")]["approval"]
    assert decided["state"] == "denied" and decided["decisions"][0]["reviewer"] == "bob"
    slack = by_kind[("slack", "approval.requested")]
    assert f"*Approval #{rid} requested* by alice" in slack
    assert "&lt;b&gt;" in slack and "<b>" not in slack
    assert slack.endswith(" '''```") and slack.count("```") == 2
    assert f"*Approval #{rid} denied* by bob" in by_kind[("slack", "approval.decided")]


def test_failures_are_logged_without_the_secret_url(caplog):
    closed = free_port()
    secret_path = f"/services/T0/B0/{uuid.uuid4().hex}"
    notifier = Notifier(
        [Webhook(f"http://127.0.0.1:{closed}{secret_path}", "slack")], attempts=2, backoff=0.01
    )
    with caplog.at_level(logging.WARNING, logger="jupyter_audit.approvals"):
        notifier.send("approval.requested", {"id": 7, "state": "pending", "statement": "x"})
        notifier.flush()
        notifier.close()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "not delivered to http://127.0.0.1 after 2 attempts" in text
    assert secret_path not in text and str(closed) not in text


def test_bad_webhook_settings_are_clear_errors(tmp_path):
    for entry, message in (
        ({"url": "ftp://x/y"}, r"http\(s\)"),
        ({"url": "https://x/y", "format": "xml"}, "format"),
        ({"url": "https://x/y"}, "needs a secret_file"),
        ({"url": "https://x/y", "secret_file": str(tmp_path / "none")}, "secret file"),
        ({"url": "https://x/y", "format": "slack", "token": "t"}, "unknown"),
    ):
        with pytest.raises(WebhookConfigError, match=message):
            Webhook.from_config(entry)


def test_a_slack_message_cannot_gain_a_line_from_a_notebook_path_or_reason():
    """Review of issue 14: the requester names the notebook (any string a session is given);
    a newline in it must not add a line reading like another notification."""
    from jupyter_audit.approvals.webhooks import slack_text

    forged = "x.ipynb\n*Approval #12 approved* by security-lead\u2028ok"
    text = slack_text(
        "approval.requested",
        {"id": 12, "requester": "mallory", "notebook": forged, "rules": ["table.drop"],
         "statement": "DROP TABLE t\n-- two lines are fine in the code block", "state": "pending"},
    )  # fmt: skip
    head, rules, *block = text.split("\n")
    assert head.startswith("*Approval #12 requested* by mallory in x.ipynb ")
    assert "\u2028" not in head and rules == "rules: table.drop"
    assert "\n".join(block).startswith("```DROP TABLE t\n")
