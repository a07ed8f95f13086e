"""Jupyter server configuration for the jupyter-audit Galata tests.

JupyterLab with Galata's test settings (no token, no XSRF check: test use only),
the jupyter-audit server extension enabled, and a throwaway trail seeded with
demo traces before the server starts. Never use this configuration in production.

The browser's user comes from `UITestIdentityProvider`: one fixed person, "rita", whose
groups make her a reviewer, auditor and admin, the way an organisation's sign-in (OIDC,
JupyterHub) supplies groups. With groups and reviewer groups named, risky operations wait
for review (under the standard token login one person holds every role, so they only warn).
Other identities are service accounts whose tokens the tests create through the tokens API,
as "adam" (an admin who reviews nothing: the request header `X-UITest-User: adam`), since
the person who made a token is its requester's person too and could not decide its requests.
"""

import atexit
import dataclasses
import os
import shutil
import tempfile

from jupyter_server.auth.identity import IdentityProvider, User
from jupyterlab.galata import configure_jupyter_server

from jupyter_audit.cli.demo import seed_demo_trail


@dataclasses.dataclass
class GroupUser(User):
    groups: list[str] = dataclasses.field(default_factory=list)


PEOPLE = {
    "rita": ("Rita Reviewer", ["audit-reviewers", "audit-auditors", "audit-admins"]),
    "adam": ("Adam Admin", ["audit-admins"]),
}


class UITestIdentityProvider(IdentityProvider):
    """Every request without a service token is rita's, or adam's when it says so in
    `X-UITest-User` (test use only)."""

    def get_user(self, handler):
        username = handler.request.headers.get("X-UITest-User", "rita")
        name, groups = PEOPLE.get(username, PEOPLE["rita"])
        username = username if username in PEOPLE else "rita"
        return GroupUser(username=username, name=name, display_name=name, groups=groups)


c = get_config()  # noqa: F821

configure_jupyter_server(c)
c.ServerApp.identity_provider_class = UITestIdentityProvider

# The tests run as root here; Chromium is the Debian one (see playwright.config.js).
c.ServerApp.allow_root = True
# One variable sets the port here and in playwright.config.js.
c.ServerApp.port = int(os.environ.get("JUPYTER_AUDIT_UI_PORT", "8888"))
c.ServerApp.jpserver_extensions.update({"jupyter_audit": True})
# No calls to the internet from the test server.
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"

# A fresh trail per run, seeded before the server (the trail's only writer) opens it.
_trail_dir = tempfile.mkdtemp(prefix="jupyter-audit-ui-")
atexit.register(shutil.rmtree, _trail_dir, ignore_errors=True)
_db_path = os.path.join(_trail_dir, "trail.duckdb")
seed_demo_trail(_db_path)
c.AuditApp.db_path = _db_path
