"""The kernel side of jupyter-audit: capture, and holding risky operations for approval.

kernel/: runs inside user kernels; never opens the trail file, never trusts its own identity
claims. It imports only the standard library and IPython (drivers such as duckdb or
requests are patched only if the user imports them), and only relative imports within this
package, so the server can put a copy of it on a foreign kernel's PYTHONPATH under another
top-level name. It reports raw events; the server attributes, masks and stores them.

Load with ``%load_ext jupyter_audit.kernel`` or start a kernel with
``--ext=jupyter_audit.kernel``. Configuration comes from the environment the server sets:
``JUPYTER_AUDIT_INGEST_URL``, ``JUPYTER_AUDIT_KERNEL_ID``, ``JUPYTER_AUDIT_KERNEL_SECRET``,
``JUPYTER_AUDIT_SPOOL_DIR``, ``JUPYTER_AUDIT_FAIL_MODE``, ``JUPYTER_AUDIT_OUTPUT_CAP``,
``JUPYTER_AUDIT_BODY_HOSTS``, ``JUPYTER_AUDIT_BODY_CAP``, ``JUPYTER_AUDIT_KERNELSPEC``,
``JUPYTER_AUDIT_RETRY_MAX``, ``JUPYTER_AUDIT_APPROVALS_URL`` (see :class:`.client.KernelConfig`;
with the last, operations that may write wait for the server's approval broker: see
approvals.py).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import platform
import re
import sys
import threading

from . import approvals, context
from .approvals import (
    ApprovalCancelled,
    ApprovalDenied,
    ApprovalError,
    ApprovalExpired,
    ApprovalUnavailable,
)
from .capture import Patcher, PostImportHooks, egress
from .capture import http as http_capture
from .capture import shell as shell_capture
from .capture import sql as sql_capture
from .capture.sql import wrap_connection
from .client import AuditClient, KernelConfig
from .hooks import AuditTrailUnavailable, CellHooks

__all__ = [
    "ApprovalCancelled",
    "ApprovalDenied",
    "ApprovalError",
    "ApprovalExpired",
    "ApprovalUnavailable",
    "AuditTrailUnavailable",
    "load_ipython_extension",
    "unload_ipython_extension",
    "wrap_connection",
]

# one capture per process, whichever copy of this package loaded it
_MARK = "_jupyter_audit_kernel_capture"


class _Capture:
    def __init__(self, ip, config: KernelConfig) -> None:
        self.ip = ip
        self.config = config
        self.client = AuditClient(config)
        self.patcher = Patcher()
        self.hooks = PostImportHooks()
        self.cells = CellHooks(ip, config, self.client, self.patcher)

    def start(self) -> None:
        self.client.start()
        context.set_sink(self.client.emit, self.client)
        approvals.configure(self.client, self.config.approvals_url)
        env_slot = (context.next_op_index(), context.kernel_time_ns())
        context.install_thread_propagation(self.patcher)
        sql_capture.install(self.hooks, self.patcher)
        http_capture.install(self.hooks, self.patcher, self.config.body_hosts, self.config.body_cap)
        shell_capture.install(self.hooks, self.patcher, self.ip)
        # what none of the above accounts for: connections and process starts during a cell
        egress.install(
            self.config.ingest_url,
            [http_capture.IN_HTTP, sql_capture.IN_SQL, shell_capture.SCOPE],
        )
        self.cells.install()
        threading.Thread(
            target=self._environment, args=env_slot, name="jupyter-audit-environment", daemon=True
        ).start()
        atexit.register(self.stop)

    def stop(self) -> None:
        atexit.unregister(self.stop)
        egress.uninstall()
        self.cells.complete_pending()
        self.hooks.uninstall()
        self.patcher.restore()
        approvals.configure(None, None)
        context.set_sink(None)
        self.client.close()

    def _environment(self, op_index: int, time_ns: int) -> None:
        """session.environment: what the kernel runs on (computed off the load path)."""
        try:
            import importlib.metadata as md

            names = set()
            for dist in md.distributions():
                try:
                    name = dist.metadata["Name"]
                    if name:
                        names.add(f"{name}=={dist.version}")
                except Exception:
                    continue
            packages = sorted(names)
            payload = {
                "python_version": platform.python_version(),
                "python_implementation": platform.python_implementation(),
                "executable": sys.executable,
                "platform": f"{sys.platform}-{os.uname().machine}"
                if hasattr(os, "uname")
                else sys.platform,
                "kernelspec": self.config.kernelspec,
                "packages": packages,
                "packages_hash": hashlib.sha256("\n".join(packages).encode()).hexdigest(),
            }
            self.client.emit("session.environment", None, op_index, time_ns, payload)
        except Exception as e:
            context.log_once("session.environment", e)


def _kernel_id_from_connection_file(ip) -> str | None:
    app = getattr(getattr(ip, "kernel", None), "parent", None)
    path = getattr(app, "connection_file", "") or ""
    m = re.search(r"kernel-([0-9A-Za-z_\-]+)\.json$", os.path.basename(path))
    return m.group(1) if m else None


def load_ipython_extension(ip) -> None:
    if getattr(ip, _MARK, None) is not None:
        return  # already loaded (by this or another copy of the package)
    config = KernelConfig.from_env(fallback_kernel_id=_kernel_id_from_connection_file(ip))
    capture = _Capture(ip, config)
    setattr(ip, _MARK, capture)
    try:
        capture.start()
    except Exception as e:
        # never break the kernel: undo whatever was patched and say so once
        context.log_once("load", e)
        try:
            capture.stop()
        finally:
            setattr(ip, _MARK, None)
        if config.fail_mode == "closed":
            _refuse_everything(ip)


def _refuse_everything(ip) -> None:
    """fail_mode=closed and no capture: no cell may run unrecorded."""
    from .hooks import refusal_message

    def refuse(lines):
        raise AuditTrailUnavailable(refusal_message("the kernel capture could not be loaded"))

    ip.input_transformers_post.append(refuse)


def unload_ipython_extension(ip) -> None:
    capture = getattr(ip, _MARK, None)
    if capture is None:
        return
    setattr(ip, _MARK, None)
    capture.stop()
