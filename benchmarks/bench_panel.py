"""The trace panel in the browser on a trail of 2,000,000 events: time from a reviewer's
action to the answer drawn in a real JupyterLab in Debian's Chromium (targets: the first page
of traces <= 1 s after opening the panel, a 500-step trace <= 300 ms after a click, a search
<= 500 ms, the last page of a 100,000-event trace <= 1 s). Printed beside the same run's
floor: a bare `GET me` from the page.

    python benchmarks/bench_panel.py [N] [DIR]

Reuses bench_trace_queries.py's trail (`_seed.seed` with `trace-long`, 500 steps, and
`trace-huge`, 100,000 events; default DIR the same temp dir, seeded once, minutes): do not
run both benchmarks at once, the server is the trail's only writer. The server is the UI
tests' JupyterLab (labextension/ui-tests/jupyter_server_test_config.py with
JUPYTER_AUDIT_UI_DB) with the labextension as installed or as JUPYTER_PATH points; the
browser is driven by the UI tests' Node Playwright (ui-tests/bench/panel-bench.spec.ts).
Requires what labextension/ui-tests/run.sh requires (Chromium, `jlpm`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _seed import seed  # noqa: E402

UI_TESTS = Path(__file__).resolve().parents[1] / "labextension" / "ui-tests"
PORT = int(os.environ.get("JUPYTER_AUDIT_BENCH_PORT", "8897"))
URL = f"http://localhost:{PORT}"


def get(path: str) -> int:
    try:
        with urllib.request.urlopen(URL + path, timeout=600) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def wait(path: str, timeout: float, ok=(200,)) -> float:
    t0 = time.perf_counter()
    while get(path) not in ok:
        if time.perf_counter() - t0 > timeout:
            raise SystemExit(f"bench_panel: {URL}{path} not ready after {timeout:.0f} s")
        time.sleep(1)
    return time.perf_counter() - t0


def main(n: int, d: Path) -> None:
    db = seed(d, n, huge_trace_events=100_000)
    env = {
        **os.environ,
        "JUPYTER_AUDIT_UI_DB": str(db),
        "JUPYTER_AUDIT_UI_PORT": str(PORT),
        "PYTHONWARNINGS": "ignore",
    }
    server = subprocess.Popen(
        ["jupyter", "lab", "--config", "jupyter_server_test_config.py"],
        cwd=UI_TESTS,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        print(f"server ready after {wait('/jupyter-audit/api/me', 1800):.1f} s (verify included)")
        print(
            f"search index ready after {wait('/jupyter-audit/api/traces?limit=1&q=zzzz', 1800):.1f} s more"
        )
        run = subprocess.run(
            ["jlpm", "playwright", "test", "--config", "bench.config.js"],
            cwd=UI_TESTS,
            env={
                **env,
                "JUPYTER_AUDIT_BENCH_URL": URL,
                "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1",
            },
            capture_output=True,
            text=True,
        )
        rows = [line.split("BENCH ", 1)[1] for line in run.stdout.splitlines() if "BENCH " in line]
        if run.returncode != 0 or not rows:
            print(run.stdout[-4000:], run.stderr[-2000:], sep="\n")
            raise SystemExit("bench_panel: the browser run failed")
        print(f"trail: {n:,} events; median and max of the measured runs, ms")
        for row in rows:
            label, median, worst, target = row.split("|")
            goal = f"; target <= {target} ms" if target else ""
            print(f"{label}: median {median} ms (max {worst}){goal}")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000
    default = Path(tempfile.gettempdir()) / f"bench-trace-queries-{n}"
    main(n, Path(sys.argv[2]) if len(sys.argv) > 2 else default)
