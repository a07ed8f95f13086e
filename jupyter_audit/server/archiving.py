"""The server's archiving schedule: when `c.AuditApp.archive_path` is set, sealed segments of
the trail are archived (and removed, as `retention` allows) every `archive_interval` seconds,
on a worker thread, through the Writer (`store.archiver`). A failed run is logged and
retried at the next interval; it never stops the server or the trail."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from tornado.ioloop import IOLoop, PeriodicCallback

from ..identity.snapshot import system_identity
from ..store.archive import parse_age
from ..store.archive_target import open_target
from ..store.archiver import run_archive
from ..store.errors import loggable_error


class ArchiveSchedule:
    def __init__(self, store, app, log: logging.Logger):
        self.store = store
        self.log = log
        self.target = open_target(app.archive_path, app.archive_endpoint_url or None, create=True)
        self.after = parse_age(app.archive_after)
        self.retention = max(parse_age(app.retention), self.after)
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
