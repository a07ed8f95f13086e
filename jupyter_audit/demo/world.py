"""The live demo world, start to stop: the demo provider and API stub, the sample data and
notebooks, and JupyterLab with jupyter-audit signing people in at the provider. Everything
on loopback, in one directory:

    DIR/config/jupyter_server_config.py   the server's configuration (JUPYTER_CONFIG_DIR)
    DIR/runtime/                          the server's and kernels' runtime files (spools)
    DIR/notebooks/                        the server's root: notebooks, shop.db, report.sh
    DIR/audit/trail.duckdb                the trail (and its keys and checkpoints beside it)
    DIR/server.log                        the server's own log

`run_demo` is `jupyter audit demo` without `--db`; the stories are in story.py; tests drive
`DemoWorld` directly.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .data import create_shop
from .notebook import REASONING_CHAIN, write_notebooks
from .people import (
    ADMIN_GROUP,
    AUDITOR_GROUP,
    CLIENT_ID,
    CLIENT_SECRET,
    DATA_SCIENTIST,
    REVIEWER_GROUP,
    USERS,
    DemoProvider,
)
from .processes import free_port, port_is_free, stop_process, wait_until_answering
from .story import CONTRACTOR, StoryError, analysis_story, contractor_story
from .stub import ApiStub


class DemoError(Exception):
    """The demo cannot start or a story failed: one line for the console."""


def default_directory() -> Path:
    """A fresh directory for this demo under the user's Jupyter data directory."""
    from jupyter_core.paths import jupyter_data_dir

    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return Path(jupyter_data_dir()) / "audit-demo" / f"{stamp}-{secrets.token_hex(2)}"


def server_config(world: DemoWorld) -> str:
    """The demo server's jupyter_server_config.py (values written with repr: a directory
    name cannot inject code)."""
    settings = {
        "ServerApp.ip": "127.0.0.1",
        "ServerApp.port": world.port,
        "ServerApp.port_retries": 0,
        "ServerApp.open_browser": False,
        "ServerApp.allow_root": world.allow_root,
        "ServerApp.root_dir": str(world.notebooks),
        "ServerApp.jpserver_extensions": {"jupyter_audit": True},
        "ServerApp.identity_provider_class": "jupyter_audit.identity.OIDCIdentityProvider",
        "OIDCIdentityProvider.issuer": world.provider.issuer,
        "OIDCIdentityProvider.client_id": CLIENT_ID,
        "OIDCIdentityProvider.client_secret": CLIENT_SECRET,
        "OIDCIdentityProvider.username_claim": "preferred_username",
        "OIDCIdentityProvider.groups_claim": "groups",
        "AuditApp.db_path": str(world.db),
        "AuditApp.reviewer_groups": [REVIEWER_GROUP],
        "AuditApp.auditor_groups": [AUDITOR_GROUP],
        "AuditApp.admin_groups": [ADMIN_GROUP],
        "LabApp.news_url": None,
        "LabApp.check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
        "LabApp.workspaces_dir": str(world.dir / "workspaces"),
    }
    if world.sign_in_page:  # Binder: reached through jupyter-server-proxy (binder/start)
        settings["ServerApp.identity_provider_class"] = (
            "jupyter_audit.demo.signin.DemoSignInIdentityProvider"
        )
        settings["ServerApp.base_url"] = world.base_url
        # the proxy forwards the visitor's Host header; the server still listens on loopback
        settings["ServerApp.allow_remote_access"] = True
        # its own cookie name: Binder's server, on the same host, has a login cookie too
        settings["DemoSignInIdentityProvider.cookie_name"] = "jupyter-audit-demo-session"
    lines = [
        "# jupyter-audit live demo (jupyter audit demo): a local OIDC provider with demo users.",
        "# Demo only: anyone can sign in as anyone at that provider.",
        "c = get_config()  # noqa: F821",
    ]
    lines += [f"c.{name} = {value!r}" for name, value in settings.items()]
    return "\n".join(lines) + "\n"


class DemoWorld:
    """The demo's processes and files in `directory`; `start()`, then `stop()` (always).
    `sign_in_page` and `base_url`: the demo sign-in page instead of the provider's, under a
    proxy's prefix (Binder; demo/signin.py)."""

    def __init__(
        self,
        directory: Path,
        port: int = 0,
        allow_root: bool = False,
        *,
        sign_in_page: bool = False,
        base_url: str = "/",
    ):
        self.dir = Path(directory)
        self.notebooks = self.dir / "notebooks"
        self.db = self.dir / "audit" / "trail.duckdb"
        self.config_dir = self.dir / "config"
        self.log_path = self.dir / "server.log"
        self.port = port or free_port()
        self.allow_root = allow_root
        self.base_url = "/" + base_url.strip("/") + "/" if base_url.strip("/") else "/"
        self.sign_in_page = sign_in_page
        self.url = f"http://127.0.0.1:{self.port}{self.base_url.rstrip('/')}"
        self.provider = DemoProvider()
        self.stub: ApiStub | None = None
        self.stub_url = ""
        self.server: subprocess.Popen | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> DemoWorld:
        if self.dir.exists() and any(self.dir.iterdir()):
            raise DemoError(f"{self.dir} is not empty: give a new or empty --dir")
        if not port_is_free(self.port):
            raise DemoError(f"port {self.port} is in use: give another --port")
        for d in (self.notebooks, self.db.parent, self.config_dir):
            d.mkdir(parents=True, exist_ok=True)
        try:
            self.provider.start()
        except RuntimeError as e:
            raise DemoError(f"the demo identity provider did not start ({e})") from e
        self.stub = ApiStub().start()
        self.stub_url = self.stub.url
        create_shop(self.notebooks / "shop.db")
        # `localhost`, not 127.0.0.1, in the notebooks: the trail masks IP addresses
        write_notebooks(self.notebooks, self.stub_url.replace("127.0.0.1", "localhost"))
        (self.config_dir / "jupyter_server_config.py").write_text(server_config(self))
        self._start_server()
        return self

    def _start_server(self) -> None:
        # its own config and runtime directories: the user's other Jupyter configuration and
        # the spools of their other servers stay out of the demo
        env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(self.config_dir),
            "JUPYTER_RUNTIME_DIR": str(self.dir / "runtime"),
        }
        env.pop("JUPYTER_TOKEN", None)
        # on Binder the container's environment is a JupyterHub server's: the demo's own
        # server is not one (nor may its kernels read the Hub's API token)
        for name in [n for n in env if n.startswith("JUPYTERHUB_")]:
            del env[name]
        with open(self.log_path, "ab") as log:
            self.server = subprocess.Popen(
                [sys.executable, "-m", "jupyterlab"],
                env=env,
                cwd=self.notebooks,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the demo, which stops the server
            )
        try:
            wait_until_answering(
                f"{self.url}/jupyter-audit/api/me", self.server, what="jupyter lab"
            )
        except RuntimeError as e:
            raise DemoError(f"the Jupyter server did not start ({e}); see {self.log_path}") from e

    def running(self) -> bool:
        return self.server is not None and self.server.poll() is None

    def wait(self) -> None:
        """Until the server exits (Ctrl-C interrupts the wait)."""
        if self.server is not None:
            self.server.wait()

    def stop(self) -> None:
        """Stop the server (it ends its kernels and signs a last checkpoint), the stub and the
        provider; safe to call more than once and after a failed start."""
        stop_process(self.server)
        if self.stub is not None:
            self.stub.stop()
            self.stub = None
        self.provider.stop()

    def verify(self) -> dict:
        from ..store.verify import verify_path

        return verify_path(self.db).to_dict()

    # ------------------------------------------------------------------ people
    def bearer(self, user) -> str:
        return "Bearer " + self.provider.id_token(user)

    def rest(self, path: str, auth: str, method: str = "GET", body: dict | None = None) -> dict:
        """The jupyter-audit REST API as whoever `auth` is (HTTPError when refused)."""
        headers = {"Authorization": auth}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(
            f"{self.url}/jupyter-audit/api/{path}", data=data, headers=headers, method=method
        )
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.load(r)

    def instructions(self, contractor: dict) -> str:
        who = "\n".join(f"    {u.sub:<5} {u.role:<15} {_WHAT_THEY_DO[u.role]}" for u in USERS)
        return f"""
jupyter-audit demo: running, everything local and offline, in {self.dir}

  Open   {self.url}/lab/tree/{REASONING_CHAIN}
  Sign in at the demo identity provider by clicking a user (no password: a demo only):
{who}
  Two people at once: use a second browser profile or a private window for the reviewer.
  (The demo identity provider is {self.provider.issuer}; the API stub {self.stub_url}.)

  Already in the trail: {CONTRACTOR}'s job, run with a service token owned by
  {DATA_SCIENTIST.email} (token {contractor["token_id"]}, now revoked; trace
  {contractor["trace_id"]}).

  The trail: {self.db}
  Walk-through: docs/getting-started.md in the jupyter-audit repository.
  Press Ctrl-C to stop; the trail then verifies with
    jupyter audit verify --db {self.db}
"""


_WHAT_THEY_DO = {
    "data scientist": f"runs {REASONING_CHAIN}; its DELETE waits for approval",
    "reviewer": "approves or denies it in the audit trail panel",
    "auditor": "sees every trace; verify and export",
    "admin": "service-account tokens (and every role)",
}


def _say(text: str) -> None:
    print(text, flush=True)


def run_demo(
    directory: str | None,
    port: int | None,
    allow_root: bool,
    headless: bool = False,
    binder_base_url: str | None = None,
) -> int:
    """`jupyter audit demo` without --db: start the world, play the contractor's story, and
    wait for Ctrl-C (or SIGTERM); with `headless`, play the analysis too and stop. Then stop
    everything and verify the trail: 0 when it verifies, 1 when it does not.
    `binder_base_url`: serve under that prefix with the demo sign-in page (binder/start)."""
    if hasattr(os, "geteuid") and os.geteuid() == 0 and not allow_root:
        raise DemoError("Jupyter will not run as root without --allow-root")
    if port is None:
        port = 8888 if port_is_free(8888) else free_port()
    where = Path(directory) if directory else default_directory()
    world = DemoWorld(
        where,
        port,
        allow_root,
        sign_in_page=binder_base_url is not None,
        base_url=binder_base_url or "/",
    )

    def terminate(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    _say(f"starting the jupyter-audit demo in {world.dir} …")
    try:
        world.start()
        _say("running the contractor's job with its service token …")
        contractor = contractor_story(world)
        if headless:
            _say("running the notebook as dana; rui approves its DELETE …")
            analysis = analysis_story(world)
            _say(f"the notebook ran (trace {analysis['trace_id']}); stopping")
        else:
            _say(world.instructions(contractor))
            world.wait()
            _say(f"the Jupyter server stopped on its own; see {world.log_path}")
    except KeyboardInterrupt:
        _say("\nstopping the demo …")
    except StoryError as e:
        raise DemoError(str(e)) from None
    except urllib.error.HTTPError as e:  # the server refused a story's step
        raise DemoError(f"the demo server answered {e.code} to {e.url}: {e.reason}") from None
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the stop
        try:
            world.stop()
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, previous)
    if not world.db.exists():
        _say("no trail was written")
        return 1
    result = world.verify()
    if result["ok"]:
        _say(
            f"stopped. The trail verifies: {result['events']} events, intact up to "
            f"#{result['last_seq']} ({world.db})"
        )
        return 0
    _say(f"stopped. The trail does NOT verify: {result['problem']}: {result['detail']}")
    return 1
