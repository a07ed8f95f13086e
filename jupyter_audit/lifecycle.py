"""Kernel lifecycle and saved files, recorded with the identity that caused them.

The identity comes from the request being served (jupyter_server's CallContext holds the
current handler); a kernel that dies or a server that shuts down is recorded under the
server's own (system) identity.
"""

from __future__ import annotations

import hashlib
import logging

from jupyter_server.base.call_context import CallContext

from . import kernels
from .identity import system_identity
from .identity.resolve import snapshot_for
from .store.errors import loggable_error

log = logging.getLogger("jupyter_audit.lifecycle")


def current_identity() -> dict:
    handler = CallContext.get(CallContext.JUPYTER_HANDLER)
    if handler is None:
        return system_identity()
    try:
        return snapshot_for(handler.current_user, handler.identity_provider)
    except Exception:  # noqa: BLE001 - no authenticated user behind this call
        return system_identity()


def _record(audit, kind: str, kernel_id: str, payload: dict, flags=()) -> None:
    try:
        # the cells requested before (queued by the gateway) go first: an interrupt or a
        # restart follows them in the trail as it did on the kernel
        audit.cell_requests.flush()
    except Exception as e:  # noqa: BLE001 - the writer reports its own failures
        log.error("jupyter-audit: queued cell.requested not handed over: %s", loggable_error(e))
    try:
        fut = audit.writer.submit(
            {
                "kind": kind,
                "identity": current_identity(),
                "trace_id": kernel_id,
                "kernel_id": kernel_id,
                "payload": payload,
                "flags": list(flags),
            }
        )
        fut.add_done_callback(lambda f: f.exception() and log.error("%s", f.exception()))
    except Exception as e:  # noqa: BLE001 - the kernel action itself must go on
        log.error("jupyter-audit: %s for kernel %s not recorded: %s", kind, kernel_id, e)


def install_kernel_hooks(audit, km) -> None:
    """Wrap the server's kernel manager so starts, restarts, interrupts, shutdowns and
    deaths land in the trail."""
    start, restart = km.start_kernel, km.restart_kernel
    interrupt, shutdown = km.interrupt_kernel, km.shutdown_kernel
    died = km._handle_kernel_died

    async def start_kernel(*args, **kwargs):
        known = kwargs.get("kernel_id") in km
        kernel_id = await start(*args, **kwargs)
        if not known:
            name = getattr(km.get_kernel(kernel_id), "kernel_name", None)
            unaudited = kernel_id in kernels._state.get("unaudited", ())
            _record(
                audit,
                "session.started",
                kernel_id,
                {"reason": "start", "kernel_name": name, "audited": not unaudited},
                flags=("unaudited",) if unaudited else (),
            )
        return kernel_id

    async def restart_kernel(kernel_id, *args, **kwargs):
        result = await restart(kernel_id, *args, **kwargs)
        _record(audit, "session.started", kernel_id, {"reason": "restart"})
        return result

    async def interrupt_kernel(kernel_id, *args, **kwargs):
        result = await interrupt(kernel_id, *args, **kwargs)
        _record(audit, "session.interrupted", kernel_id, {"reason": "interrupt"})
        return result

    async def shutdown_kernel(kernel_id, *args, **kwargs):
        result = await shutdown(kernel_id, *args, **kwargs)
        if not kwargs.get("restart"):
            _record(audit, "session.ended", kernel_id, {"reason": "shutdown"})
            audit.kernel_secrets.forget(kernel_id)
        return result

    def handle_kernel_died(kernel_id):
        _record(audit, "session.ended", kernel_id, {"reason": "died"})
        return died(kernel_id)

    km.start_kernel = start_kernel
    km.restart_kernel = restart_kernel
    km.interrupt_kernel = interrupt_kernel
    km.shutdown_kernel = shutdown_kernel
    km._handle_kernel_died = handle_kernel_died


def record_server_shutdown(audit, km) -> None:
    for kernel_id in km.list_kernel_ids():
        _record(audit, "session.ended", kernel_id, {"reason": "server shutdown"})


def install_save_hook(audit, cm) -> None:
    """file.saved (path, size, sha256) for every save through the Contents API."""

    def on_save(model, os_path, contents_manager, **_):
        if model.get("type") == "directory":
            return  # a new folder: nothing to hash
        digest, size = hashlib.sha256(), 0
        try:
            with open(os_path, "rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
        except OSError as e:
            log.error("jupyter-audit: saved file not hashed: %s", e.strerror)
            return
        try:
            audit.writer.submit(
                {
                    "kind": "file.saved",
                    "identity": current_identity(),
                    "notebook": model.get("path") if model.get("type") == "notebook" else None,
                    "payload": {
                        "path": model.get("path") or "",
                        "type": model.get("type"),
                        "sha256": digest.hexdigest(),
                        "size": size,
                    },
                }
            )
        except Exception as e:  # noqa: BLE001 - saving must not fail because of the trail
            log.error("jupyter-audit: file.saved not recorded: %s", e)

    cm.register_post_save_hook(on_save)
