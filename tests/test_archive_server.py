"""The server archives on its own schedule when archive_path is set: through its Writer, the
trail swapped under it while it keeps recording, and its verify endpoint still answering OK."""

import asyncio
import json

import pytest
from helpers.servers import server_config
from helpers.trail import sql_event

from jupyter_audit.store.archive_target import LocalTarget
from jupyter_audit.store.archive_verify import verify_archive


@pytest.fixture
def jp_server_config(trail_dir):
    return server_config(
        trail_dir / "trail.duckdb",
        archive_path=str(trail_dir / "archive"),
        archive_after="0d",
        checkpoint_every=100,
    )


async def test_the_server_archives_and_keeps_recording(jp_serverapp, jp_fetch, trail_dir):
    [app] = jp_serverapp.extension_manager.extension_apps["jupyter_audit"]
    writer = jp_serverapp.web_app.settings["jupyter_audit"].writer
    await asyncio.to_thread(writer.append_many, [sql_event(i) for i in range(250)])
    await asyncio.to_thread(lambda: writer.checkpoint().result())
    done = await asyncio.to_thread(app.archiving.run)
    assert done and done["removed"] and done["kept_from"] > 250
    first = writer.cursor().execute("SELECT min(seq) FROM events").fetchone()[0]
    assert first == done["kept_from"]
    # the server goes on recording into the swapped-in file
    await asyncio.to_thread(writer.append_many, [sql_event(i) for i in range(250, 260)])
    r = await jp_fetch("jupyter-audit", "api", "verify")
    result = json.loads(r.body)
    assert result["ok"], result
    archive = verify_archive(LocalTarget(trail_dir / "archive"))
    assert archive.ok and archive.last_seq == first - 1, archive.problems


@pytest.mark.parametrize("bad", [{"archive_after": "soon"}, {"retention": "-3d"}])
def test_bad_archive_ages_are_refused_at_start(bad):
    from traitlets import TraitError

    from jupyter_audit.server.app import AuditApp

    with pytest.raises(TraitError, match="not an age|cannot be negative"):
        AuditApp(**bad)
