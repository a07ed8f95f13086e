"""Jupyter server configuration for the jupyter-audit sign-in UI tests (tests/session.spec.ts).

JupyterLab signing people in with jupyter-audit's OIDCIdentityProvider at a real issuer,
`oidc-provider-mock`, which playwright.config.js starts on loopback
($JUPYTER_AUDIT_UI_OIDC_ISSUER). Sessions last $JUPYTER_AUDIT_UI_SESSION_LIFETIME seconds
(short: a test waits for one to expire). A fresh, empty trail per run. Test use only.
"""

import atexit
import os
import shutil
import tempfile

c = get_config()  # noqa: F821

c.ServerApp.allow_root = True
c.ServerApp.open_browser = False
c.ServerApp.ip = "127.0.0.1"
c.ServerApp.port = int(os.environ["JUPYTER_AUDIT_UI_OIDC_PORT"])
c.ServerApp.jpserver_extensions.update({"jupyter_audit": True})
c.ServerApp.identity_provider_class = "jupyter_audit.identity.OIDCIdentityProvider"
c.OIDCIdentityProvider.issuer = os.environ["JUPYTER_AUDIT_UI_OIDC_ISSUER"]
c.OIDCIdentityProvider.client_id = "jupyter-audit-ui-tests"
c.OIDCIdentityProvider.client_secret = "ui-tests"
c.OIDCIdentityProvider.session_lifetime = int(
    os.environ.get("JUPYTER_AUDIT_UI_SESSION_LIFETIME", "60")
)
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"

_dir = tempfile.mkdtemp(prefix="jupyter-audit-ui-oidc-")
atexit.register(shutil.rmtree, _dir, ignore_errors=True)
c.AuditApp.db_path = os.path.join(_dir, "trail.duckdb")
c.LabApp.workspaces_dir = os.path.join(_dir, "workspaces")
c.ServerApp.root_dir = os.path.join(_dir, "notebooks")
os.makedirs(c.ServerApp.root_dir)
