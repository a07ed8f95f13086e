"""Cell hooks: ``cell.started`` / ``cell.finished`` for every execution, silent ones too.

kernel/: runs inside user kernels; never opens the trail file, never trusts its own identity
claims. The msg_id reported is the parent execute_request's, which the server joins to its
own ``cell.requested`` record; the kernel asserts nothing about who sent it.

IPython's ``pre_run_cell``/``post_run_cell`` events skip ``silent=True`` executions, so the
hook wraps the shell's ``run_cell_async`` instead: ipykernel's ``do_execute`` awaits it
directly, and ``run_cell`` goes through it too. Outputs are summarised from the kernel's
own IOPub messages (``Session.send``: stream, display_data, execute_result, error) for the
cell's parent msg_id; without a kernel (plain IPython) only errors are summarised. A cell run
for an execute_request is reported once the idle status after its execute_reply is sent:
ipykernel flushes the cell's streams before the reply, so the summary is complete without a
flush of our own (each flush is a round trip to the IOPub thread, on the cell's path), and
the report is off the path of the reply and the idle status the client waits for.
Requests that ipykernel aborts after an earlier error never run: their ``aborted`` reply is
reported as a ``cell.finished`` with status ``aborted``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import sys
import threading
import traceback
from contextvars import ContextVar
from time import perf_counter_ns

from .context import enter_cell, exit_cell, log_once, mark, record, set_cell_running

CODE_CAP = 1_000_000  # characters of cell code kept
TRACEBACK_LINES = 60
TRACEBACK_LINE_CAP = 2_000
OUTPUT_ITEMS_CAP = 50
_OUTPUT_TYPES = frozenset(
    {"stream", "display_data", "execute_result", "error", "update_display_data"}
)
# what the Session.send wrapper looks at: outputs and replies always, status messages only
# while a cell awaits its reply or report (its idle status); the rest (the busy status,
# execute_input...) goes straight through: the wrapper runs on every message's path
_WATCHED = dict.fromkeys(_OUTPUT_TYPES, True) | {"execute_reply": True, "status": False}

_IN_CELL: ContextVar[bool] = ContextVar("jupyter_audit_in_cell", default=False)


class AuditTrailUnavailable(RuntimeError):
    """Raised instead of running a cell when fail_mode=closed and the trail is away."""

    def _render_traceback_(self):  # IPython shows this instead of a Python traceback
        return [str(self)]


def refusal_message(reason: str | None) -> str:
    return (
        f"jupyter-audit: the audit trail cannot accept events ({reason or 'unknown reason'}); "
        "this server is configured to refuse cells until it can (fail_mode=closed)"
    )


def cap_text(text: str, cap: int) -> str:
    if len(text) <= cap and text.isascii():
        return text
    return text[:cap].encode("utf-8", "replace")[:cap].decode("utf-8", "ignore")


def _nbytes(value) -> int:
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode("utf-8", "replace"))
    if isinstance(value, bytes | bytearray):
        return len(value)
    try:
        return len(json.dumps(value, default=repr))
    except Exception:
        return 0


class _Outputs:
    """Summary of one cell's outputs, built as the kernel publishes them."""

    __slots__ = ("items", "dropped", "cap")

    def __init__(self, cap: int) -> None:
        self.items: list[dict] = []
        self.dropped = 0
        self.cap = cap

    def add(self, msg_type: str, content: dict) -> None:
        cap = self.cap
        if msg_type == "stream":
            name = content.get("name", "stdout")
            text = content.get("text", "") or ""
            last = self.items[-1] if self.items else None
            if last is not None and last["output_type"] == "stream" and last["name"] == name:
                last["bytes"] += _nbytes(text)
                if len(last["text"]) < cap:
                    last["text"] = cap_text(last["text"] + text, cap)
                return
            item = {
                "output_type": "stream",
                "name": name,
                "mime_types": ["text/plain"],
                "bytes": _nbytes(text),
                "text": cap_text(text, cap),
            }
        elif msg_type == "error":
            text = f"{content.get('ename', '')}: {content.get('evalue', '')}"
            item = {
                "output_type": "error",
                "mime_types": [],
                "bytes": sum(_nbytes(line) for line in content.get("traceback") or ()),
                "text": cap_text(text, cap),
            }
        else:
            data = content.get("data") or {}
            plain = data.get("text/plain", "")
            item = {
                "output_type": msg_type,
                "mime_types": list(data),
                "bytes": sum(_nbytes(v) for v in data.values()),
                "text": cap_text(plain if isinstance(plain, str) else str(plain), cap),
            }
        if len(self.items) >= OUTPUT_ITEMS_CAP:
            self.dropped += 1
            return
        self.items.append(item)


class _Cell:
    __slots__ = ("msg_id", "code", "silent", "cell_id", "t0", "outputs", "refused", "request")

    def __init__(self, msg_id, code, silent, cell_id, outputs, request=False):
        self.msg_id, self.code, self.silent, self.cell_id = msg_id, code, silent, cell_id
        self.outputs = outputs
        self.request = request  # run for an execute_request: its reply is still to come
        self.t0 = perf_counter_ns()
        self.refused: AuditTrailUnavailable | None = None


def error_summary(err: BaseException | None) -> dict | None:
    if err is None:
        return None
    try:
        lines = traceback.format_exception(type(err), err, err.__traceback__)
    except Exception:
        lines = []
    if len(lines) > TRACEBACK_LINES:
        lines = lines[:10] + [f"... {len(lines) - TRACEBACK_LINES} entries ...\n"] + lines[-50:]
    return {
        "ename": type(err).__name__,
        "evalue": cap_text(str(err), TRACEBACK_LINE_CAP),
        "traceback": [cap_text(line, TRACEBACK_LINE_CAP) for line in lines],
    }


class CellHooks:
    def __init__(self, ip, config, client, patcher) -> None:
        self.ip = ip
        self.kernel = getattr(ip, "kernel", None)
        self.output_cap = config.output_cap
        self.closed = config.fail_mode == "closed"
        self.client = client
        self.patcher = patcher
        self._outputs: dict[str, _Outputs] = {}
        # finished cells whose execute_reply is still to come: msg_id -> (cell, payload)
        self._replying: dict[str, tuple[_Cell, dict]] = {}
        # cells answered (execute_reply sent), reported once their idle status is sent
        # (Session.send runs on several threads: the shell's, the control thread's...)
        self._answered: list[tuple[_Cell, dict]] = []
        self._answered_lock = threading.Lock()

    def install(self) -> None:
        ip = self.ip
        orig = ip.run_cell_async
        sig = inspect.signature(orig)
        named = frozenset(list(sig.parameters)[1:])
        hooks = self

        @functools.wraps(orig)
        async def run_cell_async(*args, **kwargs):
            if _IN_CELL.get():  # run_cell from inside a cell: part of that cell
                return await orig(*args, **kwargs)
            try:
                if len(args) == 1 and kwargs.keys() <= named:  # how ipykernel calls it
                    arguments = {"raw_cell": args[0], **kwargs}
                else:
                    arguments = sig.bind(*args, **kwargs).arguments
                cell = hooks._begin(arguments)
            except Exception as e:
                log_once("cell start", e)
                cell = None
            if cell is None:
                return await orig(*args, **kwargs)
            if cell.refused is not None:
                exc = cell.refused
                bound = sig.bind(*args, **kwargs)
                bound.arguments["preprocessing_exc_tuple"] = (type(exc), exc, None)
                args, kwargs = bound.args, bound.kwargs
            token = enter_cell(cell.msg_id)
            in_cell = _IN_CELL.set(True)
            set_cell_running(True)
            try:
                result = await orig(*args, **kwargs)
            except BaseException as e:
                hooks._finish(cell, None, e)
                raise
            finally:
                set_cell_running(False)
                _IN_CELL.reset(in_cell)
                exit_cell(token)
            hooks._finish(cell, result, None)
            return result

        # ipykernel asks inspect.signature(shell.run_cell_async) on every execute_request
        # (does it take cell_id?): through functools.wraps that means unwrapping and
        # computing the original's signature each time (~35 µs); it is computed above, once
        run_cell_async.__signature__ = sig  # type: ignore[attr-defined]
        self.patcher.replace(ip, "run_cell_async", mark(run_cell_async))

        session = getattr(self.kernel, "session", None)
        if session is not None:
            orig_send = session.send

            @functools.wraps(orig_send)
            def send(stream, msg_or_type, content=None, parent=None, *args, **kwargs):
                watched = _WATCHED.get(msg_or_type) if type(msg_or_type) is str else True
                if not watched and (watched is None or not (hooks._replying or hooks._answered)):
                    return orig_send(stream, msg_or_type, content, parent, *args, **kwargs)
                idle = False
                try:
                    idle = hooks._observe(msg_or_type, content, parent)
                except Exception as e:
                    log_once("output capture", e)
                try:
                    return orig_send(stream, msg_or_type, content, parent, *args, **kwargs)
                finally:
                    if idle:  # the client has its answer: report the cell now
                        hooks.report_answered()

            self.patcher.replace(session, "send", mark(send))

    # -- cells -----------------------------------------------------------------------------

    def _parent(self) -> dict:
        kernel = self.kernel
        if kernel is None:
            return {}
        try:
            parent = kernel.get_parent()
        except Exception:
            parent = getattr(kernel, "_parent_header", None)
        return parent if isinstance(parent, dict) else {}

    def _begin(self, arguments: dict) -> _Cell:
        if self._replying or self._answered:  # e.g. an earlier cell run from a thread
            self.complete_pending()
        raw = arguments.get("raw_cell") or ""
        silent = bool(arguments.get("silent", False))
        store_history = bool(arguments.get("store_history", False)) and not silent
        parent = self._parent()
        header = parent.get("header") or {}
        msg_id = header.get("msg_id") or None
        metadata = parent.get("metadata") or {}
        cell_id = metadata.get("cellId") or arguments.get("cell_id") or None
        outputs = None
        if msg_id is not None and self.kernel is not None:
            outputs = self._outputs[msg_id] = _Outputs(self.output_cap)
        code = raw if isinstance(raw, str) else str(raw)
        if len(code) > CODE_CAP:
            code = code[:CODE_CAP]
        request = header.get("msg_type") == "execute_request"
        cell = _Cell(msg_id, code, silent, cell_id, outputs, request)
        payload = {
            "code": code,
            "execution_count": self.ip.execution_count if store_history else None,
            "silent": silent,
            "cell_id": cell_id,
            "store_history": store_history,
        }
        content = parent.get("content") or {}
        expressions = content.get("user_expressions")
        if expressions:  # evaluated by ipykernel right after the cell: report them with it
            payload["user_expressions"] = {str(k): str(v) for k, v in expressions.items()}
        record("cell.started", payload, msg_id)
        if self.closed and not self.client.available(timeout=1.0):
            cell.refused = AuditTrailUnavailable(refusal_message(self.client.last_error))
        return cell

    def _finish(self, cell: _Cell, result, exc: BaseException | None) -> None:
        try:
            duration_us = (perf_counter_ns() - cell.t0) // 1000
            if exc is not None:
                status = "aborted" if isinstance(exc, asyncio.CancelledError) else "error"
                err = exc
                count = None
            else:
                err = result.error_before_exec or result.error_in_exec
                status = "ok" if result.success else "error"
                count = result.execution_count
            payload = {
                "code": cell.code,
                "execution_count": count,
                "status": status,
                "duration_us": duration_us,
                "error": error_summary(err),
                "outputs": None,
                "silent": cell.silent,
                "cell_id": cell.cell_id,
            }
            if cell.refused is not None:
                payload["refused"] = True
        except Exception as e:
            log_once("cell finish", e)
            return
        if cell.outputs is not None and cell.request:
            self._replying[cell.msg_id] = (cell, payload)  # see _replied
        else:
            self._report(cell, payload, flush=True)

    def _report(self, cell: _Cell, payload: dict, flush: bool) -> None:
        """``cell.finished``, with the cell's outputs summarised."""
        try:
            if cell.outputs is not None:
                if flush:
                    # streams are published from ipykernel's IO thread: flush them into
                    # the summary before it is taken
                    for stream in (sys.stdout, sys.stderr):
                        try:
                            if stream is not None:
                                stream.flush()
                        except Exception:
                            pass
                self._outputs.pop(cell.msg_id, None)
                payload["outputs"] = cell.outputs.items
                if cell.outputs.dropped:
                    payload["outputs_dropped"] = cell.outputs.dropped
            record("cell.finished", payload, cell.msg_id)
        except Exception as e:
            log_once("cell finish", e)

    def _replied(self, msg_id) -> bool:
        """The kernel is answering this request: its cell, if one awaits that, is reported
        once the idle status that follows is sent (`report_answered`), off the path of the
        reply. ipykernel has flushed the cell's streams before either."""
        pending = self._replying.pop(msg_id, None) if msg_id else None
        if pending is None:
            return False
        with self._answered_lock:
            self._answered.append(pending)
        return True

    def report_answered(self) -> None:
        with self._answered_lock:
            answered, self._answered = self._answered, []
        for pending in answered:
            self._report(*pending, flush=False)

    def complete_pending(self) -> None:
        """Report the finished cells still waiting for their reply (flushing first)."""
        self.report_answered()
        for msg_id in list(self._replying):
            pending = self._replying.pop(msg_id, None)
            if pending is not None:
                self._report(*pending, flush=True)

    # -- IOPub -----------------------------------------------------------------------------

    def _observe(self, msg_or_type, content, parent) -> bool:
        """Note an outgoing message; True for an idle status after which answered cells are
        to be reported."""
        if isinstance(msg_or_type, dict):
            msg_type = (msg_or_type.get("header") or {}).get("msg_type")
            content = msg_or_type.get("content")
            parent_header = msg_or_type.get("parent_header") or {}
        else:
            msg_type = msg_or_type
            if isinstance(parent, dict):
                parent_header = parent.get("header", parent) or {}
            else:
                parent_header = {}
        if msg_type in _OUTPUT_TYPES:
            outputs = self._outputs.get(parent_header.get("msg_id"))  # type: ignore[arg-type]
            if outputs is not None and isinstance(content, dict):
                outputs.add(msg_type, content)
        elif msg_type == "execute_reply":
            if self._replied(parent_header.get("msg_id")):
                return False
            if (
                isinstance(content, dict)
                and content.get("status") == "aborted"
                and isinstance(parent, dict)
            ):
                self._aborted(parent)
        elif (
            msg_type == "status"
            and (self._replying or self._answered)
            and isinstance(content, dict)
            and content.get("execution_state") == "idle"
        ):
            msg_id = parent_header.get("msg_id")
            self._replied(msg_id)  # e.g. do_execute raised: no reply
            # the idle status after this cell's answer (not the control thread's, say)
            return any(cell.msg_id == msg_id for cell, _ in list(self._answered))
        return False

    def _aborted(self, request: dict) -> None:
        header = request.get("header") or {}
        if header.get("msg_type") != "execute_request":
            return
        content = request.get("content") or {}
        metadata = request.get("metadata") or {}
        code = content.get("code") or ""
        record(
            "cell.finished",
            {
                "code": code[:CODE_CAP] if isinstance(code, str) else str(code),
                "execution_count": None,
                "status": "aborted",
                "duration_us": 0,
                "error": None,
                "outputs": [],
                "silent": bool(content.get("silent", False)),
                "cell_id": metadata.get("cellId"),
            },
            header.get("msg_id"),
        )
