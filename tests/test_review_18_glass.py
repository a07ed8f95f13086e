"""Review of break-glass approvals at the Hub's collector (issue 18): what an insider with a
break-glass membership could try, each kept closed. The collector's broker over its real
trail store (DuckDB, then PostgreSQL with JUPYTER_AUDIT_TEST_PG_DSN); the Hub's users as
`helpers.collector` gives them."""

from __future__ import annotations

import pytest
from helpers import hub_approvals
from helpers.approvals import hub_question
from helpers.collector import ALICE_SERVER, personal_token_user

from jupyter_audit.approvals.model import Refused
from jupyter_audit.collector.approvals import hub_broker
from jupyter_audit.collector.service import hub_identity
from jupyter_audit.server.recorder import Recorder

GLASS = ["break-glass"]
collector_store = hub_approvals.collector_store

# characters that draw nothing although Unicode calls them letters, symbols or marks:
# the Hangul fillers, the Braille blank, the combining grapheme joiner, Khmer's inherent
# vowels, a variation selector, Mongolian free variation selectors
BLANK = [
    "\u3164",
    "\u115f\u1160",
    "\uffa0",
    "\u2800",
    "\u034f",
    "\u17b4\u17b5",
    "\ufe0f",
    "\u180b",
    "\u3164 \u2800\u200b",
]


@pytest.mark.parametrize("reason", BLANK)
def test_a_break_glass_reason_of_invisible_letters_is_no_reason(collector_store, reason):
    """A break-glass decision needs a reason a reviewer of the trail can read: one of
    Hangul fillers (category Lo) or the Braille blank (So) reads as none in every listing,
    as zero-width characters do; refused, and nothing is recorded."""
    broker = hub_broker(Recorder(collector_store), reviewer_groups=(), break_glass_groups=GLASS)
    try:
        rid = broker.ask_for("alice/", ALICE_SERVER, hub_question())["request"]["id"]
        erin = hub_identity(personal_token_user("erin", GLASS))
        with pytest.raises(Refused) as e:
            broker.decide(rid, erin, reviewer=False, decision="approve", reason=reason)
        assert e.value.status == 400 and "reason" in e.value.message
        assert broker.get(rid, erin, reviewer=False).state == "pending"
        # a reason with one visible character beside them is a reason
        done = broker.decide(rid, erin, reviewer=False, decision="deny", reason=reason + "x")
        assert done.state == "denied"
    finally:
        broker.close()


# erin's server's token on a Hub whose `c.Spawner.server_token_scopes` left out the default
# `access:servers!server` (docs/collector.md lists it; an administrator may not): nothing in
# its scopes says it is a server's, and every kernel of erin's server (a collaborator's
# included, on a shared server) can read it from the environment
BARE_SERVER_TOKEN = "erin-bare-server-token"
BARE_SERVER = {
    "kind": "user",
    "name": "erin",
    "groups": GLASS,
    "scopes": ["users:activity!user=erin", "access:services!service=jupyter-audit"],
}


@pytest.fixture
def glass_hub(collector_store):
    from helpers.collector import CollectorWeb, HubStandIn

    from jupyter_audit.collector.service import Collector

    users = {
        BARE_SERVER_TOKEN: BARE_SERVER,
        "erin-token": personal_token_user("erin", GLASS),
    }
    web = CollectorWeb(
        Collector(collector_store, Recorder(collector_store)),
        HubStandIn(users),
        reviewer_groups=(),
        break_glass_groups=GLASS,
    )
    web.start()
    yield web
    web.close()


async def test_a_token_a_server_forwarded_with_never_decides_whatever_its_scopes(glass_hub):
    """A kernel on erin's server reads her server's token and, as erin, a break-glass member,
    approves any server's request alone. Its scopes do not say it is a server's; that it
    forwarded (or asked) as a server does: 403, recorded; erin's own token still decides."""
    import asyncio

    from helpers.hub_approvals import at_hub, collector_events, rejections

    hub = glass_hub
    ask = hub.approvals.ask_for
    rid = (await asyncio.to_thread(ask, "alice/", ALICE_SERVER, hub_question()))["request"]["id"]
    code, state = await at_hub(hub, BARE_SERVER_TOKEN, "GET", "api/forward/state")
    assert code == 200, state  # the server's forwarder asks where to resume, at start
    path = f"jupyter-audit/api/approvals/{rid}"
    code, body = await at_hub(
        hub, BARE_SERVER_TOKEN, "POST", path, {"decision": "approve", "reason": "on call"}
    )
    assert code == 403 and "server" in body["message"], body
    events = await asyncio.to_thread(collector_events, hub)
    assert rejections(events, "does not decide approvals")
    assert not [e for e in events if e["kind"] == "approval.decided"]
    code, body = await at_hub(
        hub, "erin-token", "POST", path, {"decision": "approve", "reason": "on call"}
    )
    assert code == 200 and body["state"] == "approved", body
