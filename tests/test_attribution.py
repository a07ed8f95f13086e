"""The server's memory of who asked for each cell, and the gap check over it."""

import json
import time

from jupyter_audit.server.cells import CellRegistry


def cell(kernel="k1"):
    return {
        "identity": {"username": "alice"},
        "trace_id": kernel,
        "kernel_id": kernel,
        "session_id": "s1",
        "notebook": "a.ipynb",
        "payload": {"code": "1"},
    }


def test_answered_cells_never_reported_are_flagged_once_after_the_grace():
    reg = CellRegistry()
    for i in range(5):
        reg.remember(f"m{i}", cell("k2" if i == 4 else "k1"))
    reg.reported("m0")  # reported before its answer: never a gap
    for i in range(5):
        reg.replied(f"m{i}")
    reg.reported("m1")  # reported after its answer
    assert reg.unreported(grace=60) == []  # too young
    time.sleep(0.05)
    gaps = reg.unreported(grace=0.01, skip_kernels={"k2"})
    assert [m for m, _ in gaps] == ["m2", "m3"]
    assert gaps[0][1]["identity"] == {"username": "alice"} and "payload" not in gaps[0][1]
    assert reg.unreported(grace=0.01) == []  # once only; m4's kernel is flagged elsewhere
    reg.remember("m5", cell())
    assert reg.unreported(grace=0) == []  # not answered yet


def test_the_gap_check_looks_only_at_cells_awaiting_a_report():
    reg = CellRegistry(maxsize=1000)
    for i in range(1500):  # the oldest are forgotten, with their place in the check
        reg.remember(f"m{i}", cell())
        reg.replied(f"m{i}")
        if i % 100:
            reg.reported(f"m{i}")
    assert len(reg._awaiting) == 10  # every 100th: m500, m600, ..., m1400
    assert reg.lookup("m0") is None and reg.lookup("m1499") is not None
    assert [m for m, _ in reg.unreported(grace=0)] == [f"m{i}" for i in range(500, 1500, 100)]
    assert reg._awaiting == {}


def kernel_event(kind, msg_id, i, **payload):
    base = {
        "cell.started": {"execution_count": 1, "silent": False},
        "cell.finished": {"status": "ok", "execution_count": 1},
        "op.shell": {"command": f"echo {i}", "exit_code": 0},
    }[kind]
    return {
        "kind": kind,
        "event_id": f"k1-{i}",
        "msg_id": msg_id,
        "op_index": i,
        "payload": {**base, **payload},
    }


def ingest(recorder, kernel_id, raws):
    """Attribute and store raw kernel events as the kernel-events handler does."""
    from jupyter_audit.server.ingest.handler import _prepare_batch

    prepared, rejected, forged = _prepare_batch(recorder, kernel_id, raws)
    assert not rejected and not forged
    recorder.writer.submit_batch(prepared).result(timeout=60)
    recorder.writer.flush()
    rows = recorder.writer.cursor().execute(
        "SELECT record FROM events WHERE kernel_id = ? AND kind <> 'cell.requested' ORDER BY seq",
        [kernel_id],
    )
    return [json.loads(r) for (r,) in rows.fetchall()]


def requested(recorder, msg_id, kernel="k1"):
    event = {**cell(kernel), "kind": "cell.requested", "msg_id": msg_id}
    recorder.writer.append(event)
    recorder.cells.remember(msg_id, event)


def test_a_msg_id_run_twice_is_not_the_cell_it_names(make_writer):
    """Code in a kernel can send its own shell port an execute_request with an earlier
    cell's msg_id: the kernel runs it a second time. Only the first run is that cell."""
    from jupyter_audit.server.recorder import Recorder

    rec = Recorder(make_writer())
    requested(rec, "m1")
    first = ingest(
        rec,
        "k1",
        [
            kernel_event("cell.started", "m1", 0),
            kernel_event("op.shell", "m1", 1),
            kernel_event("cell.finished", "m1", 2),
        ],
    )
    assert all("unattributed" not in e["flags"] for e in first)
    assert {e["identity_id"] for e in first} != {None}
    replay = ingest(
        rec,
        "k1",
        [
            kernel_event("cell.started", "m1", 3),
            kernel_event("op.shell", "m1", 4),
            kernel_event("cell.finished", "m1", 5),
        ],
    )[3:]
    assert [e["kind"] for e in replay] == ["cell.started", "op.unattributed", "cell.finished"]
    for e in replay:
        assert e["identity_id"] is None
        assert {"unattributed", "msg_id_reused"} <= set(e["flags"])


def test_a_used_msg_id_stays_used_after_a_restart(make_writer):
    """The server's memory of cells is gone after a restart; the trail is not: a cell the
    kernel already ran is read back with where it stood."""
    from jupyter_audit.server.recorder import Recorder

    w = make_writer()
    rec = Recorder(w)
    requested(rec, "m1")
    requested(rec, "m2")
    ingest(rec, "k1", [kernel_event("cell.started", "m1", 0)])
    restarted = Recorder(w)  # a new server on the same trail
    assert restarted.cells.lookup("m1") is None
    events = ingest(
        restarted,
        "k1",
        [kernel_event("cell.started", "m1", 1), kernel_event("cell.started", "m2", 2)],
    )
    again, fresh = events[1], events[2]
    assert {"unattributed", "msg_id_reused"} <= set(again["flags"])
    assert fresh["identity_id"] is not None and "unattributed" not in fresh["flags"]
    # and a client cannot send a cell with a used msg_id on a kernel the trail knew
    assert restarted.earlier_kernels() == {"k1"}
    assert restarted.msg_id_used("m1", "k1") and not restarted.msg_id_used("m9", "k1")


def test_a_retried_batch_is_not_a_reused_msg_id(make_writer):
    """A kernel that timed out waiting for an answer sends the same batch again (same event
    ids): that is a retry, and the cell stays attributed, before and after a restart."""
    from jupyter_audit.server.recorder import Recorder

    w = make_writer()
    rec = Recorder(w)
    requested(rec, "m1")
    batch = [kernel_event("cell.started", "m1", 0), kernel_event("op.shell", "m1", 1)]
    ingest(rec, "k1", batch)
    ingest(rec, "k1", batch)  # the retry: stored once by event id
    events = ingest(Recorder(w), "k1", [*batch, kernel_event("op.shell", "m1", 2)])
    assert [e["kind"] for e in events] == ["cell.started", "op.shell", "op.shell"]
    assert all("unattributed" not in e["flags"] for e in events)
