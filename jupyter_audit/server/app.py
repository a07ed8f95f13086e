"""AuditApp: the jupyter_server extension that owns the trail, its configuration and services.

Builds its services once at start from `*_class` traits (the trail store, the Recorder
everything records through, the service-token store), hands them to the REST handlers, the
gateway and the hooks through settings, installs the hooks into jupyter_server, and closes
the trail (with a final signed checkpoint) at stop.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.extension.application import ExtensionApp
from jupyter_server.serverapp import ServerApp
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from jupyter_server.services.kernels.kernelmanager import ServerKernelManager
from jupyter_server.utils import url_path_join
from tornado.ioloop import IOLoop, PeriodicCallback
from traitlets import (
    Bool,
    CaselessStrEnum,
    Dict,
    Float,
    Int,
    List,
    Type,
    Unicode,
    default,
)

from .._version import __version__
from ..approvals import ApprovalBroker, Notifier, Webhook, WebhookConfigError
from ..identity import tokens
from ..identity.resolve import is_builtin_login
from ..identity.tokens import TokenStore
from ..masking import DEFAULT_SENSITIVE_COLUMNS, DEFAULT_SENSITIVE_KEYS, load_or_create_key
from ..masking.config import TRAITS as MASKING_TRAITS
from ..masking.config import configured_engine, recognizer_names
from ..masking.keys import record_key_in_use
from ..policy import Policy
from ..store.checkpoints import default_checkpoint_path
from ..store.errors import loggable_error
from ..store.signing import SigningKey
from ..store.writer import Writer
from . import logfilter, sockets
from .approvals import API_PATHS as APPROVAL_PATHS
from .approvals import SETTINGS_KEY as APPROVALS_KEY
from .archiving import ArchiveSettings
from .authorization import AuditAuthorizer
from .collector_approvals import CollectorApprovals
from .collector_client import COLLECTOR_CLIENT_KEY, CollectorClient, server_claim
from .forwarding import Forwarder
from .gateway import AuditKernelWebsocketConnection
from .handlers import API, HANDLERS
from .hooks import contents, lifecycle, sessions, signin, terminals, workspaces
from .hooks.kernels import SETTINGS_KEY, KernelInjection, prepare_inject_dir
from .ingest.spools import ingest_spools
from .recorder import Recorder


class AuditApp(ArchiveSettings, ExtensionApp):
    name = "jupyter_audit"
    description = "A verifiable audit trail for notebook work"
    version = __version__
    load_other_extensions = True

    db_path = Unicode(
        config=True,
        help="Path of the DuckDB trail file (created on first start).",
    )

    @default("db_path")
    def _db_path_default(self):
        return os.path.join(jupyter_data_dir(), "audit", "trail.duckdb")

    signing_key_path = Unicode(
        "",
        config=True,
        help="Ed25519 private key (PEM, mode 0600) that signs checkpoints; created on first "
        "start. Default: signing-key.pem beside the trail. Its public key is written to "
        "<path>.pub for auditors (`jupyter audit verify --pubkey`).",
    )
    kernel_key_path = Unicode(
        "",
        config=True,
        help="Key (32 random bytes, mode 0600) from which each kernel's secret is derived, so "
        "that a later server can check the lines a kernel spooled while no server could take "
        "its events. Default: kernel.key beside the trail.",
    )
    masking_key_path = Unicode(
        "",
        config=True,
        help="Key of the masking pseudonyms (32 random bytes, mode 0600; never leaves the "
        "server). Default: masking.key beside the trail.",
    )
    sensitive_columns = List(
        Unicode(),
        list(DEFAULT_SENSITIVE_COLUMNS),
        config=True,
        help="Column names whose values are masked wherever SQL compares, inserts or assigns "
        "them and wherever an output table shows them. A name matches a column whose words "
        "it starts or ends (email: customer_email, email_address), except columns that "
        "describe the value (account_id, email_verified) or name a thing (table_name). "
        "Setting it replaces the defaults; extra_sensitive_columns adds to them.",
    )
    extra_sensitive_columns = List(
        Unicode(), [], config=True, help="Column names added to sensitive_columns."
    )
    sensitive_keys = List(
        Unicode(),
        list(DEFAULT_SENSITIVE_KEYS),
        config=True,
        help="Key names whose values are masked in HTTP query strings and JSON or form "
        "bodies (default: the default sensitive columns and password, token, api_key, secret, "
        "authorization...; any name the secret-name rule calls secret is always masked). "
        "Setting it replaces the defaults; extra_sensitive_keys adds to them.",
    )
    extra_sensitive_keys = List(
        Unicode(), [], config=True, help="Key names added to sensitive_keys."
    )
    checkpoint_path = Unicode(
        "",
        config=True,
        help="Append-only file of signed checkpoints. Default: <db_path>.checkpoints.",
    )
    checkpoint_mirror_path = Unicode(
        "",
        config=True,
        help="A second location (another disk or a mounted share) that receives every signed "
        "checkpoint too.",
    )
    checkpoint_every = Int(10_000, config=True, help="Sign a checkpoint every N events.")
    checkpoint_interval = Float(
        60.0, config=True, help="Sign a checkpoint at least every T seconds while events arrive."
    )
    max_field_bytes = Int(
        1 << 20,
        config=True,
        help="Strings longer than this many bytes are capped; the trail keeps their original "
        "size and sha256.",
    )
    prepare_workers = Int(
        None,
        allow_none=True,
        config=True,
        help="Worker processes that validate and mask big batches (kernel ingest, spool "
        "backlogs) beside the writer thread; default one per core, at most 4; 0 "
        "prepares everything in the server process.",
    )
    gil_switch_interval = Float(
        0.001,
        min=0.0,
        config=True,
        help="The server process's GIL switch interval in seconds (sys.setswitchinterval; "
        "Python's default is 0.005). The trail writer and the ingest threads share the GIL "
        "with the event loop that forwards every kernel message: while they commit or "
        "prepare a batch, the loop waits up to this long each time it needs the GIL. 0 "
        "leaves the interpreter's setting alone.",
    )
    spool_interval = Float(
        30.0,
        config=True,
        help="Seconds between looks for spool files left by kernels of earlier servers.",
    )
    capture_body_hosts = List(
        Unicode(),
        [],
        config=True,
        help="Hosts (exact, or *.suffix) whose HTTP request and response bodies kernels "
        "capture, size-capped (e.g. LLM API hosts). Bodies are masked like every field.",
    )
    capture_body_bytes = Int(10_000, config=True, help="Cap for each captured HTTP body.")
    masking_disabled_recognizers = List(
        Unicode(),
        [],
        config=True,
        help="Masking recognizers to leave out, by name (an unknown name stops the server): "
        + ", ".join(recognizer_names())
        + ".",
    )
    masking_extra_recognizers = List(
        Dict(),
        [],
        config=True,
        help='Regex recognizers to add: {"name": "employee-id", "type": "EMPLOYEE_ID", '
        '"pattern": "EMP-[0-9]{6}", "validator": "pkg.module:check" (optional, a callable '
        'taking the match, returning a bool), "group": 0, "needles": ["EMP-"] (optional)}.',
    )
    masking_allow_values = List(
        Unicode(), [], config=True, help="Values never masked (e.g. a support address)."
    )
    masking_allow_patterns = List(
        Unicode(),
        [],
        config=True,
        help="Regexes: a value they match whole is never masked (e.g. documentation IPs).",
    )
    masking_presidio = Bool(
        False,
        config=True,
        help="Add Microsoft Presidio's recognizers (pip install 'jupyter-audit[presidio]'); "
        "its NER only with masking_presidio_spacy_model.",
    )
    masking_presidio_spacy_model = Unicode(
        "", config=True, help="An installed spaCy model for Presidio's NER (e.g. en_core_web_lg)."
    )
    masking_presidio_entities = List(
        Unicode(),
        [],
        config=True,
        help="Presidio entity types to use (default: all but DATE_TIME and URL).",
    )
    output_text_bytes = Int(
        2_000, config=True, help="Text kept from each cell output in its summary."
    )
    unreported_after = Float(
        15.0,
        config=True,
        help="Seconds after a kernel answers a cell within which its kernel side must report "
        "it; past that the cell is recorded as cell.unreported (a capture gap).",
    )
    verify_on_start = Bool(
        True, config=True, help="Verify the whole trail when the server opens it."
    )
    reviewer_groups = List(
        Unicode(), ["audit-reviewers"], config=True, help="Groups whose members review approvals."
    )
    auditor_groups = List(
        Unicode(), ["audit-auditors"], config=True, help="Groups whose members see all traces."
    )
    admin_groups = List(
        Unicode(), ["audit-admins"], config=True, help="Groups whose members manage tokens."
    )
    break_glass_groups = List(
        Unicode(),
        [],
        config=True,
        help="Groups whose members may approve a request alone, in an emergency: the reason is "
        "mandatory and the decision is flagged break_glass in the trail. Never the requester.",
    )
    approval_expiry = Float(
        1800.0,
        min=1.0,
        config=True,
        help="Seconds a risky operation waits for its approvals before it expires.",
    )
    approval_webhooks = List(
        Dict(),
        [],
        config=True,
        help='Webhooks told of approval.requested and approval.decided: [{"url": "https://...", '
        '"format": "json" | "slack", "secret_file": "/path"}]. json posts the approval signed '
        "with HMAC-SHA256 (header X-Jupyter-Audit-Signature: sha256=<hex>; secret_file "
        'required); slack posts an incoming-webhook {"text": ...}. See docs/approvals.md.',
    )
    policy_class = Type(
        Policy,
        config=True,
        help="The risk policy the approval broker asks about each operation a kernel submits.",
    )
    approval_broker_class = Type(
        ApprovalBroker,
        config=True,
        help="The approval broker: requests, decisions, executions (state kept in the trail).",
    )
    trail_store_class = Type(
        Writer,
        config=True,
        help="The trail store: appends, hash-chains, signs checkpoints and answers queries "
        "(the embedded DuckDB Writer).",
    )
    recorder_class = Type(
        Recorder,
        config=True,
        help="The service the gateway, the REST handlers and the hooks record through.",
    )
    token_store_class = Type(
        TokenStore, config=True, help="Service-account tokens, kept in the trail."
    )
    # retention and archive (docs/archive.md; server/archiving.py)
    fail_mode = CaselessStrEnum(
        ["open", "closed"],
        "open",
        config=True,
        help="open: cells run when the trail cannot accept events (the gap is flagged); "
        "closed: cells are refused while the trail is unavailable.",
    )

    # forwarding to the collector of a JupyterHub (server/forwarding.py, docs/collector.md)
    collector_url = Unicode(
        config=True,
        help="URL of the jupyter-audit collector this server forwards its trail to (e.g. "
        "http://collector-host:PORT/services/jupyter-audit/); empty: no forwarding. Default: "
        "the environment variable JUPYTER_AUDIT_COLLECTOR_URL (a spawner can set it). The "
        "server authenticates with its Hub token (JUPYTERHUB_API_TOKEN). With it set, the "
        "owner's panel and `--url` reads (me, traces, traces/{id}, export) answer from the "
        "collector: the Hub's trail as the collector's roles allow; verify stays local.",
    )

    @default("collector_url")
    def _collector_url_default(self):
        return os.environ.get("JUPYTER_AUDIT_COLLECTOR_URL", "")

    collector_max_backlog = Int(
        100_000,
        min=0,
        config=True,
        help="Local events the collector may leave unacknowledged: past that, fail_mode=closed "
        "refuses cells until it catches up; fail_mode=open logs a warning.",
    )
    collector_heartbeat = Float(
        30.0,
        min=0.5,
        config=True,
        help="Seconds between heartbeats to the collector while there is nothing to forward "
        "(keep it well under the collector's silent_after).",
    )

    def _beside(self, value: str, name: str) -> Path:
        return Path(value) if value else Path(self.db_path).parent / name

    @property
    def server(self) -> ServerApp:
        """The ServerApp this extension runs in (set before initialize_settings)."""
        if self.serverapp is None:
            raise RuntimeError("jupyter-audit runs as a jupyter_server extension")
        return self.serverapp

    def initialize_settings(self):
        logfilter.install(self.log, self.server.log)
        if self.gil_switch_interval > 0:
            self._switch_interval_before = sys.getswitchinterval()
            sys.setswitchinterval(self.gil_switch_interval)
        db = Path(self.db_path)
        masker = configured_engine(
            load_or_create_key(self._beside(self.masking_key_path, "masking.key")),
            **{kw: getattr(self, trait) for trait, kw in MASKING_TRAITS.items()},
            sensitive_columns=[*self.sensitive_columns, *self.extra_sensitive_columns],
            sensitive_keys=[*self.sensitive_keys, *self.extra_sensitive_keys],
        )
        key = SigningKey.load_or_create(self._beside(self.signing_key_path, "signing-key.pem"))
        store = self.trail_store_class(
            db,
            masker,
            key,
            checkpoint_every=self.checkpoint_every,
            checkpoint_interval=self.checkpoint_interval,
            checkpoint_path=self.checkpoint_path or default_checkpoint_path(db),
            checkpoint_mirror=self.checkpoint_mirror_path or None,
            max_field_bytes=self.max_field_bytes,
            verify_on_open=self.verify_on_start,
            prepare_workers=self.prepare_workers,
        ).open()
        self.log.info("jupyter-audit: trail %s (signing key %s)", db, key.key_id)
        self._record_masking_key(store, masker.key_id)
        self.recorder = self.recorder_class(
            store,
            fail_mode=self.fail_mode,
            kernel_key=load_or_create_key(self._beside(self.kernel_key_path, "kernel.key")),
            log=self.log,
        )
        self.recorder.earlier_kernels()  # read now, before this server starts any kernel
        self.token_store = self.token_store_class(store)
        tokens.install(self.server.identity_provider, self.token_store)
        # every audit endpoint and the kernel API go through the audit rules first
        self.authorizer = AuditAuthorizer(
            parent=self.server,
            identity_provider=self.server.identity_provider,
            base=self.server.authorizer,
            tokens=self.token_store,
            reviewer_groups=self.reviewer_groups,
            auditor_groups=self.auditor_groups,
            admin_groups=self.admin_groups,
        )
        self.settings.update(
            {
                "jupyter_audit": self.recorder,
                "jupyter_audit_tokens": self.token_store,
                "authorizer": self.authorizer,
            }
        )
        # the Hub's collector, when there is one: the forwarder's destination, and what
        # people's reads and approvals go through (docs/collector.md)
        self.collector_client = (
            CollectorClient.from_environment(self.collector_url) if self.collector_url else None
        )
        self.settings[COLLECTOR_CLIENT_KEY] = self.collector_client
        self.approvals = self._build_approvals()
        if self.collector_client is not None:  # the Hub's one queue (collector/approvals.py)
            self.approvals = CollectorApprovals(self.approvals, self.collector_client, self.log)
        self.settings[APPROVALS_KEY] = self.approvals
        self.forwarder = None
        if self.collector_url:
            self.forwarder = Forwarder(
                store,
                self.collector_url,
                os.environ.get("JUPYTERHUB_API_TOKEN"),
                server=server_claim(),
                max_backlog=self.collector_max_backlog,
                fail_mode=self.fail_mode,
                heartbeat=self.collector_heartbeat,
                log=self.log,
            ).start()
            self.recorder.forwarder = self.forwarder
            self.log.info("jupyter-audit: forwarding the trail to %s", self.collector_url)
        self._install_gateway()
        self._install_kernel_side()
        lifecycle.install_kernel_hooks(
            self.recorder, self.server.kernel_manager, approvals=self.approvals
        )
        contents.install_save_hook(self.recorder, self.server.contents_manager)
        sessions.install(self.recorder, self.server.session_manager, self.server.contents_manager)
        terminals.install()
        sockets.install_event_stream()  # jupyter_server's event stream ends with its sign-in
        workspaces.install()  # per signed-in user under OIDCIdentityProvider
        signin.install()  # jupyter_server's 403s say the sign-in session has ended
        self._tick_timer = PeriodicCallback(self._tick, 1000 * min(5, self.unreported_after))
        self._tick_timer.start()
        self.archiving = None
        if self.archive_path:  # retention and archive (server/archiving.py)
            from .archiving import ArchiveSchedule

            self.archiving = ArchiveSchedule(store, self, self.log)
            self.archiving.start()

    def review_possible(self) -> bool:
        """Can someone other than the requester decide? Only where the identity provider
        supplies groups (OIDC, JupyterHub, a custom provider) and reviewer groups are named:
        under the standard token/password login one person holds every role."""
        return bool(self.reviewer_groups) and not is_builtin_login(self.server.identity_provider)

    def _build_approvals(self):
        policy = self.policy_class(parent=self)
        policy.review_possible = self.review_possible()
        if policy.has_trait("reviewer_groups"):
            policy.reviewer_groups = list(self.reviewer_groups)
        try:
            hooks = [Webhook.from_config(entry) for entry in self.approval_webhooks]
        except WebhookConfigError as e:
            raise ValueError(f"c.AuditApp.approval_webhooks: {e}") from None
        broker = self.approval_broker_class(
            self.recorder,
            policy,
            expiry=self.approval_expiry,
            break_glass_groups=self.break_glass_groups,
            notifier=Notifier(hooks, log=self.log),
            log=self.log,
            tokens=self.token_store,
        )
        broker.rebuild()
        return broker

    def _record_masking_key(self, store, key_id: str) -> None:
        """The pseudonym key in use, recorded when the trail has not last seen it
        (`masking.keys.record_key_in_use`)."""
        previous = record_key_in_use(store, key_id)
        if previous is not False:
            self.log.info("jupyter-audit: masking key %s (was %s)", key_id, previous or "none")

    def _install_kernel_side(self) -> None:
        """Start ipykernel kernels with the kernel side injected (see hooks/kernels.py)."""
        km = self.server.kernel_manager
        default = "jupyter_server.services.kernels.kernelmanager.ServerKernelManager"
        if km.kernel_manager_class not in (default, ServerKernelManager):
            self.log.warning(
                "jupyter-audit: custom kernel manager %s; kernels are not instrumented",
                km.kernel_manager_class,
            )
            return
        runtime = self.server.runtime_dir
        self.settings[SETTINGS_KEY] = KernelInjection(
            recorder=self.recorder,
            inject_dir=prepare_inject_dir(runtime),
            ingest_url=url_path_join(self.server.connection_url, API, "kernel/events"),
            spool_dir=runtime,
            fail_mode=self.fail_mode,
            extra_env={
                # where the kernel side asks before a risky operation (server/approvals.py)
                "JUPYTER_AUDIT_APPROVALS_URL": url_path_join(
                    self.server.connection_url, API, "kernel/approvals"
                ),
                "JUPYTER_AUDIT_BODY_HOSTS": ",".join(self.capture_body_hosts),
                "JUPYTER_AUDIT_BODY_CAP": str(self.capture_body_bytes),
                "JUPYTER_AUDIT_OUTPUT_CAP": str(self.output_text_bytes),
            },
        )
        km.kernel_manager_class = "jupyter_audit.server.hooks.kernels.AuditKernelManager"
        self._ingest_spools()
        self._spool_timer = PeriodicCallback(self._ingest_spools_soon, self.spool_interval * 1000)
        self._spool_timer.start()

    def _tick(self) -> None:
        """Every few seconds: cells answered but never reported become cell.unreported, and
        rejections counted over a finished minute are recorded."""
        self.recorder.flag_unreported(self.unreported_after)
        self.recorder.flush_rejections()
        approvals = getattr(self, "approvals", None)
        if approvals is not None:
            IOLoop.current().run_in_executor(None, self._expire_approvals, approvals)

    def _expire_approvals(self, approvals) -> None:
        try:
            approvals.expire_due()
        except Exception as e:  # noqa: BLE001 - retried at the next tick
            self.log.error("jupyter-audit: approval expiry failed: %s", loggable_error(e))

    def _ingest_spools(self) -> None:
        managed = set(self.server.kernel_manager.list_kernel_ids())
        try:
            ingest_spools(self.recorder, self.server.runtime_dir, managed)
        except Exception as e:  # noqa: BLE001 - retried at the next interval
            self.log.error("jupyter-audit: spool ingestion failed: %s", loggable_error(e))

    def _ingest_spools_soon(self) -> None:
        IOLoop.current().run_in_executor(None, self._ingest_spools)

    def _install_gateway(self) -> None:
        """Route kernel websockets through the gateway (identity stamp, cell.requested)."""
        # self.settings is copied over the web app's settings after initialize_settings
        settings = self.settings
        current = settings.get("kernel_websocket_connection_class")
        if current is not None and not issubclass(current, ZMQChannelsWebsocketConnection):
            self.log.warning(
                "jupyter-audit: kernel websockets use %s; cells through it are not recorded "
                "by the gateway",
                current.__name__,
            )
            return
        settings["kernel_websocket_connection_class"] = AuditKernelWebsocketConnection

    def initialize_handlers(self):
        self.handlers.extend(HANDLERS)
        self.handlers.extend((rf"{API}/{path}", handler) for path, handler in APPROVAL_PATHS)

    async def stop_extension(self):
        # a second SIGTERM while the server stops runs jupyter_server's clean-up again
        if getattr(self, "_stopped", False):
            return
        self._stopped = True
        for name in ("_spool_timer", "_tick_timer", "archiving"):
            timer = getattr(self, name, None)
            if timer is not None:
                timer.stop()
        recorder = getattr(self, "recorder", None)
        approvals = getattr(self, "approvals", None)
        if approvals is not None:
            for kernel_id in self.server.kernel_manager.list_kernel_ids():
                try:
                    approvals.cancel_kernel(kernel_id, "server shutdown")
                except Exception as e:  # noqa: BLE001 - the server stops regardless
                    self.log.error("jupyter-audit: approvals not cancelled: %s", loggable_error(e))
            approvals.close()
        if recorder is not None:
            recorder.flush_cells()
            lifecycle.record_server_shutdown(recorder, self.server.kernel_manager)
            forwarder = getattr(self, "forwarder", None)
            if forwarder is not None:
                try:
                    recorder.writer.flush(timeout=10)
                except Exception as e:  # noqa: BLE001 - the server stops regardless
                    self.log.error("jupyter-audit: trail not flushed: %s", loggable_error(e))
                await IOLoop.current().run_in_executor(None, forwarder.stop)
            recorder.close()
        before = getattr(self, "_switch_interval_before", None)
        if before is not None:
            sys.setswitchinterval(before)
