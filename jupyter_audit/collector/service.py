"""The collector's core: forwarded batches into the trail store, streams, silent servers.

`Collector.ingest` takes a batch already checked (`protocol.parse_batch`) from a server the
Hub named (`hubauth`), plans its notes (`continuity`), prepares every record again through
the store (validation and masking with the collector's key, the record's `origin` inside its
signed bytes), and submits notes and records as one batch; it answers only once the store
committed them. Batches of one server are taken one at a time (a lock per server). It writes
through the `TrailStore` verbs only, so DuckDB (`Writer`) and PostgreSQL (`PgStore`) serve
alike. Silent servers: `tick` records `forward.silent` for a server not heard from for
`silent_after` seconds (unless it said it was stopping), and `forward.resumed` when it is
heard again. Nothing here logs a record's content.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

from ..events import EventValidationError
from ..identity.snapshot import make_snapshot, system_identity
from . import continuity
from .continuity import Head
from .protocol import BadBatch, Batch, to_event

HUB_AUTH_METHOD = "jupyterhub"
# servers one Hub user may forward as (a user's own token may claim any server name of theirs:
# without a bound, one user could make the collector track streams without end)
MAX_SERVERS_PER_USER = 100


def hub_identity(user: dict) -> dict:
    """The identity snapshot of a Hub user model, as the Hub answered for a token."""
    return make_snapshot(
        username=user["name"], groups=user.get("groups") or [], auth_method=HUB_AUTH_METHOD
    )


class Collector:
    def __init__(self, store, recorder, *, silent_after: float = 120.0, log=None):
        self.store = store
        self.recorder = recorder  # server.recorder.Recorder: `record`, rate-limited `reject`
        self.silent_after = silent_after
        self.log = log or logging.getLogger("jupyter_audit.collector")
        self.heads: dict[str, Head] = {
            server: Head(h["trail"], h["seq"], h["hash"])
            for server, h in store.forward_heads().items()
        }
        self.told: dict[str, int] = {}  # server -> the resume seq it was last told
        self.last_start: dict[str, int] = {}  # server -> first seq of its last batch
        self.last_seen: dict[str, float] = {}  # servers heard from since the collector started
        self.stopping: set[str] = set()
        self.silent: dict[str, float] = {}  # server -> when it was last heard before silence
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def lock(self, server: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(server, threading.Lock())

    # ------------------------------------------------------------------ the protocol
    def admits(self, server: str) -> bool:
        """Whether `server` may forward: one the collector knows, or a new one of a user who
        forwards as fewer than MAX_SERVERS_PER_USER servers."""
        if server in self.heads or server in self.last_seen:
            return True
        user = server.partition("/")[0] + "/"
        known = {s for s in (*self.heads, *self.last_seen) if s.startswith(user)}
        return len(known) < MAX_SERVERS_PER_USER

    def state(self, server: str) -> dict:
        """Where `server` resumes: its trail id, last local seq and hash the trail holds."""
        self.heard(server, stopping=False)
        head = self.heads.get(server)
        self.told[server] = head.seq if head else 0
        out = {"server": server, "trail": None, "seq": 0, "hash": None}
        return out | head.as_dict() if head else out

    def ingest(self, server: str, owner: str, batch: Batch, timeout: float = 120) -> dict:
        """Store a checked batch from `server` (as the Hub named it; owned by Hub user
        `owner`); blocking (run it off the event loop). {"acked": last local seq committed,
        "duplicates": n}. Raises BadBatch for a record the store refuses (nothing of the
        batch stored)."""
        with self.lock(server):
            self.heard(server, stopping=batch.stopping)
            head = self.heads.get(server)
            if not batch.records:  # a heartbeat
                acked = head.seq if head and head.trail == batch.trail else 0
                return {"acked": acked, "duplicates": 0}
            notes = continuity.notes_before(server, head, batch)
            # every record prepared again (masked with the collector's key, its origin in
            # its signed bytes): a big batch in the store's prepare workers
            pairs = [to_event(server, owner, batch.trail, rec) for rec in batch.records]
            prepared = self.store.prepare_many(
                [event for event, _ in pairs], origins=[origin for _, origin in pairs]
            )
            items, where = [], []  # prepared events; index of each record among them
            for i, p in enumerate(prepared):
                for note in notes.get(i, ()):
                    kind = "forward.gap" if "got_seq" in note else "forward.rewrite"
                    items.append(self._own(kind, note))
                if isinstance(p, EventValidationError):
                    # the store's words may quote a value (an unknown kind): masked, as the
                    # refusal goes to the log, the server and the trail
                    raise BadBatch(f"records[{i}]: {self.store.masker.mask_text(str(p))}")
                items.append(p)
                where.append(len(items) - 1)
            results = self.store.submit_batch(items).result(timeout=timeout)
            duplicate = [results[j].duplicate for j in where]
            after = continuity.rewrites_after(server, head, batch, duplicate)
            if after:
                self.store.submit_batch([self._own("forward.rewrite", n) for n in after]).result(
                    timeout=timeout
                )
            starts = continuity.resend_starts(
                head, self.told.get(server), self.last_start.get(server)
            )
            replay = continuity.implausible_replay(batch, duplicate, starts)
            self.last_start[server] = batch.records[0].seq
            new = continuity.new_head(head, batch, duplicate)
            if new is not None:
                self.heads[server] = new
            self.told.pop(server, None)
        dupes = sum(duplicate)
        if replay:
            first, last = batch.records[0].seq, batch.records[-1].seq
            self.recorder.reject(
                f"replayed batch: records #{first}..#{last} of trail {batch.trail}, "
                f"{dupes} already held, not sent from where this server resumes; nothing "
                "stored again",
                f"forwarding server {server}",
                address=server,
            )
        return {"acked": batch.records[-1].seq, "duplicates": dupes}

    def _own(self, kind: str, payload: dict):
        return self.store.prepare({"kind": kind, "identity": system_identity(), "payload": payload})

    # ------------------------------------------------------------------ silence
    def heard(self, server: str, *, stopping: bool) -> None:
        now = time.monotonic()
        before = self.silent.pop(server, None)
        if before is not None:
            head = self.heads.get(server)
            self.recorder.record(
                {
                    "kind": "forward.resumed",
                    "identity": system_identity(),
                    "payload": {
                        "server": server,
                        "last_seq": head.seq if head else None,
                        "silent_for_s": int(now - before),
                    },
                }
            )
        self.last_seen[server] = now
        if stopping:
            self.stopping.add(server)
        else:
            self.stopping.discard(server)

    def tick(self) -> None:
        """`forward.silent` for servers not heard from for `silent_after` seconds that did
        not say they were stopping."""
        now = time.monotonic()
        for server, seen in list(self.last_seen.items()):
            if server in self.stopping or server in self.silent:
                continue
            if now - seen < self.silent_after:
                continue
            self.silent[server] = seen
            head = self.heads.get(server)
            last_seen = datetime.now(UTC).timestamp() - (now - seen)
            self.recorder.record(
                {
                    "kind": "forward.silent",
                    "identity": system_identity(),
                    "payload": {
                        "server": server,
                        "last_seq": head.seq if head else None,
                        "last_seen": datetime.fromtimestamp(last_seen, UTC).isoformat(),
                        "silent_for_s": int(now - seen),
                    },
                }
            )
