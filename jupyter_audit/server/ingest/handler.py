"""POST /jupyter-audit/api/kernel/events: the server end of the kernel side's transport.

Kernels report raw events (cells, operations) authenticated by a secret that only their own
kernel process received (`secrets.KernelSecrets`); each event is attributed to the server's
own record of its cell (`attribution`). Forged submissions are refused and recorded as
`security.rejected` through the Recorder.
"""

from __future__ import annotations

import asyncio
import json

from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.base.handlers import APIHandler
from tornado import web

from ...events import EventValidationError
from .attribution import Attributor, ForgedSubmission

MAX_BODY = 16 * 1024 * 1024
MAX_EVENTS = 10_000


class KernelHandler(APIHandler):
    """Base of the kernels' endpoints (`kernel/events`, `kernel/approvals`).

    Not for users: authenticated by the per-kernel secret (header `Authorization:
    JupyterAudit-Kernel <secret>` and `X-Jupyter-Audit-Kernel: <kernel id>`), which is not a
    cookie, so no XSRF token is involved. A wrong or missing secret is a 403, recorded as
    `security.rejected` (rate-limited per address)."""

    @property
    def recorder(self):
        return self.settings["jupyter_audit"]

    def check_xsrf_cookie(self):
        return None

    def _reject(self, reason: str, kernel_id: str | None, status: int = 403):
        ip = self.request.remote_ip or "?"
        self.recorder.reject(reason, f"kernel ingest from {ip}", address=ip, kernel_id=kernel_id)
        raise web.HTTPError(status, reason)

    def kernel_id(self) -> str:
        """The kernel whose secret this request carries (403 otherwise)."""
        kernel_id = self.request.headers.get("X-Jupyter-Audit-Kernel")
        auth = self.request.headers.get("Authorization", "")
        scheme, _, secret = auth.partition(" ")
        if scheme != "JupyterAudit-Kernel" or not self.recorder.kernel_secrets.check(
            kernel_id, secret
        ):
            self._reject("kernel secret missing or wrong", kernel_id)
        return kernel_id  # type: ignore[return-value]  # checked above


class KernelEventsHandler(KernelHandler):
    """POST /jupyter-audit/api/kernel/events: batches from the kernel side."""

    @allow_unauthenticated
    async def post(self):
        recorder = self.recorder
        kernel_id = self.kernel_id()
        if len(self.request.body) > MAX_BODY:
            raise web.HTTPError(413, f"batch larger than {MAX_BODY} bytes")
        try:
            body = json.loads(self.request.body)
        except ValueError:
            raise web.HTTPError(400, "body is not JSON") from None
        except RecursionError:
            raise web.HTTPError(400, "body is nested too deeply") from None
        if not isinstance(body, dict) or not isinstance(body.get("events"), list):
            raise web.HTTPError(400, 'body must be {"kernel_id": ..., "events": [...]}')
        if body.get("kernel_id") not in (None, kernel_id):
            self._reject("batch names another kernel than its secret", kernel_id)
        if len(body["events"]) > MAX_EVENTS:
            raise web.HTTPError(413, f"more than {MAX_EVENTS} events in one batch")
        # validating and masking a batch (up to MAX_EVENTS) must not stall the event loop
        prepared, rejected, forged = await asyncio.to_thread(
            _prepare_batch, recorder, kernel_id, body["events"]
        )
        for reason in forged:
            recorder.reject(reason, f"kernel {kernel_id}", kernel_id=kernel_id)
        recorder.flush_cells()  # the cells' own records go first
        results = await asyncio.wrap_future(recorder.writer.submit_batch(prepared))
        self.finish({"accepted": [r.event_id for r in results], "rejected": rejected})


def _prepare_batch(recorder, kernel_id: str, events: list):
    """Attribute, validate and mask one kernel batch: (prepared, rejected, forgeries)."""
    attributor = Attributor(recorder.cells, recorder.writer.cursor)
    attributed, rejected, forged = [], [], []
    for i, raw in enumerate(events):
        event_id = raw.get("event_id") if isinstance(raw, dict) else None
        try:
            attributed.append((i, event_id, attributor.event(kernel_id, raw)))
        except ForgedSubmission as e:
            rejected.append((i, {"event_id": event_id, "error": str(e)}))
            forged.append(str(e))
        except EventValidationError as e:
            rejected.append((i, {"event_id": event_id, "error": str(e)}))
    prepared = []
    results = recorder.prepare_kernel_events([event for _, _, event in attributed])
    for (i, event_id, _), p in zip(attributed, results, strict=True):
        if isinstance(p, EventValidationError):
            rejected.append((i, {"event_id": event_id, "error": str(p)}))
        else:
            prepared.append(p)
    rejected.sort(key=lambda r: r[0])
    return prepared, [r for _, r in rejected], forged
