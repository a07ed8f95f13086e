"""Which cell caused an operation, in what order, at what kernel time.

kernel/: runs inside user kernels; never opens the trail file, never trusts its own identity
claims. Standard library only, relative imports only: the server may inject a copy of this
package under another top-level name.

The current cell's parent ``msg_id`` lives in a context variable, so asyncio tasks (and
callbacks) created during a cell inherit it. Threads do not inherit context variables, so
``Thread.start`` records the starting context's msg_id on the thread object, and
``ThreadPoolExecutor.submit`` carries it into the worker for each submitted call (a pool's
worker outlives the cell that started it).
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("jupyter_audit.kernel")

_CELL_MSG_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "jupyter_audit_cell_msg_id", default=None
)
cell_msg_id_var = _CELL_MSG_ID  # for hot paths that read it directly
_THREAD_ATTR = "_jupyter_audit_msg_id"
# marks our own wrappers so that a second load (or a second copy of this package) never
# wraps twice
WRAPPED_MARK = "__jupyter_audit_wrapped__"

# One counter per kernel process: op_index is unique and increasing across everything the
# kernel reports (cells and operations), whichever thread reports it.
_op_counter = itertools.count(1)
op_counter = _op_counter  # for hot paths that take the next index themselves

Sink = Callable[[str, "str | None", int, int, dict], None]
_sink: Sink | None = None
_MISSING: Any = object()

# The raw fast path (SQL statements): the transport's queue itself, a deque of flat
# records of RECORD items each. A hot path writes one record with one atomic
# ``queue.extend((encoder, msg_id, op_index, time_ns, ...))`` (a C loop over a tuple: no
# other thread runs in between), where ``encoder`` is the index of an encoder in
# ``encoders`` that renders the event later, on the sender thread (see
# ``client.AuditClient._wire_all``). Flat, so that a queued statement is no object of its
# own for the garbage collector: a burst of statements triggers no collections (a
# collection amid a cell costs more than the whole record). ``queue`` is None while capture
# is off. After writing, a producer calls ``pressure()`` once ``len(queue) > queue_limit``
# (the sender is behind; both counted in items).
RECORD = 10
encoders: list = []


def register_encoder(encoder) -> int:
    """An encoder of raw tuples: has ``kind`` and ``wire_many(items, head, out)``."""
    encoders.append(encoder)
    return len(encoders) - 1


def _no_pressure() -> None:
    pass


queue: Any = None
queue_limit: int = 0
pressure: Callable[[], None] = _no_pressure
_limits: tuple[int, int] = (0, 0)  # queue_limit (idle, while a cell runs)

# True while a cell executes (set by the cell hooks): the transport then sends less often,
# so that a burst of operations does not compete with its encoding for the GIL.
cell_running: bool = False
cell_ended: float = 0.0  # time.monotonic() when the last cell ended


def current_msg_id() -> str | None:
    """The parent execute_request msg_id of the cell the caller is running for, or None."""
    mid = _CELL_MSG_ID.get()
    if mid is None:
        mid = getattr(threading.current_thread(), _THREAD_ATTR, None)
    return mid


def thread_msg_id() -> str | None:
    """The msg_id a thread started during a cell carries (when the context has none)."""
    return getattr(threading.current_thread(), _THREAD_ATTR, None)


def enter_cell(msg_id: str | None) -> contextvars.Token:
    return _CELL_MSG_ID.set(msg_id)


def exit_cell(token: contextvars.Token) -> None:
    try:
        _CELL_MSG_ID.reset(token)
    except ValueError:  # reset from another context (should not happen): just clear
        _CELL_MSG_ID.set(None)


def next_op_index() -> int:
    return next(_op_counter)


def kernel_time_ns() -> int:
    return time.time_ns()


_second_prefix: tuple[int, str] = (-1, "")


def utc_second(sec: int) -> str:
    """ISO 8601 UTC of a Unix second, e.g. 2026-11-27T05:31:23."""
    global _second_prefix
    cached_sec, prefix = _second_prefix  # one tuple: read and replaced atomically
    if cached_sec != sec:  # events come in bursts: format each second once
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        _second_prefix = (sec, prefix)
    return prefix


def format_kernel_time(ns: int) -> str:
    """ISO 8601 UTC with microseconds, e.g. 2026-11-27T05:31:23.123456Z."""
    sec, rem = divmod(ns, 1_000_000_000)
    return f"{utc_second(sec)}.{rem // 1000:06d}Z"


def set_sink(sink: Sink | None, client: Any = None) -> None:
    """Where recorded events go (the transport's ``emit``); None turns capture off.
    ``client`` (the transport) also takes raw tuples on its queue (the SQL fast path)."""
    global _sink, queue, queue_limit, pressure, _limits
    if sink is None or client is None:
        queue, pressure, queue_limit, _limits = None, _no_pressure, 0, (0, 0)
    else:
        _limits = (client.queue_limit, client.busy_queue_limit)
        queue_limit = _limits[cell_running]
        pressure = client.pressure
        queue = client.queue
    _sink = sink


def set_cell_running(running: bool) -> None:
    global cell_running, cell_ended, queue_limit
    cell_running = running
    queue_limit = _limits[running]
    if not running:
        cell_ended = time.monotonic()


def active() -> bool:
    return _sink is not None


def record(kind: str, payload: dict, msg_id: str | None = _MISSING) -> None:
    """Report one event. Cheap (no I/O, no formatting) and never raises."""
    sink = _sink
    if sink is None:
        return
    try:
        if msg_id is _MISSING:
            msg_id = current_msg_id()
        sink(kind, msg_id, next(_op_counter), time.time_ns(), payload)
    except Exception as e:  # pragma: no cover - the sink is a deque append
        log_once("record", e)


_logged: set[str] = set()


def log_once(where: str, exc: BaseException | None = None) -> None:
    """Log a failure of our own hook once per place. Never logs payloads or values: only
    where it happened and the exception type."""
    if where in _logged:
        return
    _logged.add(where)
    detail = f" ({type(exc).__name__})" if exc is not None else ""
    log.warning("jupyter-audit: capture hook %s failed%s; user code is unaffected", where, detail)


def mark(fn):
    setattr(fn, WRAPPED_MARK, True)
    return fn


def is_wrapped(fn) -> bool:
    return bool(getattr(fn, WRAPPED_MARK, False))


# -- propagation into threads -----------------------------------------------------------


def install_thread_propagation(patcher) -> None:
    """Threads started during a cell (directly or through a ThreadPoolExecutor, which
    ``asyncio.run_in_executor`` uses) report under that cell's msg_id."""
    orig_start = threading.Thread.start

    @functools.wraps(orig_start)
    def start(self, *args, **kwargs):
        try:
            mid = current_msg_id()
            if mid is not None:
                setattr(self, _THREAD_ATTR, mid)
                # the new thread's own context carries the msg_id too, so that the hot
                # paths read it from the context variable alone (a thread starts with an
                # empty context)
                run = self.run

                def run_for_cell():
                    _CELL_MSG_ID.set(mid)
                    return run()

                self.run = run_for_cell
        except Exception as e:
            log_once("Thread.start", e)
        return orig_start(self, *args, **kwargs)

    patcher.replace(threading.Thread, "start", mark(start))

    import concurrent.futures.thread as cft

    orig_submit = cft.ThreadPoolExecutor.submit

    @functools.wraps(orig_submit)  # type: ignore[arg-type]  # same signature, one more frame
    def submit(self, fn, /, *args, **kwargs):
        mid = current_msg_id()
        if mid is None:
            return orig_submit(self, fn, *args, **kwargs)
        return orig_submit(self, _run_as_cell, mid, fn, *args, **kwargs)

    patcher.replace(cft.ThreadPoolExecutor, "submit", mark(submit))


def _run_as_cell(mid, fn, /, *args, **kwargs):
    token = _CELL_MSG_ID.set(mid)
    try:
        return fn(*args, **kwargs)
    finally:
        exit_cell(token)
