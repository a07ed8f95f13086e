"""The gateway: jupyter_server's kernel websocket, tapped.

For every execute_request a client sends through the server (JupyterLab's
v1.kernel.websocket.jupyter.org protocol and the legacy JSON one) it resolves the
websocket's authenticated user to an identity snapshot, submits `cell.requested`, and stamps
`metadata.jupyter_audit` on the message before forwarding it (the server's Session re-signs
it). The client's own `header.username` is never trusted. With fail_mode=open it never
blocks a cell on the trail: the event is queued (`Recorder.request_cell`) and its outcome
logged. Everything it records goes through the Recorder (`settings["jupyter_audit"]`).
"""

from __future__ import annotations

import json
import uuid
from collections import deque
from datetime import UTC, datetime
from functools import cached_property
from typing import cast

import orjson
from jupyter_client.session import json_unpacker
from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    deserialize_msg_from_ws_v1,
    serialize_binary_message,
    serialize_msg_to_ws_v1,
)
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from tornado.ioloop import IOLoop

from ..events import EventValidationError
from ..identity.resolve import snapshot_for
from ..store.errors import loggable_error
from ..store.records import identity_id_of, new_event_id, safe_id
from . import sockets
from .authorization import AuditAuthorizer
from .hooks.sessions import recordable

V1 = "v1.kernel.websocket.jupyter.org"


class CellRefused(Exception):
    """The sender may no longer run cells; the message is not forwarded."""


STAMP = "jupyter_audit"


class AuditKernelWebsocketConnection(ZMQChannelsWebsocketConnection):
    """Kernel websocket connection that records who asked a kernel to run what."""

    _audit_notebook: str | None = None
    _pending: tuple[dict, str] | None = (
        None  # (cell.requested event, its event_id) to queue once the message is on its way
    )
    _held: deque | None = None  # fail_mode=closed: messages behind a cell awaiting its record
    _identity_of: tuple | None = None  # (user, snapshot, identity_id): once per socket user

    @cached_property
    def _recorder(self):
        """The Recorder (looked up once: every message in and out asks for it)."""
        return self.websocket_handler.settings.get("jupyter_audit")

    @cached_property
    def _kernel_id(self) -> str | None:
        """The kernel's id if the trail can store it, else None (jupyter_server lets a client
        choose kernel ids); a connection keeps its kernel."""
        return safe_id(self.kernel_id)

    async def connect(self):
        await super().connect()
        # jupyter_server leaves Nagle on: clients that delay ACKs wait ~40 ms per round trip
        try:
            self.websocket_handler.set_nodelay(True)
        except Exception:  # noqa: BLE001 - an optimisation only
            pass
        self._audit_notebook = await self._notebook_path()
        # closed when its token is revoked, its sign-in session ends or either expires
        sockets.watch(self.websocket_handler, self._recorder)

    def disconnect(self):
        sockets.unwatch(self.websocket_handler, self._recorder)
        return super().disconnect()

    def _identity(self) -> dict:
        return self._identity_and_id()[0]

    def _identity_and_id(self) -> tuple[dict, str]:
        """The snapshot of the socket's user and its identity_id, resolved once: a websocket
        keeps the user it was opened by (what can change, revocation and expiry, is checked
        per cell)."""
        handler = self.websocket_handler
        user = handler.current_user
        cached = self._identity_of
        if cached is None or cached[0] is not user:
            snapshot = snapshot_for(user, handler.identity_provider)
            cached = self._identity_of = (user, snapshot, identity_id_of(snapshot))
        return cached[1], cached[2]

    async def _notebook_path(self) -> str | None:
        try:
            sm = self.websocket_handler.session_manager
            for s in await sm.list_sessions():
                if (s.get("kernel") or {}).get("id") == self.kernel_id:
                    return recordable(s.get("path"))
        except Exception:  # noqa: BLE001 - the path is a detail; the cell is still recorded
            self.log.debug("jupyter-audit: no session path for kernel %s", self.kernel_id)
        return None

    def handle_incoming_message(self, incoming_msg) -> None:
        if self._held is not None:
            self._held.append(incoming_msg)  # keep the client's order behind a held cell
            return
        recorder = self._recorder
        self._pending = None
        if recorder is not None:
            try:
                incoming_msg = self._tap(recorder, incoming_msg)
            except CellRefused as e:
                self._refuse(recorder, str(e))
                return
            except EventValidationError as e:  # the trail could not record it: not run
                self.log.error("jupyter-audit: execute_request refused by the trail: %s", e)
                return
            except Exception as e:  # noqa: BLE001 - what cannot be read is not forwarded
                # the gateway reads a message exactly as the kernel will (`_loads`): one it
                # cannot read and classify might be code the kernel would run, unrecorded
                self._refuse(recorder, f"message could not be read ({type(e).__name__})")
                return
        if self._pending is not None and recorder.fail_mode == "closed":
            self._hold_until_recorded(recorder, incoming_msg)
            return
        super().handle_incoming_message(incoming_msg)
        if self._pending is not None:
            # fail_mode=open: the cell is remembered (for the kernel's reports to be
            # attributed to it) and its event queued raw once the message is on its way; the
            # writer thread validates and masks it (`CellRequests`). If it cannot after all
            # (`_record` checks what could make it fail), what the trail can always store
            # is recorded instead.
            event, event_id = self._pending
            self._pending = None
            try:
                recorder.request_cell(event, event_id)
            except Exception as e:  # noqa: BLE001 - a bug: say so, the cell is on its way
                self.log.error("jupyter-audit: cell.requested not queued: %s", loggable_error(e))

    def _refuse(self, recorder, reason: str) -> None:
        """A message that is not forwarded: recorded as `security.rejected` under the
        socket's user (rate-limited per address), and the socket closed with the reason."""
        handler = self.websocket_handler
        ip = handler.request.remote_ip or "?"
        try:
            identity = self._identity()
        except Exception:  # noqa: BLE001 - the refusal is recorded under the server's own
            identity = None
        # not rate-limited by address: the sender is authenticated and named, and each
        # refusal closes its socket (folded into an address's count, it could hide in a
        # flood of anonymous refusals)
        recorder.reject(
            reason,
            f"kernel websocket of kernel {self.kernel_id} from {ip}",
            kernel_id=self.kernel_id,
            identity=identity,
        )
        handler.close(4003, f"jupyter-audit refused a message: {reason}"[:120])

    # ---------------------------------------------------------------- fail_mode=closed
    def _hold_until_recorded(self, recorder, msg) -> None:
        """fail_mode=closed: a cell reaches the kernel only once its `cell.requested` is
        committed; if the trail cannot take it, the client gets an error instead."""
        parent = self._pending_header
        pending, self._pending = self._pending, None
        self._held = deque()
        loop = IOLoop.current()
        try:
            if pending is None:
                raise RuntimeError("no cell to hold")
            fut = recorder.writer.submit(recorder.prepare_cell(*pending))
        except Exception as e:  # noqa: BLE001 - the writer is not running
            loop.add_callback(self._release, msg, parent, e)
            return

        def done(f):
            loop.add_callback(self._release, msg, parent, f.exception())

        fut.add_done_callback(done)

    def _release(self, msg, parent: dict, error) -> None:
        if error is None:
            super().handle_incoming_message(msg)
        else:
            self.log.error("jupyter-audit: cell refused (fail_mode=closed): %s", error)
            self._refuse_cell(parent, str(error))
        held, self._held = self._held or deque(), None
        while held and self._held is None:
            self.handle_incoming_message(held.popleft())
        if held and self._held is not None:  # another cell is held: the rest waits behind it
            self._held.extendleft(reversed(held))

    def _refuse_cell(self, parent: dict, reason: str) -> None:
        """Answer an execute_request the kernel never saw, as a kernel would for an error."""
        text = (
            f"jupyter-audit: this cell was not run because the recorder trail cannot record it "
            f"({reason}). This server refuses cells until the trail accepts events again "
            "(fail_mode=closed); ask your administrator."
        )
        error = {"ename": "AuditTrailUnavailable", "evalue": text, "traceback": [text]}
        replies = [
            ("iopub", "status", {"execution_state": "busy"}),
            ("iopub", "error", error),
            ("shell", "execute_reply", {"status": "error", "execution_count": None, **error}),
            ("iopub", "status", {"execution_state": "idle"}),
        ]
        for channel, msg_type, content in replies:
            header = {
                "msg_id": uuid.uuid4().hex,
                "msg_type": msg_type,
                "username": "jupyter-audit",
                "session": "jupyter-audit",
                "date": datetime.now(UTC).isoformat(),
                "version": "5.3",
            }
            if self.subprotocol == V1:
                parts = [json.dumps(x).encode() for x in (header, parent, {}, content)]
                data = serialize_msg_to_ws_v1(parts, channel)
            else:
                data = json.dumps(
                    {
                        "channel": channel,
                        "header": header,
                        "parent_header": parent,
                        "metadata": {},
                        "content": content,
                        "buffers": [],
                    }
                )
            try:
                self.websocket_handler.write_message(data, binary=isinstance(data, bytes))
            except Exception:  # noqa: BLE001 - the client went away
                return

    def handle_outgoing_message(self, stream, outgoing_msg) -> None:
        if self._recorder is not None:
            try:
                self._watch_reply(stream, outgoing_msg)
            except Exception:  # noqa: BLE001 - watching must never drop a message
                pass
        super().handle_outgoing_message(stream, outgoing_msg)

    def _watch_reply(self, stream, msg_list) -> None:
        """Note execute_replies: a cell the kernel answered but never reported is a gap."""
        channel = stream if isinstance(stream, str) else getattr(stream, "channel", None)
        if channel != "shell":
            return
        _, fed = self.session.feed_identities(msg_list)
        header = _loads(_bytes(fed[1]))
        if header.get("msg_type") == "execute_reply":
            self._recorder.cells.replied(_loads(_bytes(fed[2])).get("msg_id"))

    # ---------------------------------------------------------------- the tap
    def _tap(self, recorder, ws_msg):
        """Record and stamp what makes the kernel run code, in whatever framing the client
        used: an execute_request (refused outside the shell channel, where the kernel would
        run it unrecorded) and a debugger request that evaluates code (`_debug_code`)."""
        if self.subprotocol == V1:
            channel, parts = deserialize_msg_from_ws_v1(ws_msg)
            header = _obj(parts[0]) if parts else {}
            msg_type = header.get("msg_type")
            if msg_type not in RUNS_CODE:
                return ws_msg
            content = _loads(parts[3]) if len(parts) >= 4 and parts[3] else None
            if not isinstance(content, dict):
                raise CellRefused(f"{msg_type} without an object for its content")
            # the metadata is written back: read by the standard library, which keeps every
            # value as it was (orjson turns integers past 64 bits into floats)
            metadata = _obj(parts[2], exact=True)
            stamp = self._stamp(recorder, channel, header, metadata, content)
            if stamp is None:
                return ws_msg
            metadata[STAMP] = stamp
            parts = list(parts)
            parts[2] = json.dumps(metadata).encode("utf-8")
            return serialize_msg_to_ws_v1(parts, channel)
        binary = isinstance(ws_msg, bytes)  # legacy binary frames carry buffers
        msg = deserialize_binary_message(ws_msg) if binary else json.loads(ws_msg)
        if not isinstance(msg, dict):
            return ws_msg
        header = msg.get("header") if isinstance(msg.get("header"), dict) else {}
        msg_type = header.get("msg_type")
        if msg_type not in RUNS_CODE:
            return ws_msg
        content = msg.get("content")
        if isinstance(content, str | bytes):
            # jupyter_client's Session sends a str or bytes content as it is, and the kernel
            # parses it: read it the same way, and send the object that was recorded
            content = _loads(content.encode("utf-8") if isinstance(content, str) else content)
        if not isinstance(content, dict):
            raise CellRefused(f"{msg_type} without an object for its content")
        msg["content"] = content
        channel = msg.get("channel") or "shell"  # jupyter_server assumes shell when missing
        metadata = msg.get("metadata") if isinstance(msg.get("metadata"), dict) else {}
        stamp = self._stamp(recorder, channel, header, metadata, content)
        if stamp is None:
            return ws_msg
        metadata[STAMP] = stamp
        msg["metadata"] = metadata
        return serialize_binary_message(msg) if binary else json.dumps(msg)

    def _stamp(self, recorder, channel, header: dict, metadata: dict, content: dict):
        """The stamp for a message that runs code (its `cell.requested` left in
        `_pending`), or None for a debugger request that runs none."""
        if header.get("msg_type") == "execute_request":
            if channel != "shell":
                raise CellRefused(f"execute_request on the {channel!r} channel is not accepted")
            return self._record(recorder, header, metadata, content)
        command, code = _debug_code(content)
        if code is None:
            return None
        return self._record(
            recorder, header, {}, {"code": code, "silent": True}, {"debug_command": command}
        )

    def _record(
        self, recorder, header: dict, metadata: dict, content: dict, extra: dict | None = None
    ) -> dict:
        """Check that this socket's user may run the cell and build its `cell.requested`
        (left in `_pending`, prepared by the caller); the stamp for the message."""
        handler = self.websocket_handler
        identity, identity_id = self._identity_and_id()
        # checked per cell: a token revoked while the socket is open stops here
        authorizer = cast(AuditAuthorizer, handler.authorizer)
        if not authorizer.allows(handler, handler.current_user, "audit:cells", identity):
            raise CellRefused("not authorized to run cells (token revoked or expired?)")
        msg_id = safe_id(header.get("msg_id"))
        if msg_id is None or recorder.msg_id_used(msg_id, self._kernel_id):
            # a reused msg_id would join this cell's operations to another person's cell
            raise CellRefused("execute_request without a fresh msg_id")
        code = content.get("code")
        cell_id = metadata.get("cellId")
        payload = {
            "code": code if isinstance(code, str) else "",
            "cell_id": cell_id if isinstance(cell_id, str) else None,
            "silent": bool(content.get("silent", False)),
        }
        # expressions the kernel evaluates after the code (JupyterLab sends none): code too
        expressions = content.get("user_expressions")
        if expressions:
            payload["user_expressions"] = expressions
        if extra:
            payload.update(extra)
        # what could make preparing the event fail, checked before the cell goes anywhere
        # the kernel's notebook now (renames included: hooks/sessions.py), else the path its
        # session had when this socket connected
        notebook = recorder.notebooks.get(self._kernel_id) or self._audit_notebook
        for field, text in (("payload.code", code), ("payload.cell_id", cell_id)):
            if isinstance(text, str) and not _utf8(text):
                raise EventValidationError(f"{field}: not valid UTF-8 text")
        if expressions and not _utf8(json.dumps(expressions, ensure_ascii=False)):
            raise EventValidationError("payload.user_expressions: not valid UTF-8 text")
        if notebook is not None and (len(notebook) > 4096 or not _utf8(notebook)):
            raise EventValidationError("notebook path is not recordable")
        kernel_id = self._kernel_id
        if kernel_id is None:
            raise EventValidationError("kernel id is not recordable")
        event_id = new_event_id()
        self._pending = (
            {
                "kind": "cell.requested",
                "identity": identity,
                "trace_id": kernel_id,
                "kernel_id": kernel_id,
                "session_id": safe_id(header.get("session")),
                "notebook": notebook,
                "msg_id": msg_id,
                "payload": payload,
            },
            event_id,
        )
        self._pending_header = header
        return {
            "username": identity["username"],
            "identity_id": identity_id,
            "trace_id": kernel_id,
            "event_id": event_id,
        }


# messages that make a kernel run code: an execute_request, and a debugger request (DAP over
# the control channel: JupyterLab's debugger) that evaluates an expression or sets a value
RUNS_CODE = frozenset({"execute_request", "debug_request"})


def _debug_code(content: dict) -> tuple[str | None, str | None]:
    """(command, the code a debug_request makes the kernel run), or (command, None)."""
    command = content.get("command")
    raw = content.get("arguments")
    args: dict = raw if isinstance(raw, dict) else {}
    code: str | None
    if command == "evaluate":
        code = args.get("expression")
    elif command == "setExpression":
        code = f"{args.get('expression')} = {args.get('value')}"
    elif command == "setVariable":
        code = f"{args.get('name')} = {args.get('value')}"
    elif command == "setBreakpoints":  # conditions and log messages are evaluated
        parts = []
        for bp in args.get("breakpoints") or []:
            if isinstance(bp, dict):
                for key in ("condition", "hitCondition", "logMessage"):
                    if bp.get(key):
                        parts.append(f"# {key} at line {bp.get('line')}: {bp[key]}")
        code = "\n".join(parts) or None
    else:
        code = None
    return (command if isinstance(command, str) else None), (
        code if code is None or isinstance(code, str) else json.dumps(code)
    )


def _utf8(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (JSON can carry them)
        return False
    return True


def _obj(raw, exact: bool = False) -> dict:
    """A JSON object from a message part, read as the kernel will read it; anything else
    counts as empty. `exact` for a part written back: the standard library's reading, which
    keeps every value as it was (orjson refuses integers past 64 bits)."""
    if not raw:
        return {}
    value = json_unpacker(bytes(raw)) if exact else _loads(raw)
    return value if isinstance(value, dict) else {}


def _loads(raw):
    """A message part read exactly as jupyter_client's Session reads it in the kernel
    (`orjson_unpacker`): orjson, else the standard library on the bytes decoded as UTF-8
    with replacement characters. JSON escapes (`\\u0065xecute_request`) and invalid UTF-8
    therefore mean here what they will mean to the kernel."""
    try:
        return orjson.loads(raw)
    except Exception:  # noqa: BLE001 - as jupyter_client: anything orjson refuses
        return json_unpacker(bytes(raw))


def _bytes(part) -> bytes:
    return part.bytes if hasattr(part, "bytes") else part
