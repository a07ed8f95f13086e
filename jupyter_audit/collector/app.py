"""`jupyter audit collector`: the process that runs the collector as a JupyterHub service.

`CollectorApp` holds its configuration (traits, `c.CollectorApp.*` in a config file, or the
CLI's flags), opens the trail store (`--db PATH`: the DuckDB Writer; `--pg DSN`: PostgreSQL's
`PgStore`, imported only then) with keys from its state directory (created 0700; the signing
and pseudonym keys 0600, never anywhere else), asks the Hub who calls (`hubauth`), serves the
forwarding API (`handlers`), watches for silent servers and, with `archive_path`, archives its
trail on a schedule (`server.archiving`, the settings a single-user server has; on PostgreSQL
archived partitions leave through `pg_maintenance_dsn`). SIGTERM/SIGINT close the trail with a
last signed checkpoint.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tornado import httpserver, web
from tornado.ioloop import IOLoop, PeriodicCallback
from traitlets import Dict, Float, Int, List, Unicode
from traitlets.config import Configurable

from ..masking import load_or_create_key
from ..masking.config import configured_engine
from ..masking.keys import record_key_in_use
from ..server.archiving import ArchiveSettings
from ..store.signing import SigningKey
from .approvals import REVIEWER_GROUPS, approval_handlers, start_approvals
from .browser import browser_handlers, browser_settings
from .handlers import SETTINGS_KEY, handlers
from .hubauth import HubUsers, ServerTokens
from .reading import read_handlers

log = logging.getLogger("jupyter_audit.collector")
FORMAT = "[%(levelname)s %(asctime)s %(name)s] %(message)s"


class CollectorApp(ArchiveSettings, Configurable):
    """The collector (docs/collector.md): `jupyter audit collector` flags or --config FILE."""

    db_path = Unicode(
        "", config=True, help="DuckDB trail file of the collector (one machine, tests)."
    )
    pg_dsn = Unicode(
        "",
        config=True,
        help="PostgreSQL connection string of the collector's trail (its system of record at "
        "scale); takes precedence over db_path.",
    )
    pg_maintenance_dsn = Unicode(
        "",
        config=True,
        help="PostgreSQL connection string of the maintenance role (`jupyter audit pg-setup`), "
        "with which archived partitions of the log leave the live trail (retention); empty: "
        "the collector archives (archive_path) but keeps every record in PostgreSQL.",
    )
    state_dir = Unicode(
        "",
        config=True,
        help="Directory (created 0700) of the collector's signing key, pseudonym key and "
        "plain checkpoint copy; keep it out of every user's reach. Default: "
        "<jupyter data dir>/audit-collector.",
    )
    checkpoint_mirror_path = Unicode(
        "", config=True, help="A second location that receives every signed checkpoint too."
    )
    service_name = Unicode(
        "jupyter-audit",
        config=True,
        help="The collector's service name at the Hub (JUPYTERHUB_SERVICE_NAME overrides): "
        "callers need access:services!service=<name>.",
    )
    ip = Unicode(
        "",
        config=True,
        help="Address to listen on. Default: the host of JUPYTERHUB_SERVICE_URL, else 127.0.0.1.",
    )
    port = Int(
        0, config=True, help="Port to listen on. Default: the port of JUPYTERHUB_SERVICE_URL."
    )
    silent_after = Float(
        120.0,
        min=1.0,
        config=True,
        help="Seconds without a batch or heartbeat after which a forwarding server that did "
        "not say it was stopping is recorded as silent (forward.silent).",
    )
    max_body_bytes = Int(
        32 << 20, min=1024, config=True, help="Largest forwarded batch accepted (413 beyond)."
    )
    connection_timeout = Float(
        60.0,
        min=0.1,
        config=True,
        help="Seconds a connection may stay idle or take to send its request headers, and a "
        "batch's body to arrive (a slow sender holds no connection longer).",
    )
    hub_cache_seconds = Int(
        60, min=0, config=True, help="Seconds the Hub's answer for a token is cached."
    )
    auditor_groups = List(
        Unicode(),
        ["audit-auditors"],
        config=True,
        help="Hub groups whose members see every trace the collector holds and may export it "
        "(the same names as c.AuditApp.auditor_groups); others see their own servers' traces.",
    )
    reviewer_groups = List(
        Unicode(),
        list(REVIEWER_GROUPS),
        config=True,
        help="Hub groups whose members decide the approval requests of every server (the same "
        "names as c.AuditApp.reviewer_groups); no one decides their own.",
    )
    break_glass_groups = List(
        Unicode(),
        [],
        config=True,
        help="Hub groups whose members may decide any server's approval request alone, in an "
        "emergency: the reason is mandatory and the decision is flagged break_glass in the "
        "collector's trail (the same names as c.AuditApp.break_glass_groups). Never their own "
        "request, nor one of a cell they ran.",
    )
    approval_expiry = Float(
        1800.0,
        min=1.0,
        config=True,
        help="Seconds an approval request asked through the collector waits for its decisions "
        "before it expires (servers' own c.AuditApp.approval_expiry does not apply to them).",
    )
    approval_webhooks = List(
        Dict(),
        [],
        config=True,
        help="Notifications of approval requests and decisions, sent by the collector; entries "
        "as c.AuditApp.approval_webhooks (docs/approvals.md).",
    )
    checkpoint_every = Int(10_000, config=True, help="Sign a checkpoint every N events.")
    checkpoint_interval = Float(
        60.0, config=True, help="Sign a checkpoint at least every T seconds while events arrive."
    )

    def state_path(self) -> Path:
        if self.state_dir:
            path = Path(self.state_dir)
        else:
            from jupyter_core.paths import jupyter_data_dir

            path = Path(jupyter_data_dir()) / "audit-collector"
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.chmod(0o700)
        return path

    def open_store(self):
        """The collector's trail store, open (its keys in the state directory)."""
        state = self.state_path()
        masker = configured_engine(load_or_create_key(state / "masking.key"))
        key_path = state / "signing-key.pem"
        key = SigningKey.load_or_create(key_path)
        key_path.chmod(0o600)
        options = dict(
            checkpoint_every=self.checkpoint_every,
            checkpoint_interval=self.checkpoint_interval,
            checkpoint_path=state / "collector.checkpoints",
            checkpoint_mirror=self.checkpoint_mirror_path or None,
        )
        if self.pg_dsn:
            # PostgreSQL's store, only when asked for (psycopg need not be installed otherwise)
            PgStore = importlib.import_module("jupyter_audit.store.pg").PgStore

            return PgStore(
                self.pg_dsn, masker, key, maintenance_dsn=self.pg_maintenance_dsn, **options
            ).open()
        if not self.db_path:
            raise ValueError("the collector needs a trail: --db PATH or --pg DSN")
        from ..store.writer import Writer

        return Writer(self.db_path, masker, key, **options).open()

    def listen_address(self) -> tuple[str, int]:
        url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", ""))
        ip = self.ip or url.hostname or "127.0.0.1"
        port = self.port or url.port
        if not port:
            raise ValueError("no port: --port, or run as a Hub-managed service")
        return ip, port


@dataclass
class Context:
    """What the handlers reach through `settings[SETTINGS_KEY]`."""

    collector: Any
    recorder: Any
    users: HubUsers
    max_body_bytes: int
    auditor_groups: list
    reviewer_groups: list = field(default_factory=list)
    break_glass_groups: list = field(default_factory=list)
    ingest_slots: dict = field(default_factory=dict)  # Hub user -> asyncio.Semaphore
    approvals: Any = None  # approvals.HubBroker: the Hub's one approval queue
    # the tokens servers forwarded or asked with: never a person's to decide with
    server_tokens: ServerTokens = field(default_factory=ServerTokens)

    def roles(self, user: dict) -> list[str]:
        """A Hub user's roles at the collector, from their Hub groups: `auditor` (every
        trace, export, verify), `reviewer` (decides others' approval requests),
        `break-glass` (decides others' alone, with a reason)."""
        groups = set(user.get("groups") or ())
        roles = ["user"]
        if groups & set(self.auditor_groups):
            roles.append("auditor")
        if groups & set(self.reviewer_groups):
            roles.append("reviewer")
        if groups & set(self.break_glass_groups):
            roles.append("break-glass")
        return roles


def all_routes(prefix: str) -> list:
    """Every route of the collector under the service prefix (forwarding, reading)."""
    return (
        handlers(prefix)
        + read_handlers(prefix)
        + approval_handlers(prefix)
        + browser_handlers(prefix)
    )


def hub_users(app: CollectorApp) -> HubUsers:
    from jupyterhub.services.auth import HubAuth

    name = os.environ.get("JUPYTERHUB_SERVICE_NAME") or app.service_name
    hub_auth = HubAuth(cache_max_age=app.hub_cache_seconds)  # token, URL from the environment
    if not hub_auth.api_token:
        raise ValueError("JUPYTERHUB_API_TOKEN is not set: run the collector as a Hub service")
    return HubUsers(hub_auth, {f"access:services!service={name}"})


def http_server(app: CollectorApp, webapp: web.Application) -> httpserver.HTTPServer:
    """The collector's HTTP server: bounded bodies, and no connection held open by a
    client that sends slowly or not at all (slowloris)."""
    return httpserver.HTTPServer(
        webapp,
        max_body_size=app.max_body_bytes + (1 << 20),
        idle_connection_timeout=app.connection_timeout,
        body_timeout=app.connection_timeout,
    )


def start_archiving(app: CollectorApp, store):
    """The collector's archiving schedule, started (None without `archive_path`). On
    PostgreSQL without `pg_maintenance_dsn` it archives and removes nothing."""
    if not app.archive_path:
        return None
    from ..server.archiving import ArchiveSchedule

    removes = not app.pg_dsn or bool(app.pg_maintenance_dsn)
    if not removes:
        log.warning(
            "jupyter-audit collector: archiving to %s; archived records stay in PostgreSQL "
            "(no c.CollectorApp.pg_maintenance_dsn)",
            app.archive_path,
        )
    schedule = ArchiveSchedule(store, app, log, removes=removes)
    schedule.start()
    return schedule


def run(app: CollectorApp) -> None:
    """Serve until SIGTERM or SIGINT."""
    from ..server.recorder import Recorder  # the rate-limited `security.rejected`
    from .service import Collector

    logging.basicConfig(level=logging.INFO, format=FORMAT)
    users = hub_users(app)
    ip, port = app.listen_address()
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    store = app.open_store()
    previous = record_key_in_use(store, store.masker.key_id)
    if previous is not False:
        log.info("jupyter-audit collector: masking key %s (was %s)", store.masker.key_id, previous)
    recorder = Recorder(store, log=log)
    collector = Collector(store, recorder, silent_after=app.silent_after, log=log)
    context = Context(
        collector,
        recorder,
        users,
        app.max_body_bytes,
        list(app.auditor_groups),
        list(app.reviewer_groups),
        list(app.break_glass_groups),
    )
    stop_approvals = start_approvals(app, context, log)
    routes = all_routes(prefix)
    settings = {SETTINGS_KEY: context, **browser_settings(app.state_path())}
    webapp = web.Application(routes, **settings)  # type: ignore[arg-type]
    server = http_server(app, webapp)
    server.listen(port, ip)
    loop = IOLoop.current()

    def tick() -> None:
        collector.tick()
        recorder.flush_rejections()

    timer = PeriodicCallback(tick, 1000 * min(5.0, app.silent_after / 4))
    timer.start()
    archiving = start_archiving(app, store)

    def stop(*_):
        loop.add_callback_from_signal(loop.stop)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info(
        "jupyter-audit collector on http://%s:%d%s (trail %s)",
        ip,
        port,
        prefix,
        "PostgreSQL" if app.pg_dsn else app.db_path,
    )
    try:
        loop.start()
    finally:
        timer.stop()
        if archiving is not None:
            archiving.stop()
        stop_approvals()
        server.stop()
        recorder.flush_rejections(force=True)
        store.close()
