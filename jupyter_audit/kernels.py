"""Injecting the kernel side into every ipykernel-based kernel the server starts.

A copy of jupyter_audit/kernel is placed, as the top-level package `jupyter_audit_kernel`,
in a directory that is prepended to the kernel's PYTHONPATH, and `--ext=jupyter_audit_kernel`
is appended to its command line, so any Python environment gets it (even one without
jupyter_audit installed). The kernel learns where to report, and its own secret, from
environment variables.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from jupyter_server.services.kernels.kernelmanager import ServerKernelManager

PACKAGE = "jupyter_audit_kernel"
_state: dict = {}  # set by AuditApp: the one server process's ingest settings


def prepare_inject_dir(runtime_dir: str) -> Path:
    """Copy the kernel side to <runtime>/jupyter-audit-inject/jupyter_audit_kernel."""
    src = Path(__file__).parent / "kernel"
    root = Path(runtime_dir) / "jupyter-audit-inject"
    dest = root / PACKAGE
    tmp = root / (PACKAGE + ".tmp")
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return root


def configure(**state) -> None:
    _state.clear()
    _state.update(state)


def is_ipykernel(cmd: list[str]) -> bool:
    return any("ipykernel" in part for part in cmd)


class AuditKernelManager(ServerKernelManager):
    """ServerKernelManager that starts ipykernel kernels with the kernel side loaded."""

    async def _async_pre_start_kernel(self, **kw):
        cmd, kw = await super()._async_pre_start_kernel(**kw)
        if not _state or not is_ipykernel(cmd):
            if _state:
                _state["unaudited"].add(self.kernel_id)
            return cmd, kw
        env = dict(kw.get("env") or os.environ)
        inject = str(_state["inject_dir"])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (inject, env.get("PYTHONPATH")) if p)
        env.update(
            {
                "JUPYTER_AUDIT_INGEST_URL": _state["ingest_url"],
                "JUPYTER_AUDIT_KERNEL_ID": self.kernel_id,
                "JUPYTER_AUDIT_KERNEL_SECRET": _state["secrets"].issue(self.kernel_id),
                "JUPYTER_AUDIT_SPOOL_DIR": _state["spool_dir"],
                "JUPYTER_AUDIT_FAIL_MODE": _state["fail_mode"],
                "JUPYTER_AUDIT_KERNELSPEC": self.kernel_name or "",
                **_state.get("extra_env", {}),
            }
        )
        kw["env"] = env
        ext = f"--ext={PACKAGE}"
        if ext not in cmd:
            cmd = [*cmd, ext]
        return cmd, kw
