"""Kernel lifecycle (start, restart, interrupt, shutdown, death), recorded with the identity
that caused it.

The server's kernel manager is wrapped rather than listened to (jupyter_server's
`kernel_actions` events): a listener runs later, so an interrupt could land in the trail
after a cell requested after it, and a kernel's death emits no event
(docs/architecture.md). A kernel that dies, one the idle culler ends and a server that shuts
down are recorded under the server's own (system) identity: their timers are started inside
someone's request (the culler with the first kernel, a kernel's restarter with that kernel)
and would otherwise carry that request's handler, and so its person, for ever after.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging

from jupyter_server.base.call_context import CallContext

from ...identity import system_identity
from ...store.errors import loggable_error
from .caller import current_identity

log = logging.getLogger("jupyter_audit.lifecycle")


#: the notebook path of the session starting a kernel now (sessions.py sets it around
#: jupyter_server's `start_kernel_for_session`): the kernel's `session.started` names it
starting_for: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "jupyter_audit_starting_for", default=None
)


def record_for_kernel(
    recorder,
    kind: str,
    kernel_id: str,
    payload: dict,
    flags=(),
    identity: dict | None = None,
    notebook: str | None = None,
) -> None:
    """Record `kind` in the kernel's trace, after the cells requested before it."""
    try:
        # the cells requested before (queued by the gateway) go first: an interrupt or a
        # restart follows them in the trail as it did on the kernel
        recorder.flush_cells()
    except Exception as e:  # noqa: BLE001 - the writer reports its own failures
        log.error("jupyter-audit: queued cell.requested not handed over: %s", loggable_error(e))
    try:
        recorder.record(
            {
                "kind": kind,
                "identity": identity or current_identity(),
                "trace_id": kernel_id,
                "kernel_id": kernel_id,
                "notebook": notebook,
                "payload": payload,
                "flags": list(flags),
            }
        )
    except Exception as e:  # noqa: BLE001 - the kernel action itself must go on
        log.error(
            "jupyter-audit: %s for kernel %s not recorded: %s", kind, kernel_id, loggable_error(e)
        )


async def _cancel_approvals(approvals, kernel_id: str, why: str) -> None:
    """The kernel's pending (or approved, not run) approval requests are cancelled: what it
    was waiting for will never run."""
    if approvals is None:
        return
    try:
        await asyncio.to_thread(approvals.cancel_kernel, kernel_id, why)
    except Exception as e:  # noqa: BLE001 - the kernel action itself must go on
        log.error(
            "jupyter-audit: approvals of kernel %s not cancelled: %s", kernel_id, loggable_error(e)
        )


def install_kernel_hooks(recorder, km, approvals=None) -> None:
    """Wrap the server's kernel manager so starts, restarts, interrupts, shutdowns and
    deaths land in the trail, and cancel the kernel's approval requests (`approvals`, the
    ApprovalBroker) on each but a start."""
    start, restart = km.start_kernel, km.restart_kernel
    interrupt, shutdown = km.interrupt_kernel, km.shutdown_kernel
    died = km._handle_kernel_died
    cull = getattr(km, "cull_kernels", None)
    cancelling: set = set()  # approval cancellations under way for kernels that died

    async def start_kernel(*args, **kwargs):
        known = kwargs.get("kernel_id") in km
        kernel_id = await start(*args, **kwargs)
        if not known:
            name = getattr(km.get_kernel(kernel_id), "kernel_name", None)
            unaudited = kernel_id in recorder.unaudited
            record_for_kernel(
                recorder,
                "session.started",
                kernel_id,
                {"reason": "start", "kernel_name": name, "audited": not unaudited},
                flags=("unaudited",) if unaudited else (),
                notebook=starting_for.get(),
            )
        return kernel_id

    async def restart_kernel(kernel_id, *args, **kwargs):
        result = await restart(kernel_id, *args, **kwargs)
        record_for_kernel(recorder, "session.started", kernel_id, {"reason": "restart"})
        await _cancel_approvals(approvals, kernel_id, "restart")
        return result

    async def interrupt_kernel(kernel_id, *args, **kwargs):
        result = await interrupt(kernel_id, *args, **kwargs)
        record_for_kernel(recorder, "session.interrupted", kernel_id, {"reason": "interrupt"})
        await _cancel_approvals(approvals, kernel_id, "interrupt")
        return result

    async def shutdown_kernel(kernel_id, *args, **kwargs):
        result = await shutdown(kernel_id, *args, **kwargs)
        if not kwargs.get("restart"):
            if kernel_id not in recorder.ended_at_shutdown:
                record_for_kernel(recorder, "session.ended", kernel_id, {"reason": "shutdown"})
            recorder.kernel_secrets.forget(kernel_id)
            recorder.notebooks.forget(kernel_id)
            await _cancel_approvals(approvals, kernel_id, "shutdown")
        return result

    async def cull_kernels(*args, **kwargs):
        # the culler's timer runs in the context of the request that started the first
        # kernel: what it ends, it ends as the server, not as that request's person
        CallContext.set(CallContext.JUPYTER_HANDLER, None)
        return await cull(*args, **kwargs)

    def handle_kernel_died(kernel_id):
        record_for_kernel(
            recorder, "session.ended", kernel_id, {"reason": "died"}, identity=system_identity()
        )
        if approvals is not None:
            try:
                task = asyncio.get_running_loop().create_task(
                    _cancel_approvals(approvals, kernel_id, "died")
                )
                cancelling.add(task)  # held until done: the loop keeps only weak references
                task.add_done_callback(cancelling.discard)
            except RuntimeError:  # no loop running (not from the restarter): cancel here
                try:
                    approvals.cancel_kernel(kernel_id, "died")
                except Exception as e:  # noqa: BLE001 - the death is handled regardless
                    log.error(
                        "jupyter-audit: approvals of kernel %s not cancelled: %s",
                        kernel_id,
                        loggable_error(e),
                    )
        return died(kernel_id)

    km.start_kernel = start_kernel
    km.restart_kernel = restart_kernel
    km.interrupt_kernel = interrupt_kernel
    km.shutdown_kernel = shutdown_kernel
    km._handle_kernel_died = handle_kernel_died
    if cull is not None:  # before the culler's timer is made (with the first kernel)
        km.cull_kernels = cull_kernels


def record_server_shutdown(recorder, km) -> None:
    """Every kernel still running ends with the server: recorded here, before the trail
    closes, and not again when jupyter_server shuts the kernels down after its extensions
    (the trail is closed by then)."""
    for kernel_id in km.list_kernel_ids():
        if kernel_id in recorder.ended_at_shutdown:
            continue
        record_for_kernel(recorder, "session.ended", kernel_id, {"reason": "server shutdown"})
        recorder.ended_at_shutdown.add(kernel_id)
