"""A single-user server forwarding to a collector that is away (server/forwarding.py), on a
real jupyter_server with real kernels: the server keeps recording locally; past
`collector_max_backlog`, fail_mode=closed refuses cells with a clear message and
fail_mode=open runs them (and says so in the log). Forwarding itself, to a real collector
under a real Hub, is tests/e2e/test_collector_hub.py."""

from __future__ import annotations

import asyncio
import time

import pytest
from helpers.kernels import open_kernel
from helpers.servers import free_port, server_config


async def backlog_of(audit, at_least: int = 1, timeout: float = 30) -> int:
    forwarder = audit.forwarder
    deadline = time.monotonic() + timeout
    while forwarder.backlog < at_least:
        assert time.monotonic() < deadline, "the forwarder never saw the local trail"
        await asyncio.sleep(0.1)
    return forwarder.backlog


class TestClosed:
    @pytest.fixture
    def jp_server_config(self, trail_dir):
        return server_config(
            trail_dir / "trail.duckdb",
            fail_mode="closed",
            collector_url=f"http://127.0.0.1:{free_port()}/services/jupyter-audit/",
            collector_max_backlog=0,
        )

    async def test_cells_are_refused_while_the_collector_lags_too_far(
        self, jp_serverapp, jp_fetch, jp_ws_fetch
    ):
        audit = jp_serverapp.web_app.settings["jupyter_audit"]
        await backlog_of(audit)
        assert not audit.forwarder.connected
        _kernel_id, client = await open_kernel(jp_fetch, jp_ws_fetch)
        status, _out, errors = await client.run_full("x = 1")
        assert status == "error"
        assert errors[0]["ename"] == "AuditTrailUnavailable"
        assert "collector has not acknowledged" in errors[0]["evalue"]
        assert "collector_max_backlog=0" in errors[0]["evalue"]
        # the bound is what decides: under it, cells run (and are recorded locally)
        audit.forwarder.max_backlog = 1_000_000
        status, out, _ = await client.run_full("print(x if 'x' in dir() else 'never ran')")
        assert (status, out.strip()) == ("ok", "never ran")
        client.ws.close()


class TestOpen:
    @pytest.fixture
    def jp_server_config(self, trail_dir):
        return server_config(
            trail_dir / "trail.duckdb",
            collector_url=f"http://127.0.0.1:{free_port()}/",
            collector_max_backlog=0,
        )

    async def test_cells_run_and_are_recorded_while_the_collector_is_away(
        self, jp_serverapp, jp_fetch, jp_ws_fetch
    ):
        audit = jp_serverapp.web_app.settings["jupyter_audit"]
        before = await backlog_of(audit)
        _kernel_id, client = await open_kernel(jp_fetch, jp_ws_fetch)
        assert await client.run("print(6 * 7)") == ("ok", "42\n")
        client.ws.close()
        await backlog_of(audit, before + 2)  # the cell's records wait for the collector
        assert audit.forwarder.refusal() is None
