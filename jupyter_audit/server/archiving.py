"""Archiving on a schedule, for a single-user server and for the collector alike: the archive
settings (`ArchiveSettings`, `c.AuditApp.archive_*` / `c.CollectorApp.archive_*`, the same
names and meanings) and `ArchiveSchedule`: when `archive_path` is set, sealed segments of the
trail are archived (and removed, as `retention` allows) every `archive_interval` seconds, on a
worker thread, through the trail store (`store.archiver`; a DuckDB Writer or a PostgreSQL
`PgStore`, whose segments are its partitions). A failed run is logged and retried at the next
interval; it never stops the server, the collector or the trail."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from tornado.ioloop import IOLoop, PeriodicCallback
from traitlets import Float, TraitError, Unicode, validate
from traitlets.config import Configurable

from ..identity.snapshot import system_identity
from ..store.archive import parse_age
from ..store.archive_target import open_target
from ..store.archiver import run_archive
from ..store.errors import loggable_error


class ArchiveSettings(Configurable):
    """The archive settings of an app that archives its trail: set them as `c.AuditApp.NAME`
    (a single-user server) or `c.CollectorApp.NAME` (the collector; docs/archive.md)."""

    archive_path = Unicode(
        "",
        config=True,
        help="Where sealed segments of the trail are archived as Parquet: a directory, or "
        "s3://bucket/prefix (boto3; credentials from the standard AWS environment). Empty: "
        "no archiving.",
    )
    archive_endpoint_url = Unicode(
        "", config=True, help="Endpoint of an S3-compatible server for an s3:// archive_path."
    )
    archive_after = Unicode(
        "90d", config=True, help="Archive sealed segments older than this (e.g. 90d, 12h, 2w)."
    )
    retention = Unicode(
        "0d",
        config=True,
        help="Archived segments older than this (and never before archive_after) leave the "
        "live trail, once their archive copy was read back and verified.",
    )
    archive_lock_for = Unicode(
        "",
        config=True,
        help="S3 Object Lock (compliance mode) retain-until date of archive objects, as an age "
        "from when they are written (e.g. 2557d); empty: the bucket's default retention.",
    )
    archive_interval = Float(3600.0, min=1.0, config=True, help="Seconds between archiving runs.")

    @validate("archive_after", "retention", "archive_lock_for")
    def _valid_age(self, proposal):
        if proposal["value"]:
            try:
                parse_age(proposal["value"])
            except ValueError as e:
                name = f"c.{type(self).__name__}.{proposal['trait'].name}"
                raise TraitError(f"{name}: {e}") from None
        return proposal["value"]


class ArchiveSchedule:
    """Archiving runs of `store` every `app.archive_interval` seconds (`ArchiveSettings`).
    `removes` False: archive only, nothing leaves the live trail (`retention` unused)."""

    def __init__(self, store, app, log: logging.Logger, removes: bool = True):
        self.store = store
        self.log = log
        self.target = open_target(app.archive_path, app.archive_endpoint_url or None, create=True)
        self.after = parse_age(app.archive_after)
        self.retention: timedelta | None = (
            max(parse_age(app.retention), self.after) if removes else None
        )
        self.lock_for: timedelta | None = (
            parse_age(app.archive_lock_for) if app.archive_lock_for else None
        )
        self.interval = app.archive_interval
        self._running = threading.Lock()
        self._timer: PeriodicCallback | None = None

    def start(self) -> None:
        self._timer = PeriodicCallback(self.run_soon, self.interval * 1000)
        self._timer.start()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.stop()

    def run_soon(self) -> None:
        IOLoop.current().run_in_executor(None, self.run)

    def run(self) -> dict | None:
        """One archiving run now (skipped while one is under way)."""
        if not self._running.acquire(blocking=False):
            return None
        try:
            done = run_archive(
                self.store,
                self.target,
                archive_after=self.after,
                retention=self.retention,
                lock_for=self.lock_for,
                identity=system_identity(),
            )
            if done["archived"]:
                self.log.info(
                    "jupyter-audit: %d segment(s) in %s; the live trail begins at #%d",
                    len(done["archived"]),
                    self.target.url,
                    done["kept_from"],
                )
            return done
        except Exception as e:  # noqa: BLE001 - retried at the next interval
            self.log.error("jupyter-audit: archiving failed: %s", loggable_error(e))
            return None
        finally:
            self._running.release()
