"""`jupyter audit run`: execute a notebook through a running Jupyter server's kernel API.

nbclient and papermill start kernels of their own, which the server never sees. This runner
asks the server for a session (so the server starts the kernel, injects the capture module
and records `session.started`) and sends every code cell over the server's kernel websocket,
so the gateway records `cell.requested` with the identity behind the token, exactly as for a
person in JupyterLab. The executed notebook is written with nbformat; the session is always
shut down at the end (`session.ended`), also after errors, timeouts, Ctrl-C or SIGTERM.

Exit codes: 0 every cell ran, 1 a cell failed or timed out, 2 usage, authentication or
connection errors (and interruptions). `jupyter audit run` (cli.cmd_run) parses the
arguments and turns a RunError into its one-line error message.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import sys
import threading
import urllib.parse
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2
TOKEN_ENV = "JUPYTER_AUDIT_TOKEN"
PROTOCOL_VERSION = "5.3"
HTTP_TIMEOUT = 120.0  # creating a session waits for the kernel to start
INTERRUPT_GRACE = 10.0  # after interrupting a timed-out cell, wait this long for its reply
OUTPUT_TYPES = ("stream", "display_data", "execute_result", "error")


class RunError(Exception):
    """A usage, authentication or connection problem: one line, exit 2."""


@dataclass
class CellFailure:
    index: int  # position in the notebook's cells (0-based)
    cell_id: str | None
    ename: str
    evalue: str

    def describe(self) -> str:
        where = f"cell index {self.index}"
        if self.cell_id:
            where += f" (id {self.cell_id})"
        return f"{where} failed: {self.ename}: {self.evalue}"


@dataclass
class RunState:
    """What the run got to; filled in as it goes, so an interrupted run can still report."""

    kernel_id: str | None = None
    session_id: str | None = None
    started: bool = False  # the first cell was sent (the output notebook is worth writing)
    cells_run: int = 0
    code_cells: int = 0
    failure: CellFailure | None = None
    started_at: str | None = None
    finished_at: str | None = None
    warnings: list[str] = field(default_factory=list)


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------------------- HTTP
def authorization(token: str) -> str:
    """The Authorization header every `jupyter audit … --url` command sends: a bare token
    becomes `token T`; a value with a scheme (`Bearer …`) is sent as given."""
    return token if " " in token else f"token {token}"


def _server_message(body: bytes | None, fallback: str) -> str:
    try:
        data = json.loads(body or b"")
        message = data.get("message") if isinstance(data, dict) else None
    except ValueError:
        message = None
    return str(message or fallback or "").strip()


class ServerAPI:
    """Just enough of jupyter_server's REST API, authenticated on every request."""

    def __init__(self, base_url: str, token: str):
        self.base_url = base_url.rstrip("/") + "/"
        self._auth = authorization(token)
        # Token-authenticated requests need no XSRF token in jupyter_server. An identity
        # provider that does not mark its requests as token-authenticated (bearer tokens)
        # still gets through with the double-submitted pair a browser would send.
        xsrf = secrets.token_hex(16)
        self._headers = {
            "Authorization": self._auth,
            "X-XSRFToken": xsrf,
            "Cookie": f"_xsrf={xsrf}",
        }

    def url(self, path: str) -> str:
        return self.base_url + path.lstrip("/")

    def ws_url(self, path: str) -> str:
        parts = urllib.parse.urlsplit(self.url(path))
        scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
        return urllib.parse.urlunsplit(parts._replace(scheme=scheme))

    def _refused(self, code: int, body: bytes | None, reason: str) -> RunError:
        message = _server_message(body, reason)
        if code in (401, 403):
            return RunError(f"the server refused the token (HTTP {code}): {message}")
        return RunError(f"the server answered HTTP {code}: {message}")

    def _unreachable(self, e: BaseException) -> RunError:
        detail = getattr(e, "strerror", None) or str(e) or type(e).__name__
        return RunError(f"cannot reach {self.base_url.rstrip('/')}: {detail}")

    async def request(self, method: str, path: str, body: dict | None = None) -> dict | None:
        from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        req = HTTPRequest(
            self.url(path),
            method=method,
            headers=headers,
            body=json.dumps(body) if body is not None else ("" if method == "POST" else None),
            follow_redirects=False,  # a login redirect is a refusal, not a page to read
            connect_timeout=20,
            request_timeout=HTTP_TIMEOUT,
            allow_nonstandard_methods=True,
        )
        try:
            resp = await AsyncHTTPClient().fetch(req, raise_error=False)
        except OSError as e:
            raise self._unreachable(e) from None
        except HTTPClientError as e:  # 599: timeouts and broken connections
            raise self._unreachable(e) from None
        if resp.code == 599:
            raise self._unreachable(resp.error or RuntimeError("no response"))
        if resp.code >= 300:
            raise self._refused(resp.code, resp.body, resp.reason)
        if not resp.body:
            return None
        try:
            return json.loads(resp.body)
        except ValueError:
            raise RunError(f"{method} {path}: the server's answer is not JSON") from None

    async def websocket(self, path: str):
        from tornado.httpclient import HTTPClientError, HTTPRequest
        from tornado.websocket import websocket_connect

        req = HTTPRequest(
            self.ws_url(path),
            headers=dict(self._headers),
            connect_timeout=20,
            request_timeout=HTTP_TIMEOUT,
        )
        try:
            return await websocket_connect(req, max_message_size=256 * 1024 * 1024)
        except HTTPClientError as e:
            if e.code == 599:
                raise self._unreachable(e) from None
            body = e.response.body if e.response is not None else None
            raise self._refused(e.code, body, e.message) from None
        except OSError as e:
            raise self._unreachable(e) from None


# ---------------------------------------------------------------------------- the kernel
class KernelChannel:
    """The kernel websocket (legacy JSON protocol), one cell at a time."""

    def __init__(self, ws, client_session: str):
        self.ws = ws
        self.client_session = client_session
        self.closed = False
        self._cell: _CellRun | None = None
        self._displays: dict[str, list] = {}  # display_id -> output nodes showing it
        self._reader = asyncio.ensure_future(self._read())

    def close(self) -> None:
        self._reader.cancel()
        self.ws.close()

    def send_execute(self, code: str, cell_id: str | None) -> str:
        msg_id = uuid.uuid4().hex
        msg = {
            "channel": "shell",
            "header": {
                "msg_id": msg_id,
                "msg_type": "execute_request",
                "session": self.client_session,
                "username": "",  # never trusted: the server records who the token belongs to
                "date": _now(),
                "version": PROTOCOL_VERSION,
            },
            "parent_header": {},
            "metadata": {"cellId": cell_id} if cell_id else {},
            "content": {
                "code": code,
                "silent": False,
                "store_history": True,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
            "buffers": [],
        }
        self.ws.write_message(json.dumps(msg))
        return msg_id

    async def run_cell(self, cell, code: str, timeout: float, interrupt) -> dict:
        """Execute one cell, filling its outputs; returns the execute_reply content (or a
        synthetic error reply on timeout or a lost kernel)."""
        run = _CellRun(cell)
        self._cell = run
        try:
            run.msg_id = self.send_execute(code, cell.get("id"))
            if self.closed:
                run.lost("the connection to the kernel was closed")
            try:
                await asyncio.wait_for(run.done.wait(), timeout)
            except TimeoutError:
                await interrupt()
                try:
                    await asyncio.wait_for(run.done.wait(), INTERRUPT_GRACE)
                except TimeoutError:
                    pass
                evalue = f"the cell did not finish within {timeout:g} s; the kernel was interrupted"
                cell.outputs.append(_error_output("CellTimeoutError", evalue))
                return {"status": "error", "ename": "CellTimeoutError", "evalue": evalue}
            if run.reply is None:  # done is set only with a reply; kept for the type
                return {"status": "error", "ename": "NoReply", "evalue": "no reply"}
            return run.reply
        finally:
            self._cell = None

    async def _read(self) -> None:
        while True:
            raw = await self.ws.read_message()
            if raw is None:
                self.closed = True
                if self._cell is not None:
                    self._cell.lost("the connection to the kernel was closed")
                return
            if isinstance(raw, bytes):
                continue  # legacy binary frames carry buffers (widgets); not notebook outputs
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            try:
                self._dispatch(msg)
            except Exception:  # noqa: BLE001 - one odd message must not stop the run
                continue

    def _dispatch(self, msg: dict) -> None:
        header = msg.get("header") or {}
        msg_type = header.get("msg_type")
        content = msg.get("content") or {}
        parent = (msg.get("parent_header") or {}).get("msg_id")
        run = self._cell
        if msg_type == "update_display_data":
            self._update_display(content)
            return
        if msg_type == "status" and content.get("execution_state") in (
            "dead",
            "restarting",
            "autorestarting",
        ):
            if run is not None:
                run.lost(f"the kernel is {content['execution_state']}")
            return
        if run is None or parent != run.msg_id:
            return
        channel = msg.get("channel")
        if channel == "shell" and msg_type == "execute_reply":
            run.reply = content
            if content.get("execution_count") is not None:
                run.cell.execution_count = content["execution_count"]
            run.check_done()
        elif msg_type == "status":
            if content.get("execution_state") == "idle":
                run.idle = True
                run.check_done()
        elif msg_type == "execute_input":
            if content.get("execution_count") is not None:
                run.cell.execution_count = content["execution_count"]
        elif msg_type == "clear_output":
            if content.get("wait"):
                run.clear_before_next = True
            else:
                run.cell.outputs = []
                run.clear_before_next = False
        elif msg_type in OUTPUT_TYPES:
            self._add_output(run, msg, msg_type, content)

    def _add_output(self, run: _CellRun, msg: dict, msg_type: str, content: dict) -> None:
        import nbformat

        if run.clear_before_next:
            run.cell.outputs = []
            run.clear_before_next = False
        outputs = run.cell.outputs
        if msg_type == "stream" and outputs:
            last = outputs[-1]
            if last.get("output_type") == "stream" and last.get("name") == content.get("name"):
                last["text"] = last.get("text", "") + content.get("text", "")
                return
        out = nbformat.v4.output_from_msg(msg)
        outputs.append(out)
        display_id = (content.get("transient") or {}).get("display_id")
        if display_id and msg_type in ("display_data", "execute_result"):
            self._displays.setdefault(display_id, []).append(out)

    def _update_display(self, content: dict) -> None:
        display_id = (content.get("transient") or {}).get("display_id")
        if not isinstance(display_id, str):
            return
        for out in self._displays.get(display_id, ()):
            out["data"] = content.get("data", {})
            out["metadata"] = content.get("metadata", {})


class _CellRun:
    def __init__(self, cell):
        self.cell = cell
        self.msg_id: str | None = None
        self.reply: dict | None = None
        self.idle = False
        self.clear_before_next = False
        self.done = asyncio.Event()

    def check_done(self) -> None:
        if self.reply is not None and self.idle:
            self.done.set()

    def lost(self, why: str) -> None:
        if self.done.is_set():
            return
        self.cell.outputs.append(_error_output("DeadKernelError", why))
        self.reply = {"status": "error", "ename": "DeadKernelError", "evalue": why}
        self.done.set()


def _error_output(ename: str, evalue: str):
    import nbformat

    return nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[])


# ---------------------------------------------------------------------------- the run
async def execute(
    api: ServerAPI,
    nb,
    state: RunState,
    *,
    path: str,
    name: str,
    kernel_name: str,
    timeout: float,
) -> None:
    """Run the notebook's code cells in a new server session; always ends the session."""
    session = await api.request(
        "POST",
        "api/sessions",
        {"path": path, "type": "notebook", "name": name, "kernel": {"name": kernel_name}},
    )
    if not isinstance(session, dict) or not isinstance(session.get("kernel"), dict):
        raise RunError("POST api/sessions: the server's answer names no session and kernel")
    state.session_id = session["id"]
    state.kernel_id = session["kernel"]["id"]
    channel = None
    try:
        client_session = uuid.uuid4().hex
        query = urllib.parse.urlencode({"session_id": client_session})
        ws = await api.websocket(f"api/kernels/{state.kernel_id}/channels?{query}")
        channel = KernelChannel(ws, client_session)

        async def interrupt():
            try:
                await api.request("POST", f"api/kernels/{state.kernel_id}/interrupt")
            except RunError as e:
                state.warnings.append(f"could not interrupt the kernel: {e}")

        state.started = True
        state.started_at = _now()
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code" or not cell.source.strip():
                continue
            state.cells_run += 1
            reply = await channel.run_cell(cell, cell.source, timeout, interrupt)
            if reply.get("status") != "ok":
                if _expected_error(cell, reply):
                    continue  # tagged `raises-exception`: expected to fail, as in nbclient
                state.failure = CellFailure(
                    index,
                    cell.get("id"),
                    str(reply.get("ename") or reply.get("status") or "error"),
                    str(reply.get("evalue") or ""),
                )
                break
    finally:
        state.finished_at = _now()
        if channel is not None:
            channel.close()
        await _end_session(api, state)


async def _end_session(api: ServerAPI, state: RunState) -> None:
    try:
        await api.request("DELETE", f"api/sessions/{state.session_id}")
    except RunError as e:
        state.warnings.append(f"could not shut the session down: {e}")


async def _main(api: ServerAPI, nb, state: RunState, **kw) -> None:
    if threading.current_thread() is threading.main_thread():
        # a scheduler's SIGTERM ends the run like Ctrl-C: the session is still shut down
        task = asyncio.current_task()
        if task is not None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    await execute(api, nb, state, **kw)


# ---------------------------------------------------------------------------- the command
def read_notebook(path: Path):
    import nbformat

    try:
        return nbformat.read(str(path), as_version=4)
    except FileNotFoundError:
        raise RunError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise RunError(f"{path}: is a directory, not a notebook") from None
    except OSError as e:
        raise RunError(f"cannot read {path}: {e.strerror}") from None
    except Exception as e:  # noqa: BLE001 - nbformat raises many kinds for a non-notebook
        raise RunError(f"{path}: not a Jupyter notebook ({type(e).__name__})") from None


def default_output(src: Path) -> Path:
    return src.with_name(f"{src.stem}.run.ipynb")


#: what a cell tagged `raises-exception` may not excuse: the run itself going wrong
RUN_ERRORS = ("CellTimeoutError", "NoReply", "DeadKernelError")


def _expected_error(cell, reply: dict) -> bool:
    """A cell tagged `raises-exception` (nbclient's tag; `jupyter audit replay` sets it on
    cells that failed when recorded) raising an exception of its own does not stop the run."""
    tags = cell.get("metadata", {}).get("tags") or []
    return (
        "raises-exception" in tags
        and reply.get("status") == "error"
        and reply.get("ename") not in RUN_ERRORS
    )


def run_notebook(
    notebook: str | Path,
    *,
    url: str,
    token: str,
    output: str | Path | None = None,
    kernel: str | None = None,
    path: str | None = None,
    timeout: float = 600,
) -> int:
    """Run NOTEBOOK through the server at URL; returns the exit code (0 ok, 1 a cell failed
    or timed out, 2 interrupted); raises RunError for usage/auth/connection problems."""
    if timeout <= 0:
        raise RunError("--timeout must be positive")
    src = Path(notebook)
    nb = read_notebook(src)
    out = Path(output) if output else default_output(src)
    kernel_name = kernel or (nb.metadata.get("kernelspec") or {}).get("name") or "python3"
    for cell in nb.cells:  # the output shows this run only
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    state = RunState(code_cells=sum(c.cell_type == "code" for c in nb.cells))
    api = ServerAPI(url, token)
    interrupted = None
    try:
        asyncio.run(
            _main(
                api,
                nb,
                state,
                path=path or src.name,
                name=src.name,
                kernel_name=kernel_name,
                timeout=timeout,
            )
        )
    except KeyboardInterrupt:
        interrupted = "interrupted"
    except asyncio.CancelledError:
        interrupted = "terminated"
    for w in state.warnings:
        print(f"jupyter audit run: warning: {w}", file=sys.stderr)
    if state.started:
        nb.metadata["jupyter_audit"] = {
            "run": {
                "trace_id": state.kernel_id,
                "kernel_id": state.kernel_id,
                "kernel_name": kernel_name,
                "started": state.started_at,
                "finished": state.finished_at,
                "status": interrupted or ("failed" if state.failure else "ok"),
            }
        }
        try:
            import nbformat

            nbformat.write(nb, str(out))
        except OSError as e:
            raise RunError(f"cannot write {out}: {e.strerror}") from None
    if interrupted:
        where = f"; partial notebook written to {out}" if state.started else ""
        print(f"jupyter audit run: {interrupted}; session shut down{where}", file=sys.stderr)
        return EXIT_ERROR
    if state.failure:
        print(f"jupyter audit run: {state.failure.describe()}", file=sys.stderr)
    status = "stopped at a failed cell" if state.failure else "all ok"
    print(
        f"ran {state.cells_run} of {state.code_cells} code cell(s) ({status}) in kernel "
        f"{state.kernel_id} (trace {state.kernel_id}); wrote {out}"
    )
    return EXIT_FAILED if state.failure else EXIT_OK
