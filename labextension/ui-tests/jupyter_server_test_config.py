"""Jupyter server configuration for the jupyter-audit Galata tests.

JupyterLab with Galata's test settings (no token, no XSRF check: test use only),
the jupyter-audit server extension enabled, and a throwaway trail seeded with
demo traces and the reviewer tests' traces (seed_review.py) before the server starts.
Never use this configuration in production.

The browser's user comes from `UITestIdentityProvider`: one fixed person, "rita", whose
groups make her a reviewer, auditor and admin, the way an organisation's sign-in (OIDC,
JupyterHub) supplies groups. With groups and reviewer groups named, risky operations wait
for review (under the standard token login one person holds every role, so they only warn).
Other identities are service accounts whose tokens the tests create through the tokens API
(as carol, `X-UITest-User: carol`: a token's creator counts as its requester, so one rita
made could not be approved by rita).
"""

import atexit
import dataclasses
import os
import shutil
import sys
import tempfile

from jupyter_server.auth.identity import IdentityProvider, User
from jupyterlab.galata import configure_jupyter_server

from jupyter_audit.cli.demo import seed_demo_trail

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from seed_review import seed_review_trail  # noqa: E402


@dataclasses.dataclass
class GroupUser(User):
    groups: list[str] = dataclasses.field(default_factory=list)


class UITestIdentityProvider(IdentityProvider):
    """Every request without a service token is rita's, except one naming carol (an admin,
    not a reviewer) in `X-UITest-User`, for a token someone else made (test use only)."""

    def get_user(self, handler):
        if handler.request.headers.get("X-UITest-User") == "carol":
            return GroupUser(
                username="carol",
                name="Carol Admin",
                display_name="Carol Admin",
                groups=["audit-admins"],
            )
        return GroupUser(
            username="rita",
            name="Rita Reviewer",
            display_name="Rita Reviewer",
            groups=["audit-reviewers", "audit-auditors", "audit-admins"],
        )


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

# A fresh trail per run, seeded before the server (the trail's only writer) opens it; or,
# for benchmarks/bench_panel.py, an existing trail named by JUPYTER_AUDIT_UI_DB (not seeded).
if os.environ.get("JUPYTER_AUDIT_UI_DB"):
    _db_path = os.environ["JUPYTER_AUDIT_UI_DB"]
else:
    _trail_dir = tempfile.mkdtemp(prefix="jupyter-audit-ui-")
    atexit.register(shutil.rmtree, _trail_dir, ignore_errors=True)
    _db_path = os.path.join(_trail_dir, "trail.duckdb")
    seed_demo_trail(_db_path)
    # A trace of 20,004 events, and one with a failed cell, a bulk DELETE and 2,000 repeats
    seed_review_trail(_db_path, long=os.environ.get("JUPYTER_AUDIT_UI_SEED_LONG", "1") == "1")
c.AuditApp.db_path = _db_path
