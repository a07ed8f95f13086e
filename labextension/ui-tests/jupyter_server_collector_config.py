"""Jupyter server configuration for the UI test of the panel reading a JupyterHub's trail
(test use only; tests/collector.spec.ts starts it on JUPYTER_AUDIT_UI_COLLECTOR_PORT).

rita's single-user server as a Hub starts it (`JUPYTERHUB_USER`, its Hub token, people
named as jupyterhub's identity provider names them: `auth_method` jupyterhub), with
`c.AuditApp.collector_url` pointing at a jupyter-audit collector run in this same process:
its real web app (`collector.app.all_routes`) on a real DuckDB trail, only the Hub's answer
for a token standing in (rita's server token -> rita, in audit-auditors). The collector
holds a trace forwarded by bob's server (its notebook name is hostile markup); rita's own
server forwards its seeded demo trail to it as it runs. The full Hub is
tests/e2e/test_collector_hub.py.
"""

import asyncio
import atexit
import dataclasses
import json
import os
import shutil
import socket
import sys
import tempfile
import threading

from jupyter_server.auth.identity import IdentityProvider, User
from tornado import httpserver, web

from jupyter_audit.cli.demo import _cell as demo_cell
from jupyter_audit.collector.app import Context, all_routes
from jupyter_audit.collector.handlers import SETTINGS_KEY
from jupyter_audit.collector.hubauth import Refused
from jupyter_audit.collector.protocol import parse_batch
from jupyter_audit.collector.service import Collector
from jupyter_audit.masking import MaskingEngine, load_or_create_key
from jupyter_audit.server.forwarding import Forwarder
from jupyter_audit.server.recorder import Recorder
from jupyter_audit.store.signing import SigningKey
from jupyter_audit.store.writer import Writer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

SERVER_TOKEN = "ui-test-rita-server-token"
RITA = {
    "kind": "user",
    "name": "rita",
    "groups": ["audit-auditors", "audit-reviewers"],
    "scopes": ["access:servers!server=rita/"],
}
BOBS_NOTEBOOK = "<img src=x onerror=alert(1)> bob-forecast.ipynb"

# The same server as the other tests (Galata settings, seeded trail), on its own port.
os.environ["JUPYTER_AUDIT_UI_SEED_LONG"] = "0"
os.environ["JUPYTER_AUDIT_UI_PORT"] = os.environ.get("JUPYTER_AUDIT_UI_COLLECTOR_PORT", "8918")
load_subconfig(os.path.join(HERE, "jupyter_server_test_config.py"))  # noqa: F821
c = get_config()  # noqa: F821


@dataclasses.dataclass
class HubUser(User):
    groups: list[str] = dataclasses.field(default_factory=list)


class HubUITestIdentityProvider(IdentityProvider):
    """rita, as the Hub names its users in their servers (test use only)."""

    def get_user(self, handler):
        user = HubUser(username="rita", name="rita", display_name="Rita Reviewer")
        user.audit_identity = {
            "username": "rita",
            "display_name": "Rita Reviewer",
            "groups": list(RITA["groups"]),
            "auth_method": "jupyterhub",
        }
        return user


class HubStandIn:
    """The Hub's answer for a token (`hubauth.HubUsers.user`): rita's server token only."""

    async def user(self, token):
        if token is None:
            raise Refused(401, "a Hub token is required (Authorization: token …)")
        if token != SERVER_TOKEN:
            raise Refused(403, "the Hub does not know this token")
        return RITA


def _store(directory: str) -> Writer:
    os.makedirs(directory, exist_ok=True)
    masker = MaskingEngine(load_or_create_key(os.path.join(directory, "masking.key")))
    key = SigningKey.load_or_create(os.path.join(directory, "signing-key.pem"))
    return Writer(os.path.join(directory, "trail.duckdb"), masker, key).open()


def _bobs_trace(directory: str) -> Writer:
    """bob's server's trail: one kernel's cell and its query (the demo's shapes)."""
    bob = {"username": "bob", "auth_method": "jupyterhub", "groups": []}
    trace = kernel = "bob-kernel-1"
    query = {
        "driver": "sqlite3",
        "database": "sales.db",
        "statement": "SELECT * FROM sales",
        "params": None,
        "statement_type": "SELECT",
        "tables": ["sales"],
        "rowcount": 12,
        "duration_us": 800,
        "error": None,
    }
    local = _store(directory)
    local.append_many(
        [
            {
                "kind": "session.started",
                "trace_id": trace,
                "kernel_id": kernel,
                "notebook": BOBS_NOTEBOOK,
                "identity": bob,
                "payload": {"reason": "start", "kernel_name": "python3"},
            },
            *demo_cell(
                trace,
                kernel,
                BOBS_NOTEBOOK,
                bob,
                "df = pd.read_sql('SELECT * FROM sales', con)",
                1,
                [("op.sql", query)],
            ),
        ]
    )
    local.flush()
    return local


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(ctx: Context, port: int) -> None:
    """The collector's web app on `port`, on an event loop of its own in a daemon thread."""
    started = threading.Event()

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        app = web.Application(all_routes("/"), **{SETTINGS_KEY: ctx})
        httpserver.HTTPServer(app).listen(port, "127.0.0.1")
        started.set()
        loop.run_forever()

    threading.Thread(target=run, daemon=True, name="ui-test-collector").start()
    started.wait(30)


_dir = tempfile.mkdtemp(prefix="jupyter-audit-ui-collector-")
atexit.register(shutil.rmtree, _dir, ignore_errors=True)
_collector_store = _store(os.path.join(_dir, "collector"))
_collector = Collector(_collector_store, Recorder(_collector_store))
_bob = _bobs_trace(os.path.join(_dir, "bob"))
_batch = {
    "server": "bob/",
    "trail": _bob.trail_id,
    "records": Forwarder(_bob, "http://unused/", None).read_after(1),
}
_collector.ingest("bob/", "bob", parse_batch(json.dumps(_batch).encode()))
_bob.close()
_port = _free_port()
_serve(
    Context(
        _collector,
        _collector.recorder,
        HubStandIn(),
        1 << 24,
        ["audit-auditors"],
        ["audit-reviewers"],
    ),
    _port,
)
atexit.register(_collector_store.close)

# rita's server under the Hub: its owner, its Hub token, the collector
os.environ["JUPYTERHUB_USER"] = "rita"
os.environ["JUPYTERHUB_API_TOKEN"] = SERVER_TOKEN
c.ServerApp.identity_provider_class = HubUITestIdentityProvider
c.AuditApp.collector_url = f"http://127.0.0.1:{_port}/"
c.AuditApp.collector_heartbeat = 1.0

# The panel this checkout builds (`jlpm build` writes jupyter_audit/labextension), ahead
# of an installed copy, so the test sees the code under test.
_built = os.path.normpath(os.path.join(HERE, "..", "..", "jupyter_audit", "labextension"))
if os.path.isfile(os.path.join(_built, "package.json")):
    _ext = os.path.join(_dir, "labextensions")
    os.makedirs(_ext)
    os.symlink(_built, os.path.join(_ext, "jupyter-audit"))
    _galata = c.LabServerApp.extra_labextensions_path  # configure_jupyter_server's
    c.LabServerApp.extra_labextensions_path = [_ext, *([_galata] if _galata else [])]
