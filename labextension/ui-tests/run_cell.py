"""Run one cell on the UI-test server as another identity, the way JupyterLab does.

Used by tests/approvals.spec.ts: the reviewer is the browser's user, the requester a service
account whose token the test created through the tokens API. The browser cannot send that
token (service tokens go in the Authorization header, which browsers cannot set on a
websocket), so this starts a kernel over REST and runs the cell over the kernel websocket
with `tests/helpers/kernels.py`'s client (the one the Python tests use), then prints one
JSON line: {"kernel_id", "status", "output", "errors"} and shuts the kernel down.

    python run_cell.py BASE_URL [TOKEN] < code.py   (no token: the browser's user)
"""

import asyncio
import json
import sys
import uuid
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.helpers.kernels import V1, KernelClient  # noqa: E402


async def main(base_url: str, token: str, code: str) -> dict:
    headers = {"Authorization": f"token {token}"} if token else {}
    http = AsyncHTTPClient()
    r = await http.fetch(
        f"{base_url}/api/kernels",
        method="POST",
        body=json.dumps({"name": "python3"}),
        headers=headers,
    )
    kernel_id = json.loads(r.body)["id"]
    ws_url = base_url.replace("http", "ws", 1)
    ws = await websocket_connect(
        HTTPRequest(
            f"{ws_url}/api/kernels/{kernel_id}/channels?session_id={uuid.uuid4().hex}",
            headers=headers,
        ),
        subprotocols=[V1],
    )
    try:
        status, output, errors = await KernelClient(ws, v1=True).run_full(code, timeout=300)
    finally:
        ws.close()
        url = f"{base_url}/api/kernels/{kernel_id}"
        await http.fetch(url, method="DELETE", headers=headers, raise_error=False)
    return {"kernel_id": kernel_id, "status": status, "output": output, "errors": errors}


if __name__ == "__main__":
    token = sys.argv[2] if len(sys.argv) > 2 else ""
    result = asyncio.run(main(sys.argv[1].rstrip("/"), token, sys.stdin.read()))
    print(json.dumps(result), flush=True)
