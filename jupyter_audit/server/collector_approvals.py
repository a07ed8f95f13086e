"""A single-user server's approvals when the Hub's collector holds them (docs/approvals.md
"Under a JupyterHub collector"): the server still attributes a kernel's question to the
running cell and runs its policy (the local broker's `check`); a `review` is asked at the
collector, which records the request in the Hub's trail, waits, expires it and takes people's
decisions. The kernel's protocol on its server is unchanged.

Through the one client (`collector_client.CollectorClient`): `fetch` on the event loop for
questions, long polls and reports (no worker thread held while a request waits), `request`
for cancellations from threads (a kernel that stops). The collector's refusal passes on as a
`Refused` with its status and message; a collector that cannot be reached is a 503 that says
so: the kernel then raises `ApprovalUnavailable` and the operation does not run.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ..approvals import Refused
from .collector_client import CollectorRefused, CollectorUnavailable

API = "api/approvals/"
UNREACHABLE = (
    "the Hub's approval collector cannot be reached, so no one can be asked to approve this "
    "operation: it did not run (try again once the collector is back)"
)
# a long poll at the collector answers within its `wait` (at most 30 s): a little more here
WAIT_SLACK = 10.0
# a question or a report is answered within this, or the kernel hears why: the kernel itself
# waits 5 s for its server (kernel/client.py) and would only know that it timed out
ANSWER_WITHIN = 4.5
# an `executed` report the collector could not take is delivered again, with backoff from
# the first to the last delay, for this long: the operation ran, its record must not be lost
REDELIVER_DELAYS = (1.0, 30.0)
REDELIVER_FOR = 3600.0
# once the collector could not be reached from a thread, further blocking calls skip it for
# this long: a stopping server cancels each kernel's requests in turn, and must not wait
# a timeout per kernel (the Hub would kill it before its own shutdown records are written)
AWAY_FOR = 30.0


class CollectorApprovals:
    """The verbs of `approvals.ApprovalBroker` the server's handlers and kernel hooks use,
    for a server whose approvals live at the collector. `local` (the server's own broker)
    runs the policy; it holds no requests."""

    remote = True

    def __init__(self, local, client, log: logging.Logger | None = None):
        self.local = local
        self.client = client
        self.log = log or logging.getLogger("jupyter_audit")
        # `executed` reports being delivered again (request id -> (kernel, body))
        self.undelivered: dict[int, tuple[str, dict]] = {}
        self._redelivering: set[asyncio.Task] = set()
        self.blocking_within = 10.0  # seconds a blocking call waits for the collector
        self._away_until = 0.0  # (monotonic) blocking calls skip the collector until then

    def _blocking(self, path: str, body: dict) -> dict:
        """A blocking call (threads, a stopping server); CollectorUnavailable at once while
        the collector was just found away."""
        if time.monotonic() < self._away_until:
            raise CollectorUnavailable(f"POST {path}: not tried, the collector was just away")
        try:
            return self.client.request(
                "POST", path, body, self._params(), timeout=self.blocking_within
            )
        except CollectorRefused:
            raise
        except CollectorUnavailable:
            self._away_until = time.monotonic() + AWAY_FOR
            raise

    def check(self, ask, cell):
        return self.local.check(ask, cell)

    def answer(self, decision) -> dict:
        return self.local.answer(decision)

    def _params(self) -> dict:
        return {"server": self.client.server}

    def _refused(self, e: CollectorUnavailable, what: str) -> Refused:
        if isinstance(e, CollectorRefused):
            status = e.status if 400 <= e.status < 600 else 502
            return Refused(status, e.message)
        self.log.warning("jupyter-audit: %s: the collector cannot be reached: %s", what, e)
        return Refused(503, UNREACHABLE)

    async def ask(self, kernel_id: str, body: dict, cell: dict, decision) -> dict:
        """A `review` asked at the collector: the kernel's answer. `body` is the kernel's
        question as checked (`approvals.parse_ask` passed it)."""
        question = {
            **body,
            "kernel_id": kernel_id,
            "trace_id": cell.get("trace_id"),
            "session_id": cell.get("session_id"),
            "notebook": cell.get("notebook"),
            # who ran the cell (the owner, or a Hub user the server is shared with): the
            # collector lets neither decide it
            "ran_by": (cell.get("identity") or {}).get("username"),
            "decision": decision.to_json(),
        }
        try:
            return await self.client.fetch(
                "POST", API + "requests", question, self._params(), timeout=ANSWER_WITHIN
            )
        except CollectorUnavailable as e:
            raise self._refused(e, "approval request") from None

    async def wait(self, request_id: int, kernel_id: str, seconds: float) -> dict:
        params = {**self._params(), "kernel": kernel_id, "wait": f"{seconds:g}"}
        try:
            return await self.client.fetch(
                "GET",
                f"{API}requests/{request_id}",
                None,
                params,
                timeout=min(seconds, 30.0) + WAIT_SLACK,
            )
        except CollectorUnavailable as e:
            raise self._refused(e, "approval wait") from None

    async def report(self, request_id: int, kernel_id: str, body: dict) -> dict:
        """The kernel's `{"executed": …}` or `{"cancel": …}`, at the collector: the status.
        An `executed` report the collector cannot take now (away, slow) is delivered again
        in the background (`REDELIVER_FOR`): the operation ran, and the collector's trail
        must say so; the kernel is told it will be."""
        try:
            return await self._post_report(request_id, kernel_id, body)
        except CollectorRefused as e:
            raise self._refused(e, "approval report") from None
        except CollectorUnavailable as e:
            if "executed" not in body:
                raise self._refused(e, "approval report") from None
            self.log.warning(
                "jupyter-audit: the outcome of approval #%s not recorded at the collector yet "
                "(delivered again until it is): %s",
                request_id,
                e,
            )
            self.undelivered[request_id] = (kernel_id, body)
            task = asyncio.get_running_loop().create_task(self._redeliver(request_id))
            self._redelivering.add(task)
            task.add_done_callback(self._redelivering.discard)
            return {
                "id": request_id,
                "state": "approved",
                "reason": None,
                "decided_by": [],
                "message": f"request #{request_id} ran; the Hub's collector cannot be reached "
                "now, so its outcome is recorded there once it can be",
            }

    async def _post_report(self, request_id: int, kernel_id: str, body: dict) -> dict:
        return await self.client.fetch(
            "POST",
            f"{API}requests/{request_id}",
            {**body, "kernel": kernel_id},
            self._params(),
            timeout=ANSWER_WITHIN,
        )

    async def _redeliver(self, request_id: int) -> None:
        delay, last = REDELIVER_DELAYS
        deadline = asyncio.get_running_loop().time() + REDELIVER_FOR
        while request_id in self.undelivered:
            await asyncio.sleep(delay)
            kernel_id, body = self.undelivered[request_id]
            try:
                await self._post_report(request_id, kernel_id, body)
            except CollectorRefused as e:
                self.log.error(
                    "jupyter-audit: the collector refused the outcome of approval #%s: %s",
                    request_id,
                    e,
                )
            except CollectorUnavailable:
                if asyncio.get_running_loop().time() < deadline:
                    delay = min(delay * 2, last)
                    continue
                self.log.error(
                    "jupyter-audit: the outcome of approval #%s was never recorded at the "
                    "collector (unreachable for %g s)",
                    request_id,
                    REDELIVER_FOR,
                )
            self.undelivered.pop(request_id, None)

    def cancel_kernel(self, kernel_id: str, why: str) -> list[int]:
        """The kernel stopped: its requests at the collector are cancelled (blocking). A
        collector that cannot be reached cancels nothing now; the requests expire there."""
        try:
            reply = self._blocking(API + "kernels", {"kernel": kernel_id, "why": why})
        except CollectorUnavailable as e:
            self.log.warning(
                "jupyter-audit: approvals of kernel %s not cancelled at the collector: %s",
                kernel_id,
                e,
            )
            return []
        return list(reply.get("cancelled") or [])

    def expire_due(self) -> list[int]:
        # the collector expires its requests; requests the server held itself before it used
        # the collector (in its trail) expire here, as they always did
        return self.local.expire_due()

    def close(self) -> None:
        """The server stops: `executed` reports still undelivered get one last try."""
        for request_id, (kernel_id, body) in list(self.undelivered.items()):
            try:
                self._blocking(f"{API}requests/{request_id}", {**body, "kernel": kernel_id})
            except CollectorUnavailable as e:
                self.log.error(
                    "jupyter-audit: the outcome of approval #%s not recorded at the collector: %s",
                    request_id,
                    e,
                )
            self.undelivered.pop(request_id, None)
        if self.local is not None:
            self.local.close()
