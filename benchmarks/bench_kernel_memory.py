"""Kernel memory (RSS) added by the kernel-side capture after 100,000 captured operations,
beside the same workload in a kernel without it, measured in the same run.

    python benchmarks/bench_kernel_memory.py [--ops 100000] [--repeats 3]

Each kernel is a real ipykernel started through jupyter_client's ``KernelManager``; the
audited one gets the kernel side the way the server injects it (server/hooks/kernels.py): a copy of
``jupyter_audit/kernel`` as ``jupyter_audit_kernel`` on PYTHONPATH plus
``--ext=jupyter_audit_kernel``, with its transport pointed at a tiny local ingest endpoint
of this script's own (a separate process) that accepts everything and counts events.

Per kernel: open an in-memory sqlite3 connection and run 1,000 ``select 1`` (warm-up), wait
until the transport has drained, ``gc.collect()``, read VmRSS from /proc/<pid>/status; run
the workload (``select 1`` x N in one cell), wait until every event reached the ingest
endpoint, ``gc.collect()``, wait a moment, read VmRSS (and VmHWM, the peak) again. The
figure is (audited growth - plain growth), over several fresh pairs: what the allocator
keeps after a burst varies from run to run, so the median is printed beside every run.

Target: <= 20 MB RSS added by the capture after 100,000 operations.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pathlib import Path

from _ingest import ingest_counts, serve_ingest, start_ingest  # noqa: E402,F401

WARMUP_OPS = 1_000
SETUP = f"""\
import gc, sqlite3, sys
con = sqlite3.connect(':memory:')
for _ in range({WARMUP_OPS}):
    con.execute('select 1')
print(json.dumps({{'captured': type(con) is not sqlite3.Connection,
                   'kernel_side': 'jupyter_audit_kernel' in sys.modules}}))
"""
WORKLOAD = """\
for _ in range({ops}):
    con.execute('select 1')
"""
TRANSPORT = """\
_c = get_ipython()._jupyter_audit_kernel_capture.client
print(json.dumps({'sent': _c.sent, 'spooled': _c.spooled, 'rejected': _c.rejected}))
"""


# -- the ingest endpoint (a separate process) ----------------------------------------------


# -- kernels -------------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process, in MB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024  # kB -> MB
    return out


class Kernel:
    def __init__(self, name: str, tmp: Path, audited: bool, ingest_port: int) -> None:
        self.name = name
        self.audited = audited
        self.ingest_port = ingest_port
        self.dir = tmp / name
        self.km = None
        self.kc = None
        self._log = None

    def start(self) -> None:
        from jupyter_client import KernelManager

        self.dir.mkdir(parents=True)
        env = {
            **os.environ,
            "IPYTHONDIR": str(self.dir / "ipython"),
            "JUPYTER_RUNTIME_DIR": str(self.dir / "runtime"),
        }
        extra = []
        if self.audited:
            from jupyter_audit.server.hooks.kernels import PACKAGE, prepare_inject_dir

            inject = prepare_inject_dir(str(self.dir / "runtime"))
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(inject), env.get("PYTHONPATH")) if p
            )
            env.update(
                JUPYTER_AUDIT_INGEST_URL=(
                    f"http://127.0.0.1:{self.ingest_port}/jupyter-audit/api/kernel/events"
                ),
                JUPYTER_AUDIT_KERNEL_ID=f"bench-memory-{self.name}",
                JUPYTER_AUDIT_KERNEL_SECRET="bench-secret",
                JUPYTER_AUDIT_SPOOL_DIR=str(self.dir / "runtime"),
                JUPYTER_AUDIT_FAIL_MODE="open",
                JUPYTER_AUDIT_KERNELSPEC="python3",
            )
            extra = [f"--ext={PACKAGE}"]
        else:
            for k in [k for k in env if k.startswith("JUPYTER_AUDIT_")]:
                del env[k]
        self.km = KernelManager(kernel_name="python3")
        self._log = open(self.dir / "kernel.log", "w")  # noqa: SIM115 - closed in stop()
        self.km.start_kernel(
            extra_arguments=extra, env=env, stdout=subprocess.DEVNULL, stderr=self._log
        )
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    @property
    def pid(self) -> int:
        return self.km.provisioner.process.pid

    def run(self, code: str, timeout: float = 300) -> str:
        out: list[str] = []

        def hook(msg):
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                out.append("\n".join(msg["content"]["traceback"]))

        reply = self.kc.execute_interactive(code, timeout=timeout, output_hook=hook)
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"{self.name} kernel: cell failed:\n{''.join(out)}")
        return "".join(out)

    def wait_drained(self, expected_sql: int, timeout: float = 120) -> None:
        """Until the ingest endpoint has every op.sql of this kernel (audited only)."""
        if not self.audited:
            return
        deadline = time.monotonic() + timeout
        while True:
            got = ingest_counts(self.ingest_port).get("op.sql", 0)
            if got >= expected_sql:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {got} of {expected_sql} op.sql events delivered")
            time.sleep(0.2)

    def settle(self) -> dict[str, float]:
        self.run("gc.collect()")
        time.sleep(1.0)
        return proc_status(self.pid)

    def stop(self) -> None:
        if self.kc is not None:
            try:
                self.kc.stop_channels()
            except Exception:  # noqa: BLE001
                pass
        if self.km is not None:
            try:
                self.km.shutdown_kernel(now=True)
            except Exception:  # noqa: BLE001 - kill it if a clean shutdown failed
                try:
                    self.km.kill_kernel()
                except Exception:  # noqa: BLE001
                    pass
        if self._log is not None:
            self._log.close()


def measure(kernel: Kernel, ops: int, sql_before: int) -> dict:
    kernel.start()
    try:
        info = json.loads(kernel.run("import json\n" + SETUP).strip().splitlines()[-1])
        want = kernel.audited
        if info["captured"] != want or info["kernel_side"] != want:
            raise RuntimeError(f"{kernel.name} kernel: expected capture={want}, got {info}")
        kernel.wait_drained(sql_before + WARMUP_OPS)
        before = kernel.settle()
        t0 = time.perf_counter()
        kernel.run(WORKLOAD.format(ops=ops))
        cell_s = time.perf_counter() - t0
        kernel.wait_drained(sql_before + WARMUP_OPS + ops)
        drained_s = time.perf_counter() - t0
        after = kernel.settle()
        transport = {}
        if kernel.audited:
            transport = json.loads(kernel.run(TRANSPORT).strip().splitlines()[-1])
    finally:
        kernel.stop()
    return {
        "before": before["VmRSS"],
        "after": after["VmRSS"],
        "added": after["VmRSS"] - before["VmRSS"],
        "peak": after["VmHWM"],
        "peak_added": after["VmHWM"] - before["VmRSS"],
        "cell_s": cell_s,
        "drained_s": drained_s,
        "transport": transport,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ops", type=int, default=100_000, help="captured operations (100,000)")
    ap.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="pairs of fresh kernels, alternating which runs first (default 3)",
    )
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    ingest, port = start_ingest()
    pairs = []
    try:
        for r in range(args.repeats):
            order = ("plain", "audited") if r % 2 == 0 else ("audited", "plain")
            pair = {}
            for name in order:
                sql_before = ingest_counts(port).get("op.sql", 0)
                k = Kernel(f"{name}-{r}", tmp, audited=name == "audited", ingest_port=port)
                pair[name] = measure(k, args.ops, sql_before)
            pairs.append((order, pair))
        counts = ingest_counts(port)
    finally:
        ingest.terminate()
        ingest.join(10)
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"kernel RSS around {args.ops:,} sqlite3 'select 1' in one cell: real ipykernel "
        f"kernels, {args.repeats} fresh pairs (one kernel after the other, order alternating)"
    )
    expected = args.repeats * (args.ops + WARMUP_OPS)
    print(
        f"captured: {counts.get('op.sql', 0):,} op.sql events reached the ingest endpoint "
        f"(expected {expected:,})"
    )
    added, peaks, rest = [], [], []
    for r, (order, pair) in enumerate(pairs):
        a, p = pair["audited"], pair["plain"]
        t = a["transport"]
        added.append(a["added"] - p["added"])
        peaks.append(a["peak_added"] - p["peak_added"])
        rest.append(a["before"] - p["before"])
        print(f"pair {r + 1} ({' then '.join(order)}):")
        for name, x in (("audited", a), ("plain", p)):
            print(
                f"  {name:8s} RSS before {x['before']:.1f} MB, after {x['after']:.1f} MB, "
                f"growth {x['added']:+.1f} MB (peak {x['peak']:.1f} MB = "
                f"{x['peak_added']:+.1f} MB); cell {x['cell_s']:.1f} s"
            )
        print(
            f"  audited: all events delivered {a['drained_s']:.1f} s after the cell started; "
            f"{t.get('sent', 0):,} sent, {t.get('spooled', 0):,} of them via the spool file "
            f"(queue overflow), {t.get('rejected', 0)} rejected"
        )
        print(f"  added: {added[-1]:+.1f} MB after, {peaks[-1]:+.1f} MB at the peak")
    med = statistics.median(added)
    print(
        f"RSS added by the capture after {args.ops:,} operations: median {med:+.1f} MB "
        f"(runs: {', '.join(f'{x:+.1f}' for x in added)}; target <= 20 MB)"
    )
    print(
        f"  peak RSS during the run, above plain: median {statistics.median(peaks):+.1f} MB; "
        f"kernel at rest with the capture loaded: median {statistics.median(rest):+.1f} MB"
    )
    print(
        json.dumps(
            {
                "added_mb_median": round(med, 2),
                "added_mb": [round(x, 2) for x in added],
                "peak_added_mb_median": round(statistics.median(peaks), 2),
                "rest_added_mb_median": round(statistics.median(rest), 2),
            }
        )
    )
    return 0


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through the cleanup


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    sys.exit(main())
