"""Transport from the kernel to the server's ingest endpoint: batching, retries, spool.

kernel/: runs inside user kernels; never opens the trail file, never trusts its own identity
claims. Events carry no identity: the server attributes them by the cell's msg_id.

Cells never wait on the network: ``emit`` appends to an in-memory queue (the SQL capture
writes raw records there itself, rendered into events here); a background thread posts
batches (every 50 ms or 500 events) over loopback HTTP with the per-kernel secret, each
cycle what was queued when it began. While a cell executes, or cells follow each other
within 0.2 s, the sender holds back (until the oldest queued event may be 2 s old, or
20,000 events are queued): encoding events takes the GIL, and a burst of statements would
otherwise pay for it while it runs; and every post costs the server an HTTP request and a
commit (~15 ms of CPU, however few events it holds), which compete with the round trips of
the cells that follow. The backlog goes out once the kernel has been quiet for 0.2 s, so a
person running cells one by one sees them in the trail within a fraction of a second; only
cells in quick succession (Run All, a script driving the kernel) and long-running cells
wait for a bound. Until it is posted, the backlog lives in this process only: a kernel
killed outright loses it. The server then records the cells it had answered as
`cell.unreported`, and the kernel's death (`session.ended`, reason `died`) after the
`cell.requested` of a cell that was still running. While the server cannot accept
events (down, 5xx, or refusing our credentials) events go to a 0600 spool file,
``audit-spool-<kernel_id>.jsonl`` (one wire event per line, each followed by a tab and its
HMAC-SHA256 under the kernel's secret, so a server, this one or a later one, accepts only
lines this kernel wrote), replayed in order once the server is back. Event ids are fixed
when an event is made, so a retry never duplicates: the
server de-duplicates by event_id. The transport uses ``http.client`` directly, which the
HTTP capture does not patch, so it never reports itself.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import secrets
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from itertools import groupby
from json.encoder import encode_basestring_ascii
from operator import itemgetter
from pathlib import Path
from urllib.parse import urlsplit

from . import context
from .context import RECORD, log, log_once, utc_second

_SENDER_NAME = "jupyter-audit-sender"
# ASCII output: a lone surrogate (e.g. an undecodable file name) stays valid JSON
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=repr)
_BY_OP_INDEX = itemgetter(2)
_KIND = itemgetter(0)
_PAD = (None,) * (RECORD - 5)


def _env_int(environ, name: str, default: int) -> int:
    try:
        return max(0, int(environ.get(name, "")))
    except ValueError:
        return default


def _env_float(environ, name: str, default: float) -> float:
    try:
        return max(0.0, float(environ.get(name, "")))
    except ValueError:
        return default


def default_runtime_dir(environ=os.environ) -> Path:
    runtime = environ.get("JUPYTER_RUNTIME_DIR")
    if runtime:
        return Path(runtime)
    return Path.home() / ".local" / "share" / "jupyter" / "runtime"


@dataclass
class KernelConfig:
    """What the server tells a kernel, through environment variables, when it starts it."""

    ingest_url: str | None = None
    kernel_id: str = ""
    secret: str | None = field(default=None, repr=False)  # never in a log line
    spool_dir: Path = field(default_factory=default_runtime_dir)
    fail_mode: str = "open"
    output_cap: int = 2000
    body_hosts: frozenset = frozenset()
    body_cap: int = 10_000
    kernelspec: str | None = None
    retry_max: float = 30.0
    # the approval broker (kernel/approvals): set by a server that enforces approvals;
    # without it no statement is held (see approvals.py)
    approvals_url: str | None = None

    @classmethod
    def from_env(cls, environ=os.environ, fallback_kernel_id: str | None = None) -> KernelConfig:
        fail_mode = environ.get("JUPYTER_AUDIT_FAIL_MODE", "open").strip().lower()
        if fail_mode not in ("open", "closed"):
            log.warning("jupyter-audit: unknown JUPYTER_AUDIT_FAIL_MODE; using 'closed'")
            fail_mode = "closed"  # a typo must not silently weaken the policy
        spool = environ.get("JUPYTER_AUDIT_SPOOL_DIR")
        hosts = environ.get("JUPYTER_AUDIT_BODY_HOSTS", "")
        return cls(
            ingest_url=environ.get("JUPYTER_AUDIT_INGEST_URL") or None,
            kernel_id=environ.get("JUPYTER_AUDIT_KERNEL_ID")
            or fallback_kernel_id
            or f"pid-{os.getpid()}",
            secret=environ.get("JUPYTER_AUDIT_KERNEL_SECRET") or None,
            spool_dir=Path(spool) if spool else default_runtime_dir(environ),
            fail_mode=fail_mode,
            output_cap=_env_int(environ, "JUPYTER_AUDIT_OUTPUT_CAP", 2000),
            body_hosts=frozenset(h.strip().lower() for h in hosts.split(",") if h.strip()),
            body_cap=_env_int(environ, "JUPYTER_AUDIT_BODY_CAP", 10_000),
            kernelspec=environ.get("JUPYTER_AUDIT_KERNELSPEC") or None,
            retry_max=_env_float(environ, "JUPYTER_AUDIT_RETRY_MAX", 30.0) or 30.0,
            approvals_url=environ.get("JUPYTER_AUDIT_APPROVALS_URL") or None,
        )


def _safe_name(kernel_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in kernel_id) or "unknown"


class AuditClient:
    """Batches events to the ingest endpoint; spools them while it cannot."""

    def __init__(
        self,
        config: KernelConfig,
        *,
        flush_interval: float = 0.05,
        batch_max: int = 500,
        queue_max: int = 50_000,
        busy_interval: float = 2.0,
        quiet: float = 0.2,
        busy_max: int = 20_000,
        retry_min: float = 0.25,
        timeout: float = 5.0,
    ) -> None:
        self.config = config
        self._flush_interval = flush_interval
        self._batch_max = batch_max
        self._queue_max = queue_max
        self._busy_interval = busy_interval
        self._quiet = quiet
        self._busy_max = min(busy_max, queue_max)
        # the queue holds flat records of RECORD items (see context.queue): limits in items
        self._batch_items = batch_max * RECORD
        self._queue_items = queue_max * RECORD
        self._busy_items = self._busy_max * RECORD
        self._drain_lock = threading.Lock()
        self._retry_min = retry_min
        self._retry_max = max(config.retry_max, retry_min)
        self._timeout = timeout
        # flat records: (kind, msg_id, op_index, time_ns, payload, None...) from ``emit``,
        # or (encoder index, msg_id, op_index, time_ns, ...) written by a capture's hot
        # path (see context.queue), rendered by that encoder here, on the sender thread
        self._queue: deque = deque()
        self.queue = self._queue
        # past this many queued items a producer calls ``pressure()`` (idle / in a cell)
        self.queue_limit = self._batch_items
        self.busy_queue_limit = self._busy_items
        self._wake = threading.Event()
        self._cond = threading.Condition()
        self._cycles = 0
        self._stopping = False
        self._retry_now = False
        self._flushers = 0  # flush() calls waiting: no holding back meanwhile
        self._last_cycle = 0.0  # monotonic time the last send cycle started
        self._ppid = os.getppid()
        self._thread: threading.Thread | None = None
        self._spool_lock = threading.Lock()
        self.spool_path = (
            Path(config.spool_dir) / f"audit-spool-{_safe_name(config.kernel_id)}.jsonl"
        )
        # 64 random bits per process + the op_index: unique, and fixed once made
        self._id_prefix = secrets.token_hex(8)
        self._heads: dict[tuple, tuple[str, str]] = {}  # (kind, msg_id) -> see _head
        self._conn: http.client.HTTPConnection | None = None
        self._url = urlsplit(config.ingest_url) if config.ingest_url else None
        self.healthy = True
        self.last_error: str | None = None
        self._backoff = 0.0
        self._next_retry = 0.0
        self.sent = 0  # events the server answered for (accepted or rejected)
        self.rejected = 0
        self.spooled = 0  # events written to the spool (server away, or queue overflow)

    # -- producer side (any thread; must stay cheap) ----------------------------------------

    def emit(self, kind: str, msg_id, op_index: int, time_ns: int, payload: dict) -> None:
        q = self._queue
        q.extend((kind, msg_id, op_index, time_ns, payload) + _PAD)
        n = len(q)
        if n >= self._batch_items:
            if n > self._queue_items:
                self._overflow()
                self._wake.set()
            elif n >= self._busy_items or not context.cell_running:
                self._wake.set()

    def pressure(self) -> None:
        """Called by a raw producer once the queue is past ``queue_limit``: wake the
        sender (once), or spool the queue when it is past ``queue_max``."""
        try:
            if len(self._queue) > self._queue_items:
                self._overflow()
                self._wake.set()
            elif not self._wake.is_set():
                self._wake.set()
        except Exception as e:  # pragma: no cover - called from user code: never raise
            log_once("pressure", e)

    def _overflow(self) -> None:
        """The sender is behind (server slow or away): move the queue to the spool (taken
        at once, written a batch at a time: a bounded amount of text in memory)."""
        items = self._drain(len(self._queue) // RECORD)
        step = self._batch_max
        for i in range(0, len(items), step):
            self._spool_write(self._wire_all(items[i : i + step]))

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> AuditClient:
        if self._thread is None:
            self._last_cycle = time.monotonic()
            self._thread = threading.Thread(target=self._run, name=_SENDER_NAME, daemon=True)
            self._thread.start()
        return self

    def close(self, timeout: float = 2.0) -> None:
        """Deliver what can be delivered within ``timeout``; spool the rest."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._stopping = True
            self._wake.set()
            thread.join(timeout)
        try:
            self._overflow()
        except Exception as e:
            log_once("close", e)
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait for a send cycle that starts after this call; True when nothing is left
        queued or spooled."""
        if self._thread is None or not self._thread.is_alive():
            return False
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._cycles + 2
            self._flushers += 1
            try:
                self._wake.set()
                while self._cycles < target:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                    self._wake.set()
            finally:
                self._flushers -= 1
        return not self._queue and not self.spool_pending()

    def available(self, timeout: float = 1.0) -> bool:
        """Can the trail accept events? When the transport has been failing, try once now
        (waiting at most ``timeout``). Without an ingest URL, the spool is the sink."""
        if self._url is None or self.healthy:
            return True
        if self._thread is None or not self._thread.is_alive():
            return False
        deadline = time.monotonic() + timeout
        with self._cond:
            # a cycle may be under way already: wait for one that starts after this
            target = self._cycles + 2
            self._retry_now = True
            self._wake.set()
            while self._cycles < target and not self.healthy:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
        return self.healthy

    def spool_pending(self) -> bool:
        try:
            return self.spool_path.stat().st_size > 0
        except OSError:
            return False

    # -- sender thread ---------------------------------------------------------------------

    def _run(self) -> None:
        """The sender thread. A kernel whose server died is ended by ipykernel's parent
        poller within a second, by ``os._exit`` (no atexit): once the parent process is
        gone nothing is held back, so that the queue reaches the spool before that."""
        timeout = self._flush_interval
        while True:
            self._wake.wait(timeout)
            self._wake.clear()
            timeout = self._flush_interval
            stopping = self._stopping
            with self._cond:
                force, self._retry_now = self._retry_now or stopping, False
                urgent = force or self._flushers > 0
            if not urgent and os.getppid() == self._ppid:
                hold = self._hold_back()
                if hold > 0:
                    # sleep until holding back may end rather than look every
                    # flush_interval: each look takes the GIL from the cell running
                    timeout = hold
                    continue
            self._last_cycle = time.monotonic()
            try:
                self._cycle(force)
            except Exception as e:  # pragma: no cover - keep the sender alive
                log_once("sender", e)
            with self._cond:
                self._cycles += 1
                self._cond.notify_all()
            if stopping:
                return

    def _hold_back(self) -> float:
        """While a cell executes, or the last one ended under ``quiet`` ago (cells in quick
        succession), skip sending until the oldest queued event may be ``busy_interval``
        old or ``busy_max`` events are queued: the seconds to wait before looking again
        (0: send now). A running cell's end is not signalled, so it is looked for every
        ``quiet`` seconds; ``emit`` wakes the sender once ``busy_max`` events are queued."""
        now = time.monotonic()
        left = self._last_cycle + self._busy_interval - now
        if left <= 0 or len(self._queue) >= self._busy_items:
            return 0.0
        if context.cell_running:
            return min(left, self._quiet)
        return max(0.0, min(left, context.cell_ended + self._quiet - now))

    def _cycle(self, force: bool) -> None:
        if self._url is None:
            self._spool_queue()
            return
        if not self.healthy and not force and time.monotonic() < self._next_retry:
            self._spool_queue()
            return
        if not self._replay_spool():
            self._spool_queue()
            return
        # what is queued now: events queued meanwhile wait for the next cycle (a steady
        # stream of cells would otherwise become back-to-back posts, a commit each)
        left = len(self._queue) // RECORD
        while left > 0:
            items = self._drain(min(left, self._batch_max))
            if not items:
                return
            left -= len(items)
            lines = self._wire_all(items)
            if not self._post(lines):
                self._spool_write(lines)
                self._spool_queue()
                return

    def _drain(self, n: int) -> list:
        """Take up to ``n`` records off the queue, as tuples, in op_index order."""
        q = self._queue
        popleft = q.popleft
        with self._drain_lock:  # one taker at a time: records stay whole
            k = min(n, len(q) // RECORD) * RECORD
            flat = [popleft() for _ in range(k)]
        out = list(zip(*[iter(flat)] * RECORD, strict=True))
        for item in out:
            if item[2].__class__ is not int:  # cannot happen: every write is one record
                log_once("queue record")
                out = [i for i in out if i[2].__class__ is int]
                break
        # a batch is sent in op_index order even if two threads raced on emit
        out.sort(key=_BY_OP_INDEX)
        return out

    def _head(self, kind: str, msg_id: str | None) -> tuple[str, str]:
        """The fixed parts of an event's wire JSON before its op_index: (the start up to the
        event id's counter, the part between it and the op_index). An event is
        ``f'{a}{op_index:016x}{b}{op_index},"kernel_time":"{time}Z","payload":{payload}}}'``.
        Cached: a kernel has few kinds and msg_ids at a time."""
        key = (kind, msg_id)
        head = self._heads.get(key)
        if head is None:
            if len(self._heads) >= 1024:
                self._heads.clear()
            mid = "null" if msg_id is None else encode_basestring_ascii(msg_id)
            head = (
                f'{{"event_id":"{self._id_prefix}',
                f'","kind":{encode_basestring_ascii(kind)},"msg_id":{mid},"op_index":',
            )
            self._heads[key] = head
        return head

    def _wire(self, item) -> str:
        """One event as its wire JSON text (ASCII)."""
        kind = item[0]
        if kind.__class__ is int:  # a raw tuple: its encoder renders it
            out: list[str] = []
            context.encoders[kind].wire_many((item,), self._head, out)
            return out[0]
        a, b = self._head(kind, item[1])
        op = item[2]
        sec, ns = divmod(item[3], 1_000_000_000)
        return (
            f'{a}{op:016x}{b}{op},"kernel_time":"{utc_second(sec)}.{ns // 1000:06d}Z",'
            f'"payload":{_ENCODER.encode(item[4])}}}'
        )

    def _wire_all(self, items: list) -> list[str]:
        """Wire JSON text of a batch, in order: raw items in runs, by their encoder."""
        out: list[str] = []
        try:
            for kind, run in groupby(items, _KIND):
                if kind.__class__ is int:
                    context.encoders[kind].wire_many(list(run), self._head, out)
                else:
                    out.extend(map(self._wire, run))
            return out
        except Exception as e:  # an event we cannot render is still reported, as such
            log_once("encode", e)
            out = []
            for i in items:
                try:
                    out.append(self._wire(i))
                except Exception as e2:
                    out.append(self._wire(self._unrenderable(i, e2)))
            return out

    @staticmethod
    def _unrenderable(item, exc: BaseException) -> tuple:
        kind = item[0]
        if kind.__class__ is int:
            kind = getattr(context.encoders[kind], "kind", "op.sql")
        payload = {"capture_error": f"event could not be rendered ({type(exc).__name__})"}
        return (kind, item[1], item[2], item[3], payload)

    def _spool_queue(self) -> None:
        while len(self._queue) >= RECORD:
            items = self._drain(self._batch_max)
            self._spool_write(self._wire_all(items))

    # -- spool -----------------------------------------------------------------------------

    def _spool_write(self, lines: list[str]) -> None:
        if not lines:
            return
        data = b"".join(spool_line(line, self.config.secret) for line in lines)
        with self._spool_lock:
            try:
                self.spool_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                fd = os.open(self.spool_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                try:
                    if os.fstat(fd).st_mode & 0o077:
                        os.fchmod(fd, 0o600)
                    os.write(fd, data)
                finally:
                    os.close(fd)
                self.spooled += len(lines)
            except OSError as e:
                # nowhere to put them: say so (without their content), keep the kernel alive
                log.error("jupyter-audit: could not spool %d events: %s", len(lines), e.strerror)

    def _replay_spool(self) -> bool:
        """Send spooled events in order; True when the spool is empty afterwards."""
        try:
            size = self.spool_path.stat().st_size
        except OSError:
            return True
        if size == 0:
            return True
        offset = 0
        ok = True
        try:
            with open(self.spool_path, "rb") as f:
                while offset < size:
                    f.seek(offset)
                    lines: list[str] = []
                    end = offset
                    while len(lines) < self._batch_max and end < size:
                        line = f.readline()
                        if not line.endswith(b"\n"):
                            break  # an incomplete last line: leave it for later
                        end += len(line)
                        if line.strip():
                            # byte-exact round trip (the body is encoded the same way); the
                            # HMAC is for servers reading the file, not for the post
                            raw = line.rstrip(b"\n")
                            head, tab, _ = raw.rpartition(b"\t")
                            lines.append((head if tab else raw).decode("utf-8", "surrogateescape"))
                    if end == offset:
                        break
                    if lines and not self._post(lines):
                        ok = False
                        break
                    offset = end
        except OSError as e:
            log_once("spool read", e)
            return False
        self._spool_consumed(offset)
        return ok and not self.spool_pending()

    def _spool_consumed(self, offset: int) -> None:
        """Remove the first ``offset`` bytes (delivered), keeping anything appended since."""
        if offset <= 0:
            return
        with self._spool_lock:
            try:
                size = self.spool_path.stat().st_size
                if size <= offset:
                    self.spool_path.unlink()
                    return
                with open(self.spool_path, "rb") as f:
                    f.seek(offset)
                    rest = f.read()
                tmp = self.spool_path.with_suffix(".jsonl.tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    os.write(fd, rest)
                finally:
                    os.close(fd)
                os.replace(tmp, self.spool_path)
            except OSError as e:
                log_once("spool trim", e)

    # -- HTTP ------------------------------------------------------------------------------

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._url is None:
                raise OSError("no ingest URL")  # callers post only with one
            self._conn = _open(self._url, self._timeout)
        return self._conn

    def _headers(self) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "X-Jupyter-Audit-Kernel": self.config.kernel_id,
        }
        if self.config.secret:
            headers["Authorization"] = f"JupyterAudit-Kernel {self.config.secret}"
        return headers

    def call(self, method: str, url: str, body=None, timeout: float | None = None):
        """One request to the server beside the event stream (the approval broker): on a
        connection of its own (the sender thread owns the batching one), with this kernel's
        credentials. Returns (status, parsed JSON body or None); raises OSError or
        http.client.HTTPException when the server cannot be reached."""
        u = urlsplit(url)
        path = (u.path or "/") + ("?" + u.query if u.query else "")
        data = None if body is None else json.dumps(body).encode("utf-8", "surrogatepass")
        conn = _open(u, self._timeout if timeout is None else timeout)
        try:
            conn.request(method, path, body=data, headers=self._headers())
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            reply = json.loads(raw) if raw else None
        except ValueError:
            reply = None
        return resp.status, reply

    def _post(self, lines: list[str]) -> bool:
        """Deliver wire events, in posts the server's request limit takes: a batch is split
        by size, and an event too large for any post is sent shrunk (`shrink`). False at
        the first post that fails (the caller spools them all: the server keeps each event
        once, by its id)."""
        chunk: list[str] = []
        size = 0
        for line in lines:
            if len(line) > LINE_MAX_CHARS:
                line = shrink(line)
            if chunk and size + len(line) > POST_MAX_CHARS:
                if not self._post_chunk(chunk):
                    return False
                chunk, size = [], 0
            chunk.append(line)
            size += len(line) + 1
        return self._post_chunk(chunk) if chunk else True

    def _post_chunk(self, lines: list[str]) -> bool:
        body = (
            '{"kernel_id":'
            + json.dumps(self.config.kernel_id)
            + ',"events":['
            + ",".join(lines)
            + "]}"
        ).encode("utf-8", "surrogateescape")
        headers = self._headers()
        url = self._url
        if url is None:
            raise OSError("no ingest URL")  # callers post only with one
        path = url.path or "/"
        if url.query:
            path += "?" + url.query
        # a kept-alive connection the server closed while idle fails on first use: that
        # is not the trail being away, so try once more on a fresh connection
        for attempt in (1, 2):
            reused = self._conn is not None
            try:
                conn = self._connection()
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                status = resp.status
                data = resp.read()
                break
            except (OSError, http.client.HTTPException) as e:
                self._drop_connection()
                if reused and attempt == 1 and not isinstance(e, TimeoutError):
                    continue
                reason = getattr(e, "strerror", None) or type(e).__name__
                if isinstance(e, TimeoutError):
                    reason = "timed out"
                elif isinstance(e, ConnectionRefusedError):
                    reason = "connection refused"
                return self._failed(f"server unreachable: {reason}")
        if status == 200:
            self._succeeded(data, len(lines))
            return True
        if status in (401, 403):
            return self._failed(
                f"HTTP {status}: the server did not accept this kernel's secret", slow=True
            )
        return self._failed(f"HTTP {status}")

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None

    def _succeeded(self, data: bytes, n: int) -> None:
        if not self.healthy:
            log.info("jupyter-audit: the audit trail accepts events again")
        self.healthy = True
        self.last_error = None
        self._backoff = 0.0
        self.sent += n
        if b'"rejected": []' in data or b'"rejected":[]' in data:
            return  # the usual answer: no need to parse the accepted ids
        try:
            reply = json.loads(data or b"{}")
            rejected = reply.get("rejected") or []
        except (ValueError, AttributeError):
            rejected = []
        if rejected:
            # the server recorded why; not retried. Never log their content.
            self.rejected += len(rejected)
            log.warning("jupyter-audit: the server rejected %d event(s)", len(rejected))

    def _failed(self, reason: str, slow: bool = False) -> bool:
        if self.healthy or reason != self.last_error:
            log.warning("jupyter-audit: cannot deliver events (%s); spooling", reason)
        self.healthy = False
        self.last_error = reason
        if slow:
            self._backoff = self._retry_max
        else:
            self._backoff = min(max(self._backoff * 2, self._retry_min), self._retry_max)
        self._next_retry = time.monotonic() + self._backoff
        return False


def _open(u, timeout: float) -> http.client.HTTPConnection:
    """A connection to the server at the split URL ``u``."""
    if not u.hostname:
        raise OSError(f"no host in the server URL {u.geturl()!r}")
    cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
    conn = cls(u.hostname, u.port, timeout=timeout)
    conn.connect()
    # http.client sends the headers and the body in two writes: with Nagle on, the body
    # waits for the server's (delayed) ACK of the headers, ~40 ms a request
    try:
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass
    return conn


def spool_line(line: str, secret: str | None) -> bytes:
    """One spool line: the wire event, a tab and the HMAC-SHA256 of the event's bytes under
    the kernel's secret (hex). A JSON text holds no raw tab, so the last tab splits them."""
    data = line.encode("utf-8", "surrogateescape")
    if not secret:
        return data + b"\n"  # no server to prove anything to: it will refuse the line
    mac = hmac.new(secret.encode("utf-8"), data, hashlib.sha256).hexdigest()
    return data + b"\t" + mac.encode("ascii") + b"\n"


# The server refuses request bodies over 16 MiB (ingest MAX_BODY). Sizes here count
# characters, up to 4 bytes each in UTF-8: a post stays under 12 MiB, a line under 8 MiB.
POST_MAX_CHARS = 3 * 1024 * 1024
LINE_MAX_CHARS = 2 * 1024 * 1024
_BIG_FIELD = 64 * 1024


def shrink(line: str) -> str:
    """A wire event too large to post, made small enough: the payload's largest fields are
    replaced, one by one, by a note of their size and sha256 (the server caps big fields the
    same way), and the payload says so (`kernel_capped`). What cannot be read is replaced
    whole. The event keeps its id, kind, msg_id and op_index, so nothing is lost from the
    trail's order, and it is never retried for ever."""
    try:
        event = json.loads(line)
        payload = event.get("payload")
        if not isinstance(payload, dict):
            return line  # not an event of ours: the server says why it refuses it
    except (ValueError, RecursionError):
        return line
    capped = []
    sizes = sorted(((len(json.dumps(v, default=str)), k) for k, v in payload.items()), reverse=True)
    for n, key in sizes:
        if len(line) <= LINE_MAX_CHARS and n < _BIG_FIELD:
            break
        value = payload[key]
        raw = json.dumps(value, default=str).encode("utf-8", "surrogatepass")
        note = (
            f"[not sent by the kernel: {len(raw)} bytes, sha256 {hashlib.sha256(raw).hexdigest()}]"
        )
        # of the same JSON type, so that the event's schema still holds
        payload[key] = (
            [note]
            if isinstance(value, list)
            else ({"not_sent": note} if isinstance(value, dict) else note)
        )
        capped.append(key)
        payload["kernel_capped"] = capped
        line = json.dumps(event, separators=(",", ":"))
    return line
