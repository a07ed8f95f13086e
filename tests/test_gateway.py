"""The gateway in a real jupyter_server with real kernels, driven over the websocket the way
JupyterLab does (v1 subprotocol) and the legacy JSON protocol."""

import asyncio
import getpass
import json
import logging
import time
from contextlib import contextmanager

import pytest
from helpers.kernels import open_kernel
from helpers.servers import server_config
from helpers.trail import trail_events, wait_for
from jupyter_client.jsonutil import json_default
from jupyter_client.session import Session
from jupyter_server.services.kernels.connection.base import serialize_msg_to_ws_v1

PROBE = (
    "m = get_ipython().kernel.get_parent()['metadata'].get('jupyter_audit', {})\n"
    "print('stamped-as', m.get('username'))"
)


@pytest.fixture
def jp_server_config(trail_dir):
    return server_config(trail_dir / "trail.duckdb")


@contextmanager
def logged(logger: logging.Logger):
    """The messages `logger` logs meanwhile, from any thread. The AuditApp's logger does not
    propagate (traitlets sets it so), and whether pytest's caplog sees such a logger depends
    on when it was made non-propagating: this does not depend on it."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    handler = Collect(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)


def cell_requests(jp_serverapp):
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    audit.cell_requests.flush()
    audit.writer.flush()
    rows = (
        audit.writer.cursor()
        .execute("SELECT record FROM events WHERE kind = 'cell.requested' ORDER BY seq")
        .fetchall()
    )
    from jupyter_audit.store.queries import IdentityCache

    ids = IdentityCache(audit.writer.cursor())
    out = []
    for (rec,) in rows:
        r = json.loads(rec)
        r["identity"] = ids.get(r["identity_id"])
        out.append(r)
    return out


@pytest.mark.parametrize("v1", [True, False], ids=["v1-protocol", "legacy-json"])
async def test_each_execute_request_is_recorded_and_stamped(
    jp_serverapp, jp_fetch, jp_ws_fetch, v1
):
    kernel_id, client = await open_kernel(jp_fetch, jp_ws_fetch, v1=v1)
    status, out = await client.run(PROBE)
    assert status == "ok"
    me = getpass.getuser()
    assert out.strip() == f"stamped-as {me}"  # the kernel saw the server's stamp
    status, _ = await client.run("x = 40 + 2")
    reqs = cell_requests(jp_serverapp)
    assert [r["payload"]["code"] for r in reqs] == [PROBE, "x = 40 + 2"]
    for r in reqs:
        assert r["identity"]["username"] == me  # not the forged header.username
        assert r["identity"]["auth_method"] == "token"
        assert r["kernel_id"] == kernel_id and r["trace_id"] == kernel_id
        assert r["msg_id"] and r["payload"]["cell_id"].startswith("cell-")
    client.ws.close()


def test_message_parts_read_as_the_kernel_reads_them():
    """Parts are read as jupyter_client's Session reads them in the kernel: orjson, falling
    back to the standard library on the bytes decoded as UTF-8 with replacement characters;
    the metadata, written back with the stamp, is read exactly (orjson refuses an integer
    past 64 bits)."""
    from jupyter_client.session import json_unpacker, orjson_unpacker

    from jupyter_audit.server.gateway import _obj

    assert _obj(b'{"big": 1180591620717411303424}', exact=True) == {"big": 2**70}
    assert _obj(b'{"code": "x\\ud800"}') == {"code": "x\ud800"}  # a lone surrogate
    assert _obj(b'{"t": NaN}')["t"] != 0  # NaN: the standard library's reading
    assert _obj(b"[1]") == {} and _obj(b"") == {}
    odd = [
        b'{"msg_type": "\\u0065xecute_request"}',  # a JSON escape
        b'{"code": "x\xff\xfe"}',  # invalid UTF-8
        b'{"code": "\xef\xbb\xbfx", "\\u0063ode": "y"}',  # a BOM; a key given twice
        b'\xef\xbb\xbf{"a": 1}',
        b'{"msg_type": "execute_request", "msg_type": "kernel_info_request"}',
    ]
    for raw in odd:
        for unpack in (orjson_unpacker, json_unpacker):
            try:
                kernel = unpack(raw)
            except ValueError:
                kernel = "refused"
            try:
                ours = _obj(raw)
            except ValueError:
                ours = "refused"
            assert ours == kernel or (kernel == "refused" and ours == {}), raw
    assert _obj(odd[0]) == {"msg_type": "execute_request"}
    assert _obj(odd[1]) == {"code": "x\ufffd\ufffd"}


class TestTwoUsersOneKernel:
    @pytest.fixture
    def jp_server_config(self, trail_dir):
        return server_config(
            trail_dir / "trail.duckdb",
            server={"identity_provider_class": "helpers.identity.HeaderIdentityProvider"},
        )

    async def test_each_cell_is_attributed_to_whoever_sent_it(
        self, jp_serverapp, jp_fetch, jp_ws_fetch
    ):
        alice_h, bob_h = {"X-Test-User": "alice"}, {"X-Test-User": "bob"}
        # started by the server itself (a POST from this header-only login would need XSRF)
        kernel_id = await jp_serverapp.kernel_manager.start_kernel(kernel_name="python3")
        _, alice = await open_kernel(jp_fetch, jp_ws_fetch, headers=alice_h, kernel_id=kernel_id)
        _, bob = await open_kernel(jp_fetch, jp_ws_fetch, headers=bob_h, kernel_id=kernel_id)
        assert (await alice.run("a = 1"))[0] == "ok"
        assert (await bob.run("b = a + 1"))[0] == "ok"
        status, out = await alice.run(PROBE)
        assert out.strip() == "stamped-as alice"
        who = [
            (r["payload"]["code"], r["identity"]["username"]) for r in cell_requests(jp_serverapp)
        ]
        assert who == [("a = 1", "alice"), ("b = a + 1", "bob"), (PROBE, "alice")]
        alice.ws.close()
        bob.ws.close()

    async def test_a_cell_sent_straight_to_the_kernel_cannot_borrow_another_users_cell(
        self, jp_serverapp, jp_fetch, jp_ws_fetch
    ):
        """Code in a kernel can read its connection file and send an execute_request to the
        kernel's own shell port, with the msg_id of someone else's earlier cell. The kernel
        runs it; the trail does not put it under that person."""
        kernel_id = await jp_serverapp.kernel_manager.start_kernel(kernel_name="python3")
        _, alice = await open_kernel(
            jp_fetch, jp_ws_fetch, headers={"X-Test-User": "alice"}, kernel_id=kernel_id
        )
        _, bob = await open_kernel(
            jp_fetch, jp_ws_fetch, headers={"X-Test-User": "bob"}, kernel_id=kernel_id
        )
        alice_msg = alice.send_execute("alices = get_ipython().kernel.get_parent()")
        assert (await alice.run("x = 1"))[0] == "ok"
        sneak = (
            "from ipykernel.connect import get_connection_file\n"
            "from jupyter_client import BlockingKernelClient\n"
            "kc = BlockingKernelClient(connection_file=get_connection_file())\n"
            "kc.load_connection_file(); kc.start_channels()\n"
            "m = kc.session.msg('execute_request', {'code': \"import sqlite3; "
            "sqlite3.connect(':memory:').execute('select 42')\", 'silent': False, "
            "'store_history': False, 'user_expressions': {}, 'allow_stdin': False})\n"
            "m['header']['msg_id'] = alices['header']['msg_id']\n"
            "kc.shell_channel.send(m)\n"
        )
        assert (await bob.run(sneak))[0] == "ok"
        recorder = jp_serverapp.web_app.settings["jupyter_audit"]

        def replayed(events):
            return [e for e in events if e["msg_id"] == alice_msg and "msg_id_reused" in e["flags"]]

        events = await wait_for(
            recorder, lambda ev: any(e["kind"] == "op.unattributed" for e in replayed(ev))
        )
        for e in events:
            if e["msg_id"] == alice_msg and e["kind"] != "cell.requested":
                mine = e["identity"] and e["identity"]["username"] == "alice"
                assert mine != ("msg_id_reused" in e["flags"]), e
        kinds = [e["kind"] for e in replayed(events)]
        assert kinds[0] == "cell.started" and "op.unattributed" in kinds
        sql = next(e for e in replayed(events) if e["kind"] == "op.unattributed")
        assert "select 42" in sql["payload"]["statement"] and sql["identity"] is None
        alice.ws.close()
        bob.ws.close()


def execute_request(code: str, msg_id: str | None = None) -> dict:
    msg = Session(username="mallory").msg(
        "execute_request",
        {"code": code, "silent": False, "store_history": True, "allow_stdin": False},
    )
    if msg_id:
        msg["header"]["msg_id"] = msg_id
    return json.loads(json.dumps(msg, default=json_default))


async def closed_by_server(ws, timeout: float = 20) -> bool:
    """True once the server closes the websocket (messages before that are skipped)."""

    async def drain():
        while await ws.read_message() is not None:
            pass

    await asyncio.wait_for(drain(), timeout)
    return True


class TestNoWayAround:
    """Every framing a client could use to make the kernel run code is recorded, or refused
    when it cannot be: nothing runs without a `cell.requested`."""

    async def test_legacy_framings_are_recorded(self, jp_serverapp, jp_fetch, jp_ws_fetch):
        from jupyter_server.services.kernels.connection.base import serialize_binary_message

        kernel_id, client = await open_kernel(jp_fetch, jp_ws_fetch, v1=False)
        no_channel = execute_request("print('no channel')")
        no_channel["channel"] = None
        no_channel["metadata"] = None
        client.ws.write_message(json.dumps(no_channel))
        binary = execute_request("print('binary frame')")
        binary["channel"] = "shell"
        binary["buffers"] = [b"x"]
        client.ws.write_message(serialize_binary_message(binary), binary=True)
        assert (await client.run("print('last')"))[0] == "ok"
        codes = [r["payload"]["code"] for r in cell_requests(jp_serverapp)]
        assert "print('no channel')" in codes and "print('binary frame')" in codes
        client.ws.close()

    @pytest.mark.parametrize("v1", [True, False], ids=["v1-protocol", "legacy-json"])
    async def test_control_channel_execute_and_reused_msg_id_are_refused(
        self, jp_serverapp, jp_fetch, jp_ws_fetch, v1, tmp_path
    ):
        kernel_id, client = await open_kernel(jp_fetch, jp_ws_fetch, v1=v1)
        marker = tmp_path / "ran-unrecorded"
        sneaky = execute_request(f"open({str(marker)!r}, 'w')")
        client.send(sneaky, "control")
        assert await closed_by_server(client.ws)
        assert cell_requests(jp_serverapp) == []
        await asyncio.sleep(1)
        assert not marker.exists()  # the kernel never got it

        _, client = await open_kernel(jp_fetch, jp_ws_fetch, v1=v1, kernel_id=kernel_id)
        first = client.send_execute("y = 1")
        await asyncio.sleep(1)
        reused = execute_request("y = 'from someone else'", msg_id=first)
        client.send(reused, "shell")
        assert await closed_by_server(client.ws)
        assert [r["payload"]["code"] for r in cell_requests(jp_serverapp)] == ["y = 1"]

    @pytest.mark.parametrize("v1", [True, False], ids=["v1-protocol", "legacy-json"])
    async def test_an_execute_request_written_to_be_misread_is_recorded_as_the_kernel_reads_it(
        self, jp_serverapp, jp_fetch, jp_ws_fetch, v1, tmp_path
    ):
        """The type written with a JSON escape, the code with bytes that are not UTF-8: the
        gateway reads the message as the kernel will, so it is recorded before it runs."""
        kernel_id, client = await open_kernel(jp_fetch, jp_ws_fetch, v1=v1)
        marker = tmp_path / "ran"
        req = execute_request(f"open({str(marker)!r}, 'w').write('x')  # é")
        header = json.dumps(req["header"]).replace('"execute_request"', '"\\u0065xecute_request"')
        assert "execute_request" not in header
        if v1:
            content = json.dumps(req["content"], ensure_ascii=False).encode()
            content = content.replace("é".encode(), b"\xff")  # not UTF-8
            parts = [header.encode(), b"{}", b"{}", content]
            client.ws.write_message(serialize_msg_to_ws_v1(parts, "shell"), binary=True)
        else:
            body = json.dumps({**req, "channel": "shell", "header": "HEADER"})
            client.ws.write_message(body.replace('"HEADER"', header))
        assert (await client.run("print('after')"))[0] == "ok"
        assert marker.exists()  # it ran: and the trail has it, under the socket's user
        [first, after] = cell_requests(jp_serverapp)
        assert str(marker) in first["payload"]["code"]
        assert first["payload"]["code"].endswith("# \ufffd" if v1 else "# é")
        assert first["identity"]["username"] == getpass.getuser()
        client.ws.close()

    @pytest.mark.parametrize(
        "frame",
        ["v1-header-cut", "v1-content-cut", "v1-channel-not-utf8", "legacy-binary-not-utf8"],
    )
    async def test_a_message_the_gateway_cannot_read_is_refused_and_recorded(
        self, jp_serverapp, jp_fetch, jp_ws_fetch, frame, tmp_path
    ):
        from jupyter_server.services.kernels.connection.base import serialize_binary_message

        kernel_id, client = await open_kernel(jp_fetch, jp_ws_fetch, v1=frame.startswith("v1"))
        marker = tmp_path / "ran-unrecorded"
        req = execute_request(f"open({str(marker)!r}, 'w')")
        parts = [json.dumps(req[k]).encode() for k in ("header", "parent_header", "metadata")]
        content = json.dumps(req["content"]).encode()
        if frame == "v1-header-cut":
            data = serialize_msg_to_ws_v1([parts[0][:-9], *parts[1:], content], "shell")
        elif frame == "v1-content-cut":
            data = serialize_msg_to_ws_v1([*parts, content[:-2]], "shell")
        elif frame == "v1-channel-not-utf8":
            data = serialize_msg_to_ws_v1([*parts, content], "shXll")
            data = data.replace(b"shXll", b"sh\xffll")
        else:
            data = serialize_binary_message({**req, "channel": "shell", "buffers": [b"x"]})
            data = data.replace(b'"shell"', b'"sh\xffll"')
        client.ws.write_message(data, binary=True)
        assert await closed_by_server(client.ws)
        assert client.ws.close_code == 4003 and "could not be read" in client.ws.close_reason
        await asyncio.sleep(1)
        assert not marker.exists() and cell_requests(jp_serverapp) == []
        recorder = jp_serverapp.web_app.settings["jupyter_audit"]
        [rejected] = [e for e in trail_events(recorder) if e["kind"] == "security.rejected"]
        assert rejected["payload"]["reason"].startswith("message could not be read")
        assert rejected["kernel_id"] == kernel_id
        assert rejected["identity"]["username"] == getpass.getuser()  # who sent it

    async def test_user_expressions_are_recorded_masked_with_the_code(
        self, jp_serverapp, jp_fetch, jp_ws_fetch, tmp_path
    ):
        """The kernel evaluates user_expressions after the code: they are code too."""
        kernel_id, client = await open_kernel(jp_fetch, jp_ws_fetch)
        marker = tmp_path / "from-an-expression"
        req = execute_request("x = 1")
        req["content"]["user_expressions"] = {
            "side_effect": f"open({str(marker)!r}, 'w').write('bob@example.com')",
        }
        client.send(req, "shell")
        assert (await client.run("print('after')"))[0] == "ok"
        assert marker.exists()
        [first, _after] = cell_requests(jp_serverapp)
        recorded = first["payload"]["user_expressions"]["side_effect"]
        assert str(marker) in recorded and "bob@example.com" not in recorded
        assert "‹EMAIL:" in recorded
        client.ws.close()

    async def test_content_sent_as_a_json_string_is_recorded_as_the_kernel_reads_it(
        self, jp_serverapp, jp_fetch, jp_ws_fetch, tmp_path
    ):
        """jupyter_client's Session forwards a str content as it is and the kernel parses
        it: the gateway reads it the same way (it once recorded such a cell as empty)."""
        kernel_id, client = await open_kernel(jp_fetch, jp_ws_fetch, v1=False)
        marker = tmp_path / "ran"
        req = execute_request(f"open({str(marker)!r}, 'w')")
        req["content"] = json.dumps(req["content"])
        req["channel"] = "shell"
        client.ws.write_message(json.dumps(req))
        assert (await client.run("print('after')"))[0] == "ok"
        assert marker.exists()
        [first, _after] = cell_requests(jp_serverapp)
        assert str(marker) in first["payload"]["code"]
        # content that is no object at all is refused
        bad = execute_request("1")
        bad["content"], bad["channel"] = ["not", "an", "object"], "shell"
        client.ws.write_message(json.dumps(bad))
        assert await closed_by_server(client.ws)

    @pytest.mark.parametrize("v1", [True, False], ids=["v1-protocol", "legacy-json"])
    async def test_code_the_debugger_evaluates_is_recorded_first(
        self, jp_serverapp, jp_fetch, jp_ws_fetch, v1
    ):
        """JupyterLab's debugger sends debug_request on the control channel; an `evaluate`
        (or a value set, a breakpoint condition) runs code: it is recorded under the
        socket's user like a cell, before it reaches the kernel."""
        kernel_id, client = await open_kernel(jp_fetch, jp_ws_fetch, v1=v1)
        msg = Session(username="mallory").msg(
            "debug_request",
            {
                "type": "request",
                "seq": 1,
                "command": "evaluate",
                "arguments": {"expression": "open('/tmp/x-debug', 'w')", "context": "repl"},
            },
        )
        client.send(msg, "control")
        assert (await client.run("print('after')"))[0] == "ok"
        first = cell_requests(jp_serverapp)[0]
        assert first["payload"]["code"] == "open('/tmp/x-debug', 'w')"
        assert first["payload"]["debug_command"] == "evaluate"
        assert first["identity"]["username"] == getpass.getuser()
        assert first["msg_id"] == msg["header"]["msg_id"]
        client.ws.close()

    async def test_code_the_trail_cannot_record_never_reaches_the_kernel(
        self, jp_serverapp, jp_fetch, jp_ws_fetch, tmp_path, caplog
    ):
        """A cell's event is prepared after the message is on its way (fail_mode=open), so
        what could make preparing it fail is checked before: code with a lone surrogate
        (JSON can carry one, UTF-8 cannot) is refused, not run unrecorded."""
        kernel_id, client = await open_kernel(jp_fetch, jp_ws_fetch)
        marker = tmp_path / "ran-unrecorded"
        client.send_execute(f"open({str(marker)!r}, 'w')  # \ud800")
        assert (await client.run("z = 3"))[0] == "ok"  # the socket stays usable
        await asyncio.sleep(0.5)
        assert not marker.exists()
        assert [r["payload"]["code"] for r in cell_requests(jp_serverapp)] == ["z = 3"]
        assert "payload.code: not valid UTF-8 text" in caplog.text
        client.ws.close()

    async def test_a_cell_whose_event_fails_after_forwarding_is_still_recorded(
        self, jp_serverapp, jp_fetch, jp_ws_fetch, monkeypatch
    ):
        """Should preparing a forwarded cell's event fail after all (the checks before
        forwarding are meant to rule it out), the cell is recorded without its text: the
        user, its ids, the code withheld as a pseudonym, flagged `unstorable`."""
        from jupyter_audit.events import EventValidationError

        audit = jp_serverapp.web_app.settings["jupyter_audit"]
        real = audit.writer.prepare_many

        def failing(events, event_ids=None):
            out = real(events, event_ids)
            return [
                EventValidationError("payload.code: simulated failure")
                if e.get("kind") == "cell.requested" and not e.get("flags")
                else p
                for e, p in zip(events, out, strict=True)
            ]

        monkeypatch.setattr(audit.writer, "prepare_many", failing)
        kernel_id, client = await open_kernel(jp_fetch, jp_ws_fetch)
        with logged(audit.log) as lines:
            status, out = await client.run("print('ran')")
            assert status == "ok" and out.strip() == "ran"
            [req] = cell_requests(jp_serverapp)
        assert req["flags"] == ["unstorable"]
        assert req["payload"]["code"].startswith("‹WITHHELD:") and "ran" not in json.dumps(req)
        assert req["identity"]["username"] == getpass.getuser()
        assert req["kernel_id"] == kernel_id and req["msg_id"]
        assert any("recorded without its text" in line for line in lines)
        client.ws.close()


async def test_cell_requests_are_committed_together():
    """fail_mode=open: cell.requested events go to the writer as one batch once cells stop
    coming for `quiet`, or the oldest has waited `max_wait`; flush() sends them at once.
    They go raw, with their stamped event ids, and a fallback for what fails validation."""
    import logging
    from concurrent.futures import Future

    from jupyter_audit.server.recorder import CellRequests

    batches = []

    class Writer:
        masker = None

        def submit_later(self, events, event_ids, fallback):
            assert event_ids == [f"id{e}" for e in events] and callable(fallback)
            batches.append(list(events))
            fut = Future()
            fut.set_result([])
            return fut

    requests = CellRequests(Writer(), logging.getLogger("test"), quiet=0.3, max_wait=1.0)
    for i in range(3):  # (each add after the wait: the last one is surely still queued)
        await asyncio.sleep(0.01)
        requests.add(i, f"id{i}")
    assert batches == []
    await asyncio.sleep(0.6)
    assert batches == [[0, 1, 2]]
    for i in range(50):  # a steady stream: committed at least every max_wait
        await asyncio.sleep(0.03)
        requests.add(i, f"id{i}")
    assert len(batches) >= 2 and sum(map(len, batches)) < 53
    requests.flush()
    assert sum(map(len, batches)) == 53
    n = len(batches)
    requests.flush()  # nothing left: nothing submitted
    assert len(batches) == n


async def test_a_cells_record_precedes_its_kernels_report(jp_serverapp, jp_fetch, jp_ws_fetch):
    """However long cell.requested events wait to be committed together, the kernel ingest
    sends them on before what the kernel reports about those cells."""
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    audit.cell_requests.quiet = audit.cell_requests.max_wait = 3600  # only the ingest flushes
    kernel_id, client = await open_kernel(jp_fetch, jp_ws_fetch)
    codes = [f"x = {i}" for i in range(5)]
    for code in codes:
        assert (await client.run(code))[0] == "ok"
    deadline = time.monotonic() + 30
    while True:
        audit.writer.flush()
        rows = (
            audit.writer.cursor()
            .execute("SELECT kind, msg_id FROM events WHERE trace_id = ? ORDER BY seq", [kernel_id])
            .fetchall()
        )
        if sum(kind == "cell.finished" for kind, _ in rows) == len(codes):
            break
        assert time.monotonic() < deadline, rows
        await asyncio.sleep(0.1)
    position = {}
    for i, row in enumerate(rows):
        position.setdefault(row, i)
    reported = [(k, m) for k, m in position if k in ("cell.started", "cell.finished")]
    assert len(reported) == 2 * len(codes)
    for kind, msg_id in reported:
        assert position[("cell.requested", msg_id)] < position[(kind, msg_id)]
    client.ws.close()
