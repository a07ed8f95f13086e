"""A full disk: the writer refuses (does not acknowledge) what it cannot store, says why,
keeps everything it acknowledged, and goes on once space is back. Runs on a small tmpfs
(needs root to mount it, as in CI); skipped elsewhere."""

import json
import os
import subprocess

import pytest
from helpers.kernels import open_kernel
from helpers.servers import server_config
from helpers.trail import sql_event

from jupyter_audit.store.errors import TrailWriteError
from jupyter_audit.store.verify import verify_path


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    p = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True
    )
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _writer(d):
    from jupyter_audit.masking import MaskingEngine, load_or_create_key
    from jupyter_audit.store.signing import SigningKey
    from jupyter_audit.store.writer import Writer

    return Writer(
        d / "trail.duckdb",
        MaskingEngine(load_or_create_key(d / "masking.key")),
        SigningKey.load_or_create(d / "signing-key.pem"),
        checkpoint_every=1_000_000,
    ).open()


def test_full_disk_loses_no_acknowledged_event(small_disk, tmp_path):
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (3 * 1024 * 1024))
    w = _writer(small_disk)
    acked: list[int] = []
    errors: list[str] = []
    for i in range(2000):
        try:
            res = w.submit_batch([sql_event(i * 20 + k) for k in range(20)]).result(timeout=60)
            acked.extend(r.seq for r in res)
        except TrailWriteError as e:
            errors.append(str(e))
            if len(errors) >= 3:
                break
    assert errors, "the disk never filled up"
    assert "No space left on device" in errors[0]
    assert "not stored" in errors[0]
    # space comes back: the writer goes on, in sequence, after what it acknowledged
    filler.unlink()
    res = w.append(sql_event(999_999))
    assert res.seq == acked[-1] + 1
    w.close()
    r = verify_path(small_disk / "trail.duckdb")
    assert r.ok, r
    import duckdb

    con = duckdb.connect(str(small_disk / "trail.duckdb"), read_only=True)
    stored = {row[0] for row in con.execute("SELECT seq FROM events").fetchall()}
    con.close()
    assert set(acked) <= stored
    assert os.path.exists(small_disk / "trail.duckdb.checkpoints")


class TestFailClosed:
    """fail_mode=closed on a server whose trail disk fills up: the cell never reaches the
    kernel and the user sees why in the cell's output; once space is back, cells run again
    and every recorded cell is still there."""

    @pytest.fixture
    def jp_server_config(self, small_disk):
        return server_config(small_disk / "trail.duckdb", fail_mode="closed")

    async def test_cells_are_refused_while_the_trail_cannot_record_them(
        self, jp_serverapp, jp_fetch, jp_ws_fetch, small_disk
    ):
        audit = jp_serverapp.web_app.settings["jupyter_audit"]
        _kernel_id, client = await open_kernel(jp_fetch, jp_ws_fetch)
        assert (await client.run("x = 1\nprint('first')"))[0] == "ok"
        audit.writer.flush()
        filler = small_disk / "filler"
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * (256 * 1024))
                    f.flush()
            except OSError:
                pass
        refused = None
        for i in range(50):  # the WAL may still have room for a few small commits
            status, out, errors = await client.run_full(f"x = {i + 2}")
            if status == "error":
                refused = errors
                break
        assert refused, "the full disk never refused a cell"
        assert refused[0]["ename"] == "AuditTrailUnavailable"
        assert "fail_mode=closed" in refused[0]["evalue"]
        assert "No space left on device" in refused[0]["evalue"]
        filler.unlink()
        # the refused cell never ran: x still holds the last recorded cell's value
        status, out, _ = await client.run_full("print(x)")
        assert status == "ok" and out.strip() == str(i + 1)
        audit.writer.flush()
        rows = (
            audit.writer.cursor()
            .execute("SELECT count(*) FROM events WHERE kind = 'cell.requested'")
            .fetchone()
        )
        assert rows[0] == i + 2  # every cell that ran was recorded; the refused one was not
        client.ws.close()
        assert (json.loads((await jp_fetch("jupyter-audit", "api", "verify")).body))["ok"]
