"""Trivial-cell round trip over the kernel websocket: a jupyter_server WITH jupyter_audit
(gateway + injected kernel side + trail) vs one WITHOUT it, both real subprocesses on this
machine, measured interleaved in the same run.

    python benchmarks/bench_roundtrip.py [--rounds 1200] [--pairs 6] [--warmup 30]
                                         [--delayed-rounds 100] [--forward]

With ``--forward`` the audited server forwards its trail to a real collector
(``benchmarks/_collector.py``: `jupyter audit collector` behind a stand-in for the Hub's
token check) while it is measured, as a single-user server under JupyterHub does.

The client speaks JupyterLab's ``v1.kernel.websocket.jupyter.org`` subprotocol through
``websocket-client`` with TCP_NODELAY on its socket. Each round sends an execute_request
with code ``pass`` to the audited server then the plain one (the order alternates every
round) and times send -> execute_reply + status idle for that request.

Two servers, two kernels and the client are five busy processes on this machine's two
cores: how the scheduler happens to place one pair of servers can favour either by a few
per cent for its whole life, more than the audit costs. The rounds are therefore split among
``--pairs`` pairs of servers started one after the other, and the figures pool all rounds
(each pair's own median ratio is printed too). On this machine one pair's median ratio
differs from the next pair's by about 0.03 (standard deviation), as much as the audit costs:
pooled over six pairs the spread is about 0.4 of one pair's (over three, the default until
2026-11-27, about 0.6: a one-in-ten chance of reading 0.02 or more above the true ratio).

The measured phase uses a client that ACKs immediately (TCP_QUICKACK re-armed before every
read: Linux otherwise falls back to delayed ACKs): jupyter_server leaves Nagle on for kernel
websockets, so against a delayed-ACK client the plain server stalls ~40 ms per cell and the
comparison would measure Nagle, not the audit. A second, shorter phase
(``--delayed-rounds``) shows that case too: the same sockets with the kernel's default
delayed ACKs, where the gateway's TCP_NODELAY makes the audited server the faster one.

Targets (immediate-ACK phase): audited <= 1.05x plain at the median, <= 1.25x at p99.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

V1 = "v1.kernel.websocket.jupyter.org"
TOKEN = "bench-roundtrip-token"
PROBE = (
    "import json, os, sys\n"
    "_m = get_ipython().kernel.get_parent()['metadata'].get('jupyter_audit')\n"
    "print(json.dumps({'pid': os.getpid(), "
    "'capture': 'jupyter_audit_kernel' in sys.modules, 'stamped': _m is not None}))"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `python -m jupyter_server` subprocess with its own runtime/config/data dirs."""

    def __init__(
        self,
        name: str,
        root: Path,
        audited: bool,
        db_path: Path | None = None,
        extra_env: dict | None = None,
    ) -> None:
        self.extra_env = extra_env or {}
        self.name = name
        self.dir = root / name
        self.audited = audited
        self.db_path = db_path or self.dir / "audit" / "trail.duckdb"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.kernel_id: str | None = None
        self.kernel_pid: int | None = None
        self.log_path = self.dir / "server.log"

    def start(self) -> None:
        self.dir.mkdir(parents=True)
        (self.dir / "root").mkdir()
        env = {
            **os.environ,
            "JUPYTER_RUNTIME_DIR": str(self.dir / "runtime"),
            "JUPYTER_CONFIG_DIR": str(self.dir / "config"),
            "JUPYTER_DATA_DIR": str(self.dir / "data"),
            "IPYTHONDIR": str(self.dir / "ipython"),
            **self.extra_env,
        }
        enabled = "True" if self.audited else "False"
        cmd = [
            sys.executable,
            "-m",
            "jupyter_server",
            "--allow-root",
            "--no-browser",
            f"--port={self.port}",
            "--ip=127.0.0.1",
            f"--IdentityProvider.token={TOKEN}",
            f"--ServerApp.root_dir={self.dir / 'root'}",
            # the extension is enabled system-wide (etc/jupyter/jupyter_server_config.d):
            # a command-line value wins over the config.d files for the same key
            f"--ServerApp.jpserver_extensions={{'jupyter_audit': {enabled}}}",
        ]
        if self.audited:
            cmd.append(f"--AuditApp.db_path={self.db_path}")
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        # own session, no stdin: a Ctrl-C in the terminal reaches this script only (which
        # then stops the servers in order), never jupyter_server's "Shutdown?" prompt
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            # not the caller's directory: `python -m` puts the working directory first on
            # sys.path, so run from a checkout the servers would load that checkout's code
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                self.api("api/status")
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.name} server did not start:\n{self.log_tail()}")

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text()[-n:]
        except OSError:
            return ""

    def api(self, path: str, method: str = "GET", body=None, timeout: float = 30):
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {TOKEN}"},
        )
        with urllib.request.urlopen(req, timeout=timeout) as r:
            data = r.read()
            return json.loads(data) if data else None

    def status_of(self, path: str) -> int:
        try:
            self.api(path)
            return 200
        except urllib.error.HTTPError as e:
            return e.code

    def start_kernel(self) -> str:
        self.kernel_id = self.api("api/kernels", "POST", {"name": "python3"})["id"]
        return self.kernel_id

    def stop(self) -> None:
        """Shut the kernel and the server down; kill whatever is left."""
        if self.proc is None:
            return
        if self.kernel_id and self.proc.poll() is None:
            try:
                self.api(f"api/kernels/{self.kernel_id}", "DELETE", timeout=20)
            except Exception:  # noqa: BLE001 - the server's own shutdown stops it too
                pass
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.kernel_pid is not None:  # an orphan only if the server died hard
            try:
                os.kill(self.kernel_pid, signal.SIGKILL)
            except OSError:
                pass
        self._log.close()


class KernelSocket:
    """A kernel websocket as JupyterLab opens it (v1 subprotocol), Nagle off."""

    def __init__(self, server: Server) -> None:
        import websocket
        from jupyter_client.session import Session

        self.server = server
        self.quickack = True  # ACK every segment at once (see the module docstring)
        self.session = Session(username="bench")
        self.ws = websocket.create_connection(
            f"ws://127.0.0.1:{server.port}/api/kernels/{server.kernel_id}/channels"
            f"?session_id={uuid.uuid4().hex}",
            header=[f"Authorization: token {TOKEN}"],
            subprotocols=[V1],
            sockopt=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
            timeout=60,
        )
        got = self.ws.getsubprotocol()
        if got != V1:
            raise RuntimeError(f"{server.name}: server chose subprotocol {got!r}, not {V1}")
        nodelay = self.ws.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        if not nodelay:
            raise RuntimeError("TCP_NODELAY is not set on the client socket")

    def frame(self, code: str) -> tuple[str, bytes]:
        from jupyter_client.jsonutil import json_default
        from jupyter_server.services.kernels.connection.base import serialize_msg_to_ws_v1

        msg = self.session.msg(
            "execute_request",
            {
                "code": code,
                "silent": False,
                "store_history": True,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
            metadata={"cellId": "bench-cell"},
        )
        parts = [
            json.dumps(msg[k], default=json_default).encode()
            for k in ("header", "parent_header", "metadata", "content")
        ]
        return msg["header"]["msg_id"], serialize_msg_to_ws_v1(parts, "shell")

    def run(self, code: str) -> tuple[float, float, str, str]:
        """(seconds from send to execute_reply + idle, seconds to status busy, reply status,
        stdout)."""
        from jupyter_server.services.kernels.connection.base import deserialize_msg_from_ws_v1

        msg_id, frame = self.frame(code)  # built before the clock starts
        needle = msg_id.encode()
        out: list[str] = []
        status = None
        idle = False
        busy = None
        t0 = time.perf_counter()
        self.ws.send_binary(frame)
        sock = self.ws.sock
        quickack = self.quickack
        while status is None or not idle:
            if quickack:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            raw = self.ws.recv()
            if needle not in raw:  # not about this request (e.g. the connect-time nudge)
                continue
            channel, parts = deserialize_msg_from_ws_v1(raw)
            parent = json.loads(parts[1])
            if parent.get("msg_id") != msg_id:
                continue
            msg_type = json.loads(parts[0])["msg_type"]
            if msg_type == "execute_reply":
                status = json.loads(parts[3])["status"]
            elif msg_type == "status":
                state = json.loads(parts[3])["execution_state"]
                if state == "busy" and busy is None:
                    busy = time.perf_counter() - t0
                idle = idle or state == "idle"
            elif msg_type == "stream":
                out.append(json.loads(parts[3])["text"])
        return time.perf_counter() - t0, busy or 0.0, status, "".join(out)

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001
            pass


def pct(xs: list[float], p: int) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[p - 1]


def measure(clients: dict, rounds: int, warmup: int) -> dict[str, list[tuple[float, float]]]:
    """Interleaved rounds; per server a list of (round trip ms, send -> busy ms)."""
    order = [clients["audited"], clients["plain"]]
    times: dict[str, list[tuple[float, float]]] = {"audited": [], "plain": []}
    for i in range(warmup + rounds):
        for c in order if i % 2 == 0 else order[::-1]:
            dt, busy, status, _ = c.run("pass")
            if status != "ok":
                raise RuntimeError(f"{c.server.name}: execute_reply status {status}")
            if i >= warmup:
                times[c.server.name].append((dt * 1000, busy * 1000))
    return times


def report(title: str, times: dict, warmup: str, targets: bool) -> dict:
    a = [t for t, _ in times["audited"]]
    p = [t for t, _ in times["plain"]]
    am, pm = statistics.median(a), statistics.median(p)
    a99, p99 = pct(a, 99), pct(p, 99)
    mr, pr = am / pm, a99 / p99
    paired = statistics.median(x / y for x, y in zip(a, p, strict=True))
    ab = statistics.median(b for _, b in times["audited"])
    pb = statistics.median(b for _, b in times["plain"])
    print(f"-- {title}: {len(a)} interleaved rounds (+{warmup})")
    t1 = " (target <= 1.05x)" if targets else ""
    t2 = " (target <= 1.25x)" if targets else ""
    print(f"round trip median: audited {am:.2f} ms, plain {pm:.2f} ms, ratio {mr:.2f}x{t1}")
    print(f"round trip p99:    audited {a99:.2f} ms, plain {p99:.2f} ms, ratio {pr:.2f}x{t2}")
    print(
        f"  median of per-round ratios {paired:.2f}x; send -> status busy median: "
        f"audited {ab:.2f} ms, plain {pb:.2f} ms"
    )
    print(
        f"  mean: audited {statistics.fmean(a):.2f} ms, plain {statistics.fmean(p):.2f} ms; "
        f"max: audited {max(a):.2f} ms, plain {max(p):.2f} ms; "
        f"rounds > 30 ms: audited {sum(x > 30 for x in a)}, plain {sum(x > 30 for x in p)}"
    )
    return {
        "audited_median_ms": round(am, 3),
        "plain_median_ms": round(pm, 3),
        "audited_p99_ms": round(a99, 3),
        "plain_p99_ms": round(p99, 3),
        "median_ratio": round(mr, 3),
        "p99_ratio": round(pr, 3),
    }


def run_pair(tmp: Path, rounds: int, warmup: int, delayed_rounds: int, verbose: bool, forward=None):
    """Start an audited and a plain server, check them, and time `rounds` interleaved
    rounds (then `delayed_rounds` with delayed ACKs); stop both. (immediate, delayed).
    `forward`: the environment that makes the audited server forward to a collector."""
    audited = Server("audited", tmp, audited=True, extra_env=forward)
    plain = Server("plain", tmp, audited=False)
    servers = (audited, plain)
    sockets: list[KernelSocket] = []
    delayed = None
    try:
        for s in servers:
            s.start()
        for s in servers:
            s.wait_ready()

        # is the extension really on in one and off in the other?
        me = {s.name: s.status_of("jupyter-audit/api/me") for s in servers}
        if me != {"audited": 200, "plain": 404}:
            raise RuntimeError(f"GET /jupyter-audit/api/me: expected 200 / 404, got {me}")
        for s in servers:
            s.start_kernel()
        clients = {}
        for s in servers:
            clients[s.name] = KernelSocket(s)
            sockets.append(clients[s.name])
        for s in servers:
            _, _, status, out = clients[s.name].run(PROBE)
            info = json.loads(out.strip().splitlines()[-1])
            s.kernel_pid = info["pid"]
            want = s.audited
            if status != "ok" or info["capture"] != want or info["stamped"] != want:
                raise RuntimeError(f"{s.name} kernel: expected capture={want}, got {info}")
        if verbose:
            print(f"GET /jupyter-audit/api/me: audited {me['audited']}, plain {me['plain']}")
            print("kernel side loaded: audited yes, plain no; gateway stamp: audited yes, plain no")
            print(
                f"client: websocket-client, subprotocol {V1}, TCP_NODELAY on the client "
                "socket; cell 'pass', timed send -> execute_reply + status idle"
            )

        immediate = measure(clients, rounds, warmup)
        if delayed_rounds > 1:
            for c in sockets:
                c.quickack = False
            delayed = measure(clients, delayed_rounds, 10)

        # the audited server recorded the cells (the round trips were really audited)
        expected = 1 + warmup + rounds + (10 + delayed_rounds if delayed else 0)
        deadline = time.monotonic() + 15
        while True:
            traces = audited.api("jupyter-audit/api/traces")["traces"]
            mine = [t for t in traces if t.get("trace_id") == audited.kernel_id]
            cells = mine[0].get("cells") if mine else None
            if (cells or 0) >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        for c in sockets:
            c.close()
        for s in servers:
            try:
                s.stop()
            except Exception as e:  # noqa: BLE001 - keep stopping the others
                print(f"warning: stopping {s.name}: {e}", file=sys.stderr)
    print(f"audited trail: {cells} cells recorded for the audited kernel (sent {expected})")
    if cells != expected:
        raise RuntimeError(f"the audited trail holds {cells} cells, not {expected}")
    return immediate, delayed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--rounds", type=int, default=1200, help="measured rounds in all (default 1200)"
    )
    ap.add_argument(
        "--pairs",
        type=int,
        default=6,
        help="server pairs started one after the other, the rounds split among them (default 6)",
    )
    ap.add_argument(
        "--warmup", type=int, default=30, help="unmeasured rounds per pair (default 30)"
    )
    ap.add_argument(
        "--delayed-rounds",
        type=int,
        default=100,
        help="rounds of the delayed-ACK phase, on the last pair (default 100; 0 skips it)",
    )
    ap.add_argument(
        "--forward",
        action="store_true",
        help="the audited server forwards its trail to a real collector while measured",
    )
    args = ap.parse_args(argv)
    if args.pairs < 1 or args.rounds < 2 * args.pairs:
        ap.error("--rounds must be at least 2 per pair")

    tmp = Path(tempfile.mkdtemp(prefix="bench-roundtrip-"))
    immediate: dict[str, list] = {"audited": [], "plain": []}
    per_pair = []
    delayed = None
    stack = contextlib.ExitStack()
    forward = None
    if args.forward:
        from _collector import collector

        forward = stack.enter_context(collector(tmp / "collector"))
    try:
        for k in range(args.pairs):
            rounds = args.rounds // args.pairs + (k < args.rounds % args.pairs)
            last = k == args.pairs - 1
            times, d = run_pair(
                tmp / f"pair-{k + 1}",
                rounds,
                args.warmup,
                args.delayed_rounds if last else 0,
                verbose=k == 0,
                forward=forward,
            )
            for name in immediate:
                immediate[name].extend(times[name])
            per_pair.append(
                statistics.median(t for t, _ in times["audited"])
                / statistics.median(t for t, _ in times["plain"])
            )
            delayed = d or delayed
        stack.close()
        if args.forward:
            from _collector import forwarded

            print(f"collector: {forwarded(tmp / 'collector')} forwarded records stored")
    finally:
        stack.close()
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"median ratio per server pair: {', '.join(f'{r:.2f}x' for r in per_pair)} "
        "(each pair's processes share the 2 cores their own way; the pooled figures below "
        "average that out)"
    )
    figures = {
        "immediate_ack": report(
            "client ACKs immediately", immediate, f"{args.warmup} warm-up per pair", True
        )
    }
    figures["immediate_ack"]["pair_median_ratios"] = [round(r, 3) for r in per_pair]
    if delayed:
        figures["delayed_ack"] = report(
            "client with Linux default delayed ACKs (plain server keeps Nagle on)",
            delayed,
            "10 warm-up",
            False,
        )
    print(json.dumps(figures))
    return 0


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through the cleanup


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    sys.exit(main())
