"""Cell events from a real kernel, over the real transport, to a real HTTP endpoint."""

import re

KERNEL_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def test_cell_started_and_finished_with_outputs(audited):
    msg_id = audited.run(
        "print('hello')\n"
        "from IPython.display import display, HTML\n"
        "display(HTML('<b>x</b>'))\n"
        "6 * 7",
        metadata={"cellId": "cell-abc"},
    )
    events = audited.ingest.cell(msg_id)
    started = [e for e in events if e["kind"] == "cell.started"]
    finished = [e for e in events if e["kind"] == "cell.finished"]
    assert len(started) == 1 and len(finished) == 1
    s, f = started[0]["payload"], finished[0]["payload"]
    assert s["code"].startswith("print('hello')")
    assert s["silent"] is False
    assert s["cell_id"] == "cell-abc"
    assert isinstance(s["execution_count"], int)
    assert f["status"] == "ok" and f["error"] is None
    assert f["execution_count"] == s["execution_count"]
    assert isinstance(f["duration_us"], int) and f["duration_us"] > 0
    kinds = [(o["output_type"], o["text"]) for o in f["outputs"]]
    assert ("stream", "hello\n") in kinds
    assert ("execute_result", "42") in kinds
    html = [o for o in f["outputs"] if o["output_type"] == "display_data"][0]
    assert "text/html" in html["mime_types"] and html["bytes"] > 0
    assert started[0]["op_index"] < finished[0]["op_index"]


def test_wire_format(audited):
    msg_id = audited.run("1 + 1")
    audited.ingest.cell(msg_id)
    for e in audited.ingest.events():
        assert set(e) == {"event_id", "kind", "msg_id", "op_index", "kernel_time", "payload"}
        assert re.fullmatch(r"[0-9a-f]{32}", e["event_id"])
        assert KERNEL_TIME.match(e["kernel_time"])
        assert isinstance(e["op_index"], int)
        # nothing about the user: identity is the server's business
        assert not {"identity", "user", "username", "trace_id"} & set(e)
    events = audited.ingest.events()
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids))
    indexes = [e["op_index"] for e in events]
    assert len(indexes) == len(set(indexes))
    # IPython's own history database is not user work
    assert not [e for e in events if "history" in str(e["payload"].get("database"))]
    # every batch: kernel id in the body, the secret and kernel id in the headers
    for b in audited.ingest.batches:
        assert b["kernel_id"] == "test-kernel"
    for r in audited.ingest.requests:
        assert r["headers"]["Authorization"] == "JupyterAudit-Kernel kernel-secret-for-tests"
        assert r["headers"]["X-Jupyter-Audit-Kernel"] == "test-kernel"
        assert r["path"] == "/jupyter-audit/api/kernel/events"


def test_op_index_increases_within_a_cell(audited):
    msg_id = audited.run(
        "import sqlite3\nc = sqlite3.connect(':memory:')\nfor i in range(5):\n    c.execute('select ?', (i,))"
    )
    events = sorted(audited.ingest.cell(msg_id), key=lambda e: e["op_index"])
    kinds = [e["kind"] for e in events]
    assert kinds == ["cell.started"] + ["op.sql"] * 5 + ["cell.finished"]
    assert [e["payload"]["params"] for e in events[1:6]] == [[0], [1], [2], [3], [4]]
    times = [e["kernel_time"] for e in events]
    assert times == sorted(times)


def test_error_is_captured(audited):
    msg_id, reply = audited.execute("def f():\n    raise ValueError('bad value')\nf()")
    assert reply["status"] == "error"
    f = [e for e in audited.ingest.cell(msg_id) if e["kind"] == "cell.finished"][0]["payload"]
    assert f["status"] == "error"
    assert f["error"]["ename"] == "ValueError"
    assert f["error"]["evalue"] == "bad value"
    assert any("raise ValueError" in line for line in f["error"]["traceback"])
    assert any(o["output_type"] == "error" for o in f["outputs"])


def test_silent_execution_is_reported(audited):
    msg_id, reply = audited.execute("_silent_probe = 1", silent=True)
    assert reply["status"] == "ok"
    events = audited.ingest.cell(msg_id)
    started = [e for e in events if e["kind"] == "cell.started"][0]["payload"]
    finished = [e for e in events if e["kind"] == "cell.finished"][0]["payload"]
    assert started["silent"] is True and started["code"] == "_silent_probe = 1"
    assert started["execution_count"] is None
    assert finished["status"] == "ok"


def test_aborted_cell_is_reported(audited):
    first, _ = audited.execute("import time; time.sleep(0.3); 1/0", wait=False)
    second, _ = audited.execute("print('never runs')", wait=False)
    assert audited.reply(first)["status"] == "error"
    assert audited.reply(second)["status"] == "aborted"
    events = audited.ingest.cell(second)
    assert [e["kind"] for e in events] == ["cell.finished"]
    assert events[0]["payload"]["status"] == "aborted"
    assert events[0]["payload"]["code"] == "print('never runs')"


def test_output_text_is_capped(audited):
    msg_id = audited.run("print('x' * 5000)")
    f = [e for e in audited.ingest.cell(msg_id) if e["kind"] == "cell.finished"][0]["payload"]
    stream = [o for o in f["outputs"] if o["output_type"] == "stream"][0]
    assert stream["bytes"] == 5001
    assert len(stream["text"].encode()) <= 500  # JUPYTER_AUDIT_OUTPUT_CAP=500


def test_session_environment(audited):
    env = audited.ingest.wait_for(
        lambda evs: [e for e in evs if e["kind"] == "session.environment"]
    )[0]
    p = env["payload"]
    assert env["msg_id"] is None
    assert p["kernelspec"] == "python3"
    assert re.fullmatch(r"\d+\.\d+\.\d+", p["python_version"])
    assert any(x.lower().startswith("ipykernel==") for x in p["packages"])
    assert p["packages"] == sorted(p["packages"])
    assert re.fullmatch(r"[0-9a-f]{64}", p["packages_hash"])


def test_user_expressions_are_reported_with_the_cell(audited):
    msg = audited.kc.session.msg(
        "execute_request",
        {"code": "y = 2", "silent": False, "user_expressions": {"probe": "y * 10"}},
    )
    audited.kc.shell_channel.send(msg)
    msg_id = msg["header"]["msg_id"]
    reply = audited.reply(msg_id)
    assert reply["user_expressions"]["probe"]["status"] == "ok"
    started = [e for e in audited.ingest.cell(msg_id) if e["kind"] == "cell.started"][0]
    assert started["payload"]["user_expressions"] == {"probe": "y * 10"}


def test_the_cell_wrapper_answers_signature_questions_as_the_original(audited):
    """ipykernel inspects shell.run_cell_async on every execute_request (does it take
    cell_id?): the wrapper gives the original's signature, computed once, not unwrapped
    again per cell."""
    audited.run(
        "import inspect\n"
        "from jupyter_audit.kernel.context import is_wrapped\n"
        "_ip = get_ipython()\n"
        "_w = _ip.run_cell_async\n"
        "assert is_wrapped(_w) and '__signature__' in vars(_w)\n"
        "assert inspect.signature(_w) == inspect.signature(type(_ip).run_cell_async.__get__(_ip))\n"
        "try:\n"
        "    from ipykernel.ipkernel import _accepts_parameters\n"
        "except ImportError:  # private to ipykernel: only checked while it exists\n"
        "    pass\n"
        "else:\n"
        "    assert _accepts_parameters(_w, ['cell_id', 'cell_meta']) == "
        "_accepts_parameters(type(_ip).run_cell_async.__get__(_ip), ['cell_id', 'cell_meta'])\n"
    )


def test_a_cell_is_reported_once_the_idle_status_after_its_answer_is_sent():
    """A cell run for an execute_request is reported once the kernel has answered it
    (ipykernel has flushed its streams by then) and sent the idle status the client waits
    for, so the report is off the path of both; with no reply, after its idle status too;
    a cell whose answer never comes by, when the next cell begins."""
    from types import SimpleNamespace

    from jupyter_audit.kernel import context
    from jupyter_audit.kernel.client import KernelConfig
    from jupyter_audit.kernel.hooks import CellHooks

    requests = {}

    def request(msg_id):
        requests[msg_id] = {"header": {"msg_id": msg_id, "msg_type": "execute_request"}}
        kernel.parent = requests[msg_id]
        return requests[msg_id]

    kernel = SimpleNamespace(parent={}, get_parent=lambda: kernel.parent, session=None)
    ip = SimpleNamespace(kernel=kernel, execution_count=1)
    hooks = CellHooks(ip, KernelConfig(), client=None, patcher=None)
    ok = SimpleNamespace(
        error_before_exec=None, error_in_exec=None, success=True, execution_count=1
    )
    recorded = []
    context.set_sink(lambda kind, msg_id, *_: recorded.append((kind, msg_id)))
    try:
        for msg_id in ("m1", "m2", "m3", "m4"):
            request(msg_id)
            cell = hooks._begin({"raw_cell": "pass"})
            hooks._observe("stream", {"name": "stdout", "text": "out"}, requests[msg_id])
            hooks._finish(cell, ok, None)
            assert ("cell.finished", msg_id) not in recorded  # the reply is still to come
            if msg_id == "m1":
                assert not hooks._observe("execute_reply", {"status": "ok"}, requests[msg_id])
                assert ("cell.finished", msg_id) not in recorded  # the idle status is to come
                other = {"header": {"msg_id": "usage-poll", "msg_type": "usage_request"}}
                assert not hooks._observe("status", {"execution_state": "idle"}, other)
            if msg_id in ("m1", "m2"):  # m2: no reply, only the idle status
                assert hooks._observe("status", {"execution_state": "idle"}, requests[msg_id])
                hooks.report_answered()  # what Session.send does once the status is sent
                assert recorded[-1] == ("cell.finished", msg_id)
        assert ("cell.finished", "m3") in recorded  # reported when m4 began
        hooks.complete_pending()  # e.g. the capture stops
    finally:
        context.set_sink(None)
    finished = [m for kind, m in recorded if kind == "cell.finished"]
    assert finished == ["m1", "m2", "m3", "m4"]
