"""The collector archives its trail with the settings a single-user server has
(`c.CollectorApp.archive_*`, `server/archiving.ArchiveSchedule`): on a DuckDB collector store
the existing archiver runs as it does for a server. The PostgreSQL collector's partitions:
tests/test_pg_archive.py."""

from __future__ import annotations

import asyncio

import pytest
from helpers.trail import sql_event
from traitlets import TraitError

from jupyter_audit.collector.app import CollectorApp, start_archiving
from jupyter_audit.store.archive_target import open_target
from jupyter_audit.store.archive_verify import verify_archive


def test_a_duckdb_collector_archives_on_its_schedule(tmp_path):
    app = CollectorApp(
        db_path=str(tmp_path / "collector.duckdb"),
        state_dir=str(tmp_path / "state"),
        archive_path=str(tmp_path / "archive"),
        archive_after="0d",
        retention="0d",
    )
    store = app.open_store()
    try:
        store.append_many([sql_event(i) for i in range(50)])
        store.checkpoint().result(timeout=60)
        store.append_many([sql_event(i) for i in range(50, 60)])

        async def one_run():
            schedule = start_archiving(app, store)
            try:
                return await asyncio.get_running_loop().run_in_executor(None, schedule.run)
            finally:
                schedule.stop()

        done = asyncio.run(one_run())
        assert done is not None and done["archived"] and done["removed"] == done["archived"]
        assert done["kept_from"] > 1
        assert store.verify().ok
    finally:
        store.close()
    result = verify_archive(
        open_target(str(tmp_path / "archive"), None), str(tmp_path / "collector.duckdb")
    )
    assert result.ok, result.problems


def test_a_collector_without_archive_path_does_not_archive(tmp_path):
    app = CollectorApp(db_path=str(tmp_path / "c.duckdb"), state_dir=str(tmp_path / "s"))
    assert start_archiving(app, None) is None


def test_a_bad_age_names_the_collectors_setting():
    with pytest.raises(TraitError, match=r"c\.CollectorApp\.retention"):
        CollectorApp(retention="forever")
