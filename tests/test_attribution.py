"""The server's memory of who asked for each cell, and the gap check over it."""

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
