"""The forwarder: a single-user server's local trail, forwarded in order to the collector.

The local trail is the outbox. One thread asks the collector where this server resumes
(`GET <collector>/api/forward/state`), reads the chain rows after that point through the
store's read connection (`store.chain.chain_rows`, with each record's identity snapshot from
the local `identities` table) and posts them in bounded batches (`POST .../api/forward`),
each acknowledged only once the collector's store committed it. It looks for new local
records every `poll` seconds (so a commit is forwarded within about a second), sends a
heartbeat when idle, backs off while the collector is away (the server keeps recording
locally and catches up), and sends a last batch marked `stopping` when the server stops
(bounded wait). A local trail the collector does not know (a new file) is forwarded from its
start; one that changed behind the collector's head is forwarded from that head on (or from
its own end, if it now ends before), and the collector records what it sees of the change.
It never runs on the event loop and never
touches the per-cell path: the gateway only reads `refusal()` under fail_mode=closed.
"""

from __future__ import annotations

import json
import logging
import threading
import time

from ..store.chain import chain_rows
from ..store.errors import loggable_error
from .collector_client import CollectorClient, CollectorUnavailable

BATCH_RECORDS = 500
BATCH_BYTES = 4 << 20


class BacklogFull(RuntimeError):
    """fail_mode=closed: cells are refused while the collector lags this far behind."""


class Forwarder:
    def __init__(
        self,
        store,
        url: str,
        token: str | None,
        *,
        server: str | None = None,
        max_backlog: int = 100_000,
        fail_mode: str = "open",
        heartbeat: float = 30.0,
        poll: float = 0.5,
        log: logging.Logger | None = None,
    ):
        self.store = store
        self.url = url.rstrip("/") + "/"
        self.token = token
        self.client = CollectorClient(url, token, server=server)
        self.server = server
        self.max_backlog = max_backlog
        self.fail_mode = fail_mode
        self.heartbeat = heartbeat
        self.poll = poll
        self.log = log or logging.getLogger("jupyter_audit.forwarding")
        self.acked = 0  # the last local seq the collector acknowledged (this trail)
        self.local_last = 0
        self.connected = False
        self._resume: int | None = None
        self._identities: dict[str, str] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._over = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ for the server
    @property
    def backlog(self) -> int:
        """Local events the collector has not acknowledged yet: counted up to the store's
        own last committed seq, not the forwarder's last look, so that a forwarder waiting
        on a collector that does not answer lets no cell past the bound."""
        return max(0, max(self.local_last, getattr(self.store, "seq", 0)) - self.acked)

    def refusal(self) -> str | None:
        """Under fail_mode=closed, why a cell must be refused now (else None)."""
        if self.fail_mode != "closed" or self.backlog <= self.max_backlog:
            return None
        return (
            f"the audit collector has not acknowledged {self.backlog} events of this server "
            f"(more than collector_max_backlog={self.max_backlog})"
        )

    def start(self) -> Forwarder:
        self._thread = threading.Thread(target=self._run, name="jupyter-audit-forwarder")
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Forward what the trail holds now, marked `stopping`, waiting at most `timeout`."""
        self._stop_deadline = time.monotonic() + timeout
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout + 1)

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        delay = 0.0
        last_post = 0.0
        while not self._stop.is_set():
            if delay:
                self._wake.wait(delay)
                self._wake.clear()
                if self._stop.is_set():
                    break
            try:
                sent = self._step(stopping=False)
                delay = 0.0 if sent else self.poll
                if sent:
                    last_post = time.monotonic()
                elif time.monotonic() - last_post >= self.heartbeat:
                    self._post([], stopping=False)
                    last_post = time.monotonic()
                self.connected = True
            except CollectorUnavailable as e:
                if self.connected or not delay:
                    self.log.warning("jupyter-audit: collector unavailable: %s", e)
                self.connected = False
                self._resume = None
                delay = min(30.0, max(1.0, delay * 2))
            except Exception as e:  # noqa: BLE001 - a bug or a closed trail: retried
                self.log.error("jupyter-audit: forwarding failed: %s", loggable_error(e))
                self._resume = None
                delay = min(30.0, max(1.0, delay * 2))
            self._watch_backlog()
        self._last_flush()

    def _last_flush(self) -> None:
        deadline = getattr(self, "_stop_deadline", time.monotonic() + 5)
        try:
            while time.monotonic() < deadline:
                if not self._step(stopping=True):
                    self._post([], stopping=True)
                    return
        except Exception as e:  # noqa: BLE001 - the next start catches up
            self.log.warning(
                "jupyter-audit: %d events not forwarded before stopping (%s); the next start "
                "forwards them",
                self.backlog,
                loggable_error(e),
            )

    def _watch_backlog(self) -> None:
        over = self.backlog > self.max_backlog
        if over and not self._over:
            self.log.warning(
                "jupyter-audit: the collector lags %d events behind (collector_max_backlog %d)%s",
                self.backlog,
                self.max_backlog,
                "; cells are refused until it catches up" if self.fail_mode == "closed" else "",
            )
        self._over = over

    def _step(self, stopping: bool) -> bool:
        """Send the next batch if the trail holds records the collector lacks; True if sent."""
        self.local_last = int(self.store.trail_stats()["last_seq"] or 0)
        if self._resume is None:
            self._resume = self._resume_point()
            self.acked = self._resume
        if self.local_last <= self._resume:
            return False
        records = self.read_after(self._resume + 1)
        if not records:
            return False
        last = records[-1]["seq"]
        answer = self._post(records, stopping=stopping and last >= self.local_last)
        acked = answer.get("acked")
        if type(acked) is not int or acked != last:
            raise CollectorUnavailable(f"unexpected acknowledgement {acked!r}")
        self._resume = self.acked = acked
        return True

    def _resume_point(self) -> int:
        """The local seq after which to forward: the collector's head for this trail (or
        the local trail's last record, if it now ends before that head: what it records next
        then lands at places already forwarded, which the collector keeps apart as
        rewrites); 0 for a trail the collector does not know (a new stream)."""
        state = self._request("GET", "api/forward/state", None)
        seq = state.get("seq") or 0
        if not seq:
            return 0
        if state.get("trail") != self.store.trail_id:
            self.log.warning(
                "jupyter-audit: the collector knows another trail of this server; forwarding "
                "this one from its start"
            )
            return 0
        resume = min(int(seq), self.local_last)
        cur = self.store.cursor()
        try:
            row = cur.execute("SELECT hash FROM events WHERE seq = ?", [seq]).fetchone()
        finally:
            cur.close()
        if row is None or bytes(row[0]).hex() != state.get("hash"):
            # edited, cut or rewritten since it was forwarded: the collector keeps its copy,
            # and sees the change in what follows (a rewrite or a gap); records edited in
            # place are never sent again (they would not prove themselves)
            self.log.warning(
                "jupyter-audit: the local trail differs from what the collector holds at #%d; "
                "forwarding continues after #%d",
                seq,
                resume,
            )
        return resume

    def read_after(self, first: int) -> list[dict]:
        """The next batch of local records from seq `first`, as the wire carries them."""
        cur = self.store.cursor()
        try:
            # from the next record the trail holds: a hole (rows cut or archived) is skipped,
            # and the collector records the gap, rather than asked for again and again
            (first,) = cur.execute("SELECT min(seq) FROM events WHERE seq >= ?", [first]).fetchone()
            if first is None:
                return []
            out, size = [], 0
            for row in chain_rows(cur, first, first + BATCH_RECORDS - 1):
                text = bytes(row.record).decode("utf-8")
                out.append({"seq": row.seq, "record": text, "hash": bytes(row.hash).hex()})
                size += len(text)
                if size >= BATCH_BYTES:
                    break
            self._identify(cur, out)
            return out
        finally:
            cur.close()

    def _identify(self, cur, records: list[dict]) -> None:
        ids = {json.loads(r["record"]).get("identity_id") for r in records} - {None}
        missing = [i for i in ids if i not in self._identities]
        if missing:
            if len(self._identities) > 10_000:
                self._identities.clear()
            rows = cur.execute(
                "SELECT identity_id, snapshot FROM identities WHERE list_contains(?, identity_id)",
                [missing],
            ).fetchall()
            self._identities.update(rows)
        for r in records:
            identity_id = json.loads(r["record"]).get("identity_id")
            r["identity"] = self._identities.get(identity_id) if identity_id else None

    def _post(self, records: list[dict], stopping: bool) -> dict:
        body = {
            "server": self.server,
            "trail": self.store.trail_id,
            "records": records,
            "backlog": self.backlog,
            "stopping": stopping,
        }
        if self.server is None:
            del body["server"]
        return self._request("POST", "api/forward", body)

    def _request(self, method: str, path: str, body: dict | None) -> dict:
        params = {"server": self.server} if method == "GET" and self.server is not None else None
        return self.client.request(method, path, body, params)
