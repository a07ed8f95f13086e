"""A kernel connection the way JupyterLab makes one: a websocket to a real server's kernel
(v1 subprotocol or the legacy JSON protocol) that runs cells and collects their output."""

import asyncio
import json
import uuid

from jupyter_client.jsonutil import json_default
from jupyter_client.session import Session
from jupyter_server.services.kernels.connection.base import (
    deserialize_msg_from_ws_v1,
    serialize_msg_to_ws_v1,
)

V1 = "v1.kernel.websocket.jupyter.org"


class KernelClient:
    """Just enough of a JupyterLab kernel connection to run cells over a websocket."""

    def __init__(self, ws, v1: bool):
        self.ws = ws
        self.v1 = v1
        self.session = Session(username="mallory-the-forger")  # never trusted by the server

    def send_execute(self, code: str, cell_id: str | None = None) -> str:
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
            metadata={"cellId": cell_id or "cell-" + uuid.uuid4().hex[:8]},
        )
        self.send(msg, "shell")
        return msg["header"]["msg_id"]

    def send(self, msg: dict, channel: str) -> None:
        """Send a message dict on `channel`, framed as this connection's protocol does."""
        if self.v1:
            parts = [
                json.dumps(msg[k], default=json_default).encode()
                for k in ("header", "parent_header", "metadata", "content")
            ]
            self.ws.write_message(serialize_msg_to_ws_v1(parts, channel), binary=True)
        else:
            self.ws.write_message(json.dumps({**msg, "channel": channel}, default=json_default))

    async def run(self, code: str, timeout: float = 60) -> tuple[str, str]:
        status, out, _errors = await self.run_full(code, timeout)
        return status, out

    async def run_full(
        self, code: str, timeout: float = 60, cell_id: str | None = None
    ) -> tuple[str, str, list[dict]]:
        """(execute_reply status, stream text, error outputs) of one cell (`cell_id`: the
        notebook cell's id, as JupyterLab sends it; a new one per call by default)."""
        msg_id = self.send_execute(code, cell_id)
        out = []
        errors = []
        state = {}

        async def collect():
            while True:
                raw = await self.ws.read_message()
                assert raw is not None, "websocket closed"
                if self.v1:
                    _channel, parts = deserialize_msg_from_ws_v1(raw)
                    header, parent, _meta, content = (json.loads(p) for p in parts[:4])
                else:
                    m = json.loads(raw)
                    _channel, header, parent, content = (
                        m["channel"],
                        m["header"],
                        m["parent_header"],
                        m["content"],
                    )
                if parent.get("msg_id") != msg_id:
                    continue
                if header["msg_type"] == "stream":
                    out.append(content["text"])
                if header["msg_type"] == "error":
                    errors.append(content)
                if header["msg_type"] == "execute_reply":
                    state["status"] = content["status"]
                if header["msg_type"] == "status" and content["execution_state"] == "idle":
                    state["idle"] = True
                if "status" in state and "idle" in state:
                    return state["status"]

        status = await asyncio.wait_for(collect(), timeout)
        return status, "".join(out), errors


async def open_kernel(jp_fetch, jp_ws_fetch, v1=True, headers=None, kernel_id=None):
    if kernel_id is None:
        r = await jp_fetch(
            "api", "kernels", method="POST", body=json.dumps({"name": "python3"}), headers=headers
        )
        kernel_id = json.loads(r.body)["id"]
    kwargs = {"subprotocols": [V1]} if v1 else {}
    ws = await jp_ws_fetch(
        "api",
        "kernels",
        kernel_id,
        "channels",
        params={"session_id": uuid.uuid4().hex},
        headers=headers,
        **kwargs,
    )
    return kernel_id, KernelClient(ws, v1)
