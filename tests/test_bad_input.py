"""Bad input gets a clear error, never a 500; floods of refused requests cannot fill the
trail; credentials in query strings never reach the log."""

import asyncio
import json
import logging

import pytest
from helpers.servers import server_config
from helpers.trail import trail_events
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from jupyter_audit.cli.demo import seed_demo_trail

NASTY = [
    "",
    "abc",
    "-1",
    "0",
    "99999999999999999999999999",
    "1e9",
    "nan",
    "\x00",
    "%00",
    "../../etc/passwd",
    "' OR 1=1 --",
    "🙂",
    "\ud800",
    "a" * 5000,
    "2026-13-45",
    "2026-01-01T25:00",
    "true",
    "[]",
    "{}",
]
PARAMS = {
    ("traces",): ["limit", "user", "before"],
    ("traces", "0123456789abcdef"): [],
    ("verify",): ["deep", "pubkey"],
    ("export",): ["user", "since", "until", "notebook", "trace"],
    ("me",): [],
    ("tokens",): [],
}


@pytest.fixture
def jp_server_config(trail_dir):
    seed_demo_trail(str(trail_dir / "trail.duckdb"))
    return server_config(trail_dir / "trail.duckdb")


async def test_no_query_parameter_makes_a_500(jp_fetch):
    """Every REST query parameter, fed what a fuzzer would: a 2xx, or a 4xx with a message."""
    for path, names in PARAMS.items():
        for name in names or [None]:
            for value in NASTY:
                params = {name: value} if name else {"junk": value}
                try:
                    r = await jp_fetch("jupyter-audit", "api", *path, params=params)
                    assert r.code == 200
                except HTTPClientError as e:
                    assert 400 <= e.code < 500, (path, name, value, e.code)
                    assert json.loads(e.response.body)["message"], (path, name, value)
                except UnicodeEncodeError:
                    pass  # the test's own client cannot send a lone surrogate
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("jupyter-audit", "api", "traces", params={"before": "abc"})
    assert e.value.code == 400 and "before must be an integer" in e.value.response.body.decode()


async def test_kernel_batches_nested_too_deep_get_a_400(jp_serverapp, jp_fetch):
    recorder = jp_serverapp.web_app.settings["jupyter_audit"]
    kernel_id = "k-deep"
    secret = recorder.kernel_secrets.issue(kernel_id)
    headers = {
        "Authorization": f"JupyterAudit-Kernel {secret}",
        "X-Jupyter-Audit-Kernel": kernel_id,
    }
    for depth in (100, 1000, 100_000):
        payload = "[" * depth + "]" * depth
        body = '{"events": [{"kind": "op.shell", "event_id": "e%d", "payload": {"command": "x", "x": %s}}]}'
        try:
            r = await jp_fetch(
                "jupyter-audit",
                "api",
                "kernel",
                "events",
                method="POST",
                body=body % (depth, payload),
                headers=headers,
            )
            answer = json.loads(r.body)
            assert len(answer["accepted"]) + len(answer["rejected"]) == 1
        except HTTPClientError as e:
            assert e.code == 400, (depth, e.code)
            assert json.loads(e.response.body)["message"]


async def test_a_flood_of_refused_kernel_posts_is_counted_not_recorded_one_by_one(
    jp_serverapp, jp_fetch
):
    recorder = jp_serverapp.web_app.settings["jupyter_audit"]
    for i in range(120):
        with pytest.raises(HTTPClientError) as e:
            await jp_fetch(
                "jupyter-audit",
                "api",
                "kernel",
                "events",
                method="POST",
                body="{}",
                headers={
                    "Authorization": "JupyterAudit-Kernel wrong",
                    "X-Jupyter-Audit-Kernel": f"k{i}",
                },
            )
        assert e.value.code == 403
    rejected = [e for e in trail_events(recorder) if e["kind"] == "security.rejected"]
    assert len(rejected) == 20  # one by one up to the limit, then counted
    recorder.flush_rejections(force=True)  # the minute is over (or the server stops)
    rejected = [e for e in trail_events(recorder) if e["kind"] == "security.rejected"]
    assert len(rejected) == 21
    assert rejected[-1]["payload"]["reason"].startswith("100 more refused within a minute")


async def test_tokens_in_query_strings_never_reach_the_log(jp_serverapp, jp_fetch):
    lines = []

    class Keep(logging.Handler):
        def emit(self, record):
            lines.append(self.format(record))

    keep = Keep()
    for name in ("", "tornado", "tornado.access", "tornado.general", "ServerApp"):
        logging.getLogger(name).addHandler(keep)
    from jupyter_audit.server import logfilter

    logfilter.install()
    secret = "s3cr3t-in-a-query-string"
    try:
        client = AsyncHTTPClient()
        base = jp_serverapp.connection_url.rstrip("/")
        for path in ("api/me", "api/nothing-here", "api/traces/nope", "api/kernel/events"):
            # tornado decodes parameter names: %74oken is token too
            name = "%74oken" if path == "api/nothing-here" else "token"
            url = f"{base}/jupyter-audit/{path}?x=1&{name}={secret}"
            r = await client.fetch(url, raise_error=False, headers={"Authorization": "token wrong"})
            assert r.code in (200, 302, 401, 403, 404)
        try:  # a traceback quoting a URL with a token
            raise ValueError(f"cannot fetch http://x/?token={secret}")
        except ValueError:
            logging.getLogger("tornado.application").exception("failed")
        await asyncio.sleep(0.1)
    finally:
        for name in ("", "tornado", "tornado.access", "tornado.general", "ServerApp"):
            logging.getLogger(name).removeHandler(keep)
    assert lines and not [line for line in lines if secret in line]
    assert any("token=[secret]" in line for line in lines)
    assert any("oken%3D[secret]" in line for line in lines)  # inside a login redirect's next=
