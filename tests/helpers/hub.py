"""A real JupyterHub for the identity tests: `python -m jupyterhub` on loopback with
configurable-http-proxy (from npm), GenericOAuthenticator pointed at a real OIDC provider
(`MockProvider`), SimpleLocalProcessSpawner starting jupyter-audit single-user servers as the
current user, a `requests.Session` per person that signs in like a browser does, and a
`Kernel` of a single-user server driven over its websocket with that session."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import requests
from jupyter_client.jsonutil import json_default
from jupyter_client.session import Session

from helpers.servers import REPO, free_port

CHP = "configurable-http-proxy"


def find_chp() -> str | None:
    """configurable-http-proxy on PATH, or where scripts/test installs it."""
    found = shutil.which(CHP)
    if found:
        return found
    local = REPO / ".cache" / "chp" / "node_modules" / ".bin" / CHP
    return str(local) if os.access(local, os.X_OK) else None


def descendants(pid: int) -> list[int]:
    """All live descendants of `pid` (from /proc), children before grandchildren."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(0), []):
            out.append(child)
            todo.append(child)
    return out


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class _Form(HTMLParser):
    """The hidden inputs of the Hub's OAuth confirmation form."""

    def __init__(self):
        super().__init__()
        self.fields: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "input" and a.get("type") == "hidden" and a.get("name"):
            self.fields.append((a["name"], a.get("value") or ""))


CONFIG = """\
import jupyter_audit.identity.hub

c = get_config()  # noqa: F821
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.db_url = "sqlite:///{dir}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{dir}/jupyterhub_cookie_secret"
c.JupyterHub.log_level = "DEBUG"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.ConfigurableHTTPProxy.pid_file = "{dir}/proxy.pid"

c.JupyterHub.authenticator_class = "oauthenticator.generic.GenericOAuthenticator"
c.Authenticator.enable_auth_state = True
c.GenericOAuthenticator.allow_all = True
c.GenericOAuthenticator.client_id = "jupyterhub"
c.GenericOAuthenticator.client_secret = "hub-secret"
c.GenericOAuthenticator.oauth_callback_url = "{url}/hub/oauth_callback"
c.GenericOAuthenticator.authorize_url = {authorize!r}
c.GenericOAuthenticator.token_url = {token!r}
c.GenericOAuthenticator.userdata_url = {userinfo!r}
c.GenericOAuthenticator.scope = ["openid", "profile", "email"]
c.GenericOAuthenticator.username_claim = "preferred_username"
c.GenericOAuthenticator.manage_groups = True
c.GenericOAuthenticator.auth_state_groups_key = "oauth_user.groups"

c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
c.SimpleLocalProcessSpawner.home_dir_template = "{dir}/home/{{username}}"
c.Spawner.cmd = [{python!r}, "-m", "jupyterhub.singleuser"]
c.Spawner.args = ["--allow-root"]
c.Spawner.start_timeout = 90
c.Spawner.http_timeout = 90
c.Spawner.auth_state_hook = jupyter_audit.identity.hub.auth_state_hook


def per_user_trail(spawner):
    flag = "--AuditApp.db_path="
    spawner.args = [a for a in spawner.args if not a.startswith(flag)] + [
        f"{{flag}}{dir}/trails/{{spawner.user.name}}.duckdb"
    ]


c.Spawner.pre_spawn_hook = per_user_trail
{extra}
"""


class Hub:
    """One JupyterHub process (it starts the proxy and the single-user servers)."""

    def __init__(self, directory: Path, provider, chp: str, extra_config: str = ""):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "trails").mkdir(exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.provider = provider
        disc = provider.discovery
        config = CONFIG.format(
            port=self.port,
            hub_port=free_port(),
            api_port=free_port(),
            dir=self.dir,
            chp=chp,
            url=self.url,
            authorize=disc["authorization_endpoint"],
            token=disc["token_endpoint"],
            userinfo=disc["userinfo_endpoint"],
            python=sys.executable,
            extra=extra_config,
        )
        self.config_file = self.dir / "jupyterhub_config.py"
        self.config_file.write_text(config)
        self.log_file = self.dir / "jupyterhub.log"
        env = {
            **os.environ,
            "JUPYTERHUB_CRYPT_KEY": secrets.token_hex(32),
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p
            ),
        }
        with open(self.log_file, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jupyterhub", "-f", str(self.config_file)],
                cwd=self.dir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready(timeout=60)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        """Until the Hub answers through the proxy (which answers 404 before the Hub has
        registered its route)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("the Hub exited:\n" + self.log_tail())
            try:
                if requests.get(self.url + "/hub/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the Hub did not start within {timeout}s:\n" + self.log_tail())

    def trail(self, username: str) -> Path:
        return self.dir / "trails" / f"{username}.duckdb"

    def log_tail(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the Hub (it stops its servers and the proxy); kill whatever survives."""
        procs = descendants(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        deadline = time.monotonic() + 10
        while any(alive(p) for p in procs) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in procs:
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass

    # -- a person with a browser ---------------------------------------------------------

    def login(self, sub: str) -> requests.Session:
        """Sign in at the Hub through the provider's authorization-code flow."""
        s = requests.Session()
        r = s.get(self.url + "/hub/oauth_login", allow_redirects=False, timeout=30)
        assert r.status_code == 302, (r.status_code, r.text[:500])
        authorize = r.headers["Location"]
        assert authorize.startswith(self.provider.issuer), authorize
        callback = self.provider.approve(authorize, sub)
        assert callback.startswith(self.url + "/hub/oauth_callback"), callback
        r = s.get(callback, allow_redirects=False, timeout=60)
        assert r.status_code == 302, (r.status_code, r.text[:500], self.log_tail())
        s.get(self.url + "/hub/home", timeout=30).raise_for_status()  # sets the Hub's _xsrf
        return s

    @staticmethod
    def xsrf(s: requests.Session, path: str) -> str:
        for cookie in s.cookies:
            if cookie.name == "_xsrf" and cookie.path.rstrip("/") == path.rstrip("/"):
                return cookie.value
        raise AssertionError(f"no _xsrf cookie for {path}: {[(c.name, c.path) for c in s.cookies]}")

    def hub_api(self, s: requests.Session, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"X-XSRFToken": self.xsrf(s, "/hub/"), **kwargs.pop("headers", {})}
        return s.request(
            method, self.url + "/hub/api/" + path, headers=headers, timeout=60, **kwargs
        )

    def start_server(self, s: requests.Session, name: str, timeout: float = 90) -> None:
        r = self.hub_api(s, "POST", f"users/{name}/server")
        assert r.status_code in (201, 202), (r.status_code, r.text, self.log_tail())
        self.wait_server(s, name, ready=True, timeout=timeout)

    def stop_server(self, s: requests.Session, name: str, timeout: float = 60) -> None:
        r = self.hub_api(s, "DELETE", f"users/{name}/server")
        assert r.status_code in (202, 204), (r.status_code, r.text)
        self.wait_server(s, name, ready=False, timeout=timeout)

    def wait_server(self, s, name: str, ready: bool, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("the Hub exited:\n" + self.log_tail())
            model = self.hub_api(s, "GET", f"users/{name}").json()
            server = (model.get("servers") or {}).get("")
            if ready and server and server.get("ready"):
                return
            if not ready and not server:
                return
            time.sleep(0.25)
        raise AssertionError(
            f"server of {name} not {'ready' if ready else 'stopped'}:\n{self.log_tail()}"
        )

    def open(self, s: requests.Session, path: str) -> requests.Response:
        """GET a page of a single-user server the way a browser does: follow the server's
        OAuth redirect through the Hub (and submit the Hub's confirmation form when the
        server is someone else's), ending on the page with the server's cookie set."""
        r = s.get(self.url + path, timeout=60)
        if "Authorize access" in r.text and "/hub/api/oauth2/authorize" in r.url:
            form = _Form()
            form.feed(r.text)
            r = s.post(
                urljoin(r.url, ""),
                data=form.fields,
                headers={"Referer": r.url},
                timeout=60,
            )
        r.raise_for_status()
        return r


class Kernel:
    """A kernel of a single-user server, over the websocket with the browser's cookies."""

    def __init__(self, hub: Hub, s: requests.Session, owner: str, kernel_id: str | None = None):
        import websocket

        base = f"{hub.url}/user/{owner}"
        if kernel_id is None:
            r = s.post(
                base + "/api/kernels",
                json={"name": "python3"},
                headers={"X-XSRFToken": hub.xsrf(s, f"/user/{owner}/")},
                timeout=60,
            )
            assert r.status_code == 201, (r.status_code, r.text)
            kernel_id = r.json()["id"]
        self.id = kernel_id
        url = f"{base}/api/kernels/{kernel_id}/channels?session_id={uuid.uuid4().hex}"
        cookie = requests.cookies.get_cookie_header(s.cookies, requests.Request("GET", url))
        self.ws = websocket.create_connection(
            url.replace("http://", "ws://"), cookie=cookie, timeout=60
        )
        self.session = Session(username="forged-by-client")  # never trusted

    def run(self, code: str, timeout: float = 60) -> tuple[str, str]:
        msg = self.session.msg(
            "execute_request",
            {
                "code": code,
                "silent": False,
                "store_history": True,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
        )
        msg["channel"] = "shell"
        self.ws.send(json.dumps(msg, default=json_default))
        msg_id = msg["header"]["msg_id"]
        out, status, idle = [], None, False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (status and idle):
            m = json.loads(self.ws.recv())
            if m["parent_header"].get("msg_id") != msg_id:
                continue
            kind = m["header"]["msg_type"]
            if kind == "stream":
                out.append(m["content"]["text"])
            elif kind == "execute_reply":
                status = m["content"]["status"]
            elif kind == "status" and m["content"]["execution_state"] == "idle":
                idle = True
        assert status and idle, f"no reply to {code!r}"
        return status, "".join(out)

    def close(self):
        self.ws.close()
