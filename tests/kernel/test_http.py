"""HTTP capture in a real kernel against a real local HTTP service."""

import pytest


def http_ops(kernel, code):
    msg_id = kernel.run(code)
    return [e["payload"] for e in kernel.ingest.cell(msg_id) if e["kind"] == "op.http"]


def test_requests_reports_outermost_only(audited, http_target):
    pytest.importorskip("requests")
    base = http_target.base
    ops = http_ops(
        audited,
        f"""
import requests
r = requests.get("{base}/ok?q=1")
assert r.json() == {{"answer": 42}}
r = requests.post("{base}/submit", data=b"secret-ish payload " + b"x" * 100)
assert r.status_code == 201
r = requests.get("{base}/redirect")
assert r.status_code == 200 and len(r.history) == 1
""",
    )
    # three calls, three events: urllib3 underneath and the redirect hop are not separate
    assert [(p["method"], p["url"], p["status"]) for p in ops] == [
        ("GET", f"{base}/ok?q=1", 200),
        ("POST", f"{base}/submit", 201),
        ("GET", f"{base}/redirect", 200),
    ]
    get, post, redirect = ops
    assert get["library"] == "requests" and get["bytes_received"] == 14
    assert get["error"] is None and isinstance(get["duration_us"], int)
    assert post["bytes_sent"] == 119
    # 127.0.0.1 is in JUPYTER_AUDIT_BODY_HOSTS: bodies are captured, capped at 64 bytes
    assert post["request_body"] == "secret-ish payload " + "x" * 45 + "…"
    assert post["response_body"].startswith('{"echo": "secret-ish payload')
    assert get["response_body"] == '{"answer": 42}'
    assert redirect["redirects"] == 1 and redirect["final_url"] == f"{base}/ok"


def test_httpx_sync_and_async(audited, http_target):
    pytest.importorskip("httpx")
    base = http_target.base
    ops = http_ops(
        audited,
        f"""
import httpx
with httpx.Client() as client:
    assert client.get("{base}/ok").status_code == 200
async def main():
    async with httpx.AsyncClient() as client:
        r = await client.post("{base}/async", content=b"abc")
        return r.status_code
assert await main() == 201
""",
    )
    assert [(p["library"], p["method"], p["url"], p["status"]) for p in ops] == [
        ("httpx", "GET", f"{base}/ok", 200),
        ("httpx", "POST", f"{base}/async", 201),
    ]
    assert ops[1]["bytes_sent"] == 3 and ops[1]["request_body"] == "abc"


def test_urllib3_and_urllib_request(audited, http_target):
    pytest.importorskip("urllib3")
    base = http_target.base
    ops = http_ops(
        audited,
        f"""
import urllib3, urllib.request, urllib.error
pool = urllib3.PoolManager()
assert pool.request("GET", "{base}/pool").status == 200
with urllib.request.urlopen("{base}/stdlib") as r:
    assert r.status == 200
req = urllib.request.Request("{base}/form", data=b"a=1", method="POST")
urllib.request.urlopen(req).read()
try:
    urllib.request.urlopen("{base}/missing")
except urllib.error.HTTPError as e:
    assert e.code == 404
""",
    )
    assert [(p["library"], p["method"], p["url"], p["status"]) for p in ops] == [
        ("urllib3", "GET", f"{base}/pool", 200),
        ("urllib", "GET", f"{base}/stdlib", 200),
        ("urllib", "POST", f"{base}/form", 201),
        ("urllib", "GET", f"{base}/missing", 404),
    ]
    assert ops[0]["bytes_received"] == 14
    assert ops[3]["error"].startswith("HTTPError")


def test_connection_error_and_credentials_in_url(audited, port):
    pytest.importorskip("requests")
    ops = http_ops(
        audited,
        f"""
import requests
try:
    requests.get("http://user:hunter2@127.0.0.1:{port}/down", timeout=2)
except requests.ConnectionError:
    pass
""",
    )
    assert len(ops) == 1
    assert ops[0]["status"] is None and ops[0]["error"].startswith("ConnectionError")
    assert ops[0]["url"] == f"http://user@127.0.0.1:{port}/down"
    assert "hunter2" not in str(ops[0])
