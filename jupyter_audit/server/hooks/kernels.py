"""Injecting the kernel side into every ipykernel-based kernel the server starts.

A copy of jupyter_audit/kernel is placed, as the top-level package `jupyter_audit_kernel`,
in a directory that is prepended to the kernel's PYTHONPATH, and `--ext=jupyter_audit_kernel`
is appended to its command line, so any Python environment gets it (even one without
jupyter_audit installed). The kernel learns where to report, and its own secret, from
environment variables. The AuditApp puts a `KernelInjection` in the web app's settings; each
kernel manager reaches it through its parents (the server's kernel manager, then the
ServerApp), as jupyter_server's own classes reach their server: no module-level state.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_server.services.kernels.kernelmanager import ServerKernelManager

PACKAGE = "jupyter_audit_kernel"
SETTINGS_KEY = "jupyter_audit_kernels"


@dataclass
class KernelInjection:
    """Where kernels report and how they behave; `recorder` issues their secrets and notes
    the kernels started without the kernel side."""

    recorder: object
    inject_dir: Path
    ingest_url: str
    spool_dir: str
    fail_mode: str
    extra_env: dict = field(default_factory=dict)


def prepare_inject_dir(runtime_dir: str) -> Path:
    """Copy the kernel side to <runtime>/jupyter-audit-inject/jupyter_audit_kernel."""
    src = Path(__file__).parents[2] / "kernel"
    root = Path(runtime_dir) / "jupyter-audit-inject"
    dest = root / PACKAGE
    tmp = root / (PACKAGE + ".tmp")
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return root


def is_ipykernel(cmd: list[str]) -> bool:
    return any("ipykernel" in part for part in cmd)


class AuditKernelManager(ServerKernelManager):
    """ServerKernelManager that starts ipykernel kernels with the kernel side loaded."""

    def _injection(self) -> KernelInjection | None:
        node = self.parent  # the server's kernel manager, whose parent is the ServerApp
        while node is not None:
            web_app = getattr(node, "web_app", None)
            if web_app is not None:
                return web_app.settings.get(SETTINGS_KEY)
            node = getattr(node, "parent", None)
        return None

    async def _async_pre_start_kernel(self, **kw):
        cmd, kw = await super()._async_pre_start_kernel(**kw)
        injection = self._injection()
        if injection is None:
            return cmd, kw
        if not is_ipykernel(cmd):
            injection.recorder.unaudited.add(self.kernel_id)
            return cmd, kw
        env = dict(kw.get("env") or os.environ)
        inject = str(injection.inject_dir)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (inject, env.get("PYTHONPATH")) if p)
        env.update(
            {
                "JUPYTER_AUDIT_INGEST_URL": injection.ingest_url,
                "JUPYTER_AUDIT_KERNEL_ID": self.kernel_id,
                "JUPYTER_AUDIT_KERNEL_SECRET": injection.recorder.kernel_secrets.issue(
                    self.kernel_id
                ),
                "JUPYTER_AUDIT_SPOOL_DIR": injection.spool_dir,
                "JUPYTER_AUDIT_FAIL_MODE": injection.fail_mode,
                "JUPYTER_AUDIT_KERNELSPEC": self.kernel_name or "",
                **injection.extra_env,
            }
        )
        kw["env"] = env
        ext = f"--ext={PACKAGE}"
        if ext not in cmd:
            cmd = [*cmd, ext]
        return cmd, kw
