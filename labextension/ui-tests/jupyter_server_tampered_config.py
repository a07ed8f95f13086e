"""Jupyter server configuration for the UI tests' tampered trail (test use only).

The UI-test server's configuration on another port (`JUPYTER_AUDIT_UI_TAMPERED_PORT`),
whose throwaway trail holds the demo and review traces (not the 20,000-event one) with
one record of the demo's first trace edited in place after it was written, as someone
with write access to the file could: the server opens it, verifies it and reports the
first broken record. tests/review.spec.ts starts it.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from seed_review import tamper  # noqa: E402

# The same server as the other tests (identity provider, Galata settings, seeded trail).
os.environ["JUPYTER_AUDIT_UI_SEED_LONG"] = "0"
os.environ["JUPYTER_AUDIT_UI_PORT"] = os.environ.get("JUPYTER_AUDIT_UI_TAMPERED_PORT", "8908")
load_subconfig(os.path.join(HERE, "jupyter_server_test_config.py"))  # noqa: F821
c = get_config()  # noqa: F821

# The first record of the demo's model-review trace that names its database.
tamper(c.AuditApp.db_path, "loans.db", "loans.bak")
