"""The storage interface: what callers (server, CLI, demo, tests) may ask of a trail.

`TrailStore` names the verbs; a backend implements them: today the DuckDB `writer.Writer`, a
PostgreSQL one later, without a caller changing. Write side: `prepare`/`prepare_many`
(validate and mask now), `submit`/`submit_batch`/`submit_later` (queue, a future for the
outcome), `append`/`append_many` (submit and wait), `checkpoint`, `flush`, `rotate_key`,
`open`/`close` (or `with`). Read side: `trail_stats`, `list_traces`, `get_trace_summary`,
`get_trace_events`, `forward_heads` (a collector's), `verify`, `build_bundle`, and `cursor`
for the backend's own read modules.
Attributes: `masker` (the masking engine it applies), `trail_id`, `integrity` (the
`verify.VerifyResult` of the check run when the trail was opened, or None).

What every backend must guarantee:

- Acknowledged = committed. A future resolves to its AppendResults only once the transaction
  that stores its events has committed (durably, as the backend's commit is); if that fails,
  the future gets a `errors.TrailWriteError` and nothing of the transaction is stored: no
  event is ever acknowledged and then lost, none half stored.
- Order. Stored events get gap-free, strictly increasing sequence numbers (from 1) in the
  order the store takes them; a batch's events keep the order they were submitted in, and
  its AppendResults come back in that order. A trail's sequence numbers are never reused,
  even after its tail was cut (the high-water mark keeps the gap visible).
- Chain. Each record's canonical bytes (`records.Prepared`, `canonical`) name the previous
  record's hash; its hash is sha256(previous hash + record) from `canonical.GENESIS_HASH`, its
  Merkle leaf sha256(0x00 + record). The high-water mark (last sequence number and hash, the
  Merkle frontier) is stored in the same transaction as the records it covers. No log record
  is ever updated or deleted.
- Exactly once for client-chosen event ids: an id the trail holds is acknowledged with its
  first record (`duplicate=True`), not stored again.
- Masked. Every event passes `records.prepare` (validation, capping, masking) before it is
  stored; nothing unmasked is stored.
- Signed checkpoints (`checkpoints`) are recorded in the trail and appended to the checkpoint
  files every `checkpoint_every` events or `checkpoint_interval` seconds, on request and on
  close; `verify` checks them, the chain and the identity snapshots, and reports the first
  damaged record.

This module holds no storage code: it must never import a backend, a database driver, or
anything that pulls in the server.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from concurrent.futures import Future

    from .acks import AppendResult
    from .records import Prepared
    from .signing import SigningKey
    from .verify import VerifyResult


class TrailStore(ABC):
    """One trail, opened for writing by one server (see the module docstring)."""

    masker: object
    trail_id: str
    integrity: VerifyResult | None

    # ------------------------------------------------------------------ lifecycle
    @abstractmethod
    def open(self) -> TrailStore:
        """Open (creating if needed) and verify the trail; start taking submissions."""

    @abstractmethod
    def close(self, checkpoint: bool = True) -> None:
        """Store what was submitted, sign a last checkpoint (unless told not to), release."""

    def __enter__(self) -> TrailStore:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ write side
    @abstractmethod
    def prepare(
        self, event: dict, *, event_id: str | None = None, origin: dict | None = None
    ) -> Prepared:
        """Validate and mask one event now (raises EventValidationError); `event_id`: an id
        chosen for it ahead of time; `origin`: where a record forwarded to a collector was
        first recorded (`records.ORIGIN_FIELDS`), which its canonical bytes then carry."""

    @abstractmethod
    def prepare_many(
        self, events: list, event_ids: list | None = None, origins: list | None = None
    ) -> list:
        """A Prepared or the EventValidationError for each event, in order; `event_ids`,
        `origins`: one per event, as for `prepare`."""

    @abstractmethod
    def submit(self, event: dict | Prepared) -> Future:
        """Queue one event; the future resolves to its AppendResult once committed."""

    @abstractmethod
    def submit_batch(self, events) -> Future:
        """Queue several events (all validated now, or none queued); the future resolves to
        their AppendResults, in order, once the last of them is committed."""

    @abstractmethod
    def submit_later(self, events: list, event_ids: list, fallback=None) -> Future:
        """Queue raw events that the store validates and masks itself just before storing
        them; one that fails is replaced by `fallback(event, error)`, or logged and dropped.
        The future resolves to the AppendResults of the events stored, in order."""

    def append(self, event: dict, timeout: float | None = 60) -> AppendResult:
        """Submit one event and wait until it is committed."""
        return self.submit(event).result(timeout=timeout)

    def append_many(self, events, timeout: float | None = 120) -> list[AppendResult]:
        """Submit events one by one and wait until all are committed."""
        futs = [self.submit(e) for e in events]
        return [f.result(timeout=timeout) for f in futs]

    @abstractmethod
    def checkpoint(self) -> Future:
        """Ask for a signed checkpoint now; resolves to its body (None: empty trail)."""

    @abstractmethod
    def flush(self, timeout: float = 60) -> None:
        """Wait until everything submitted before this call is committed."""

    @abstractmethod
    def rotate_key(self, new_key: SigningKey) -> AppendResult:
        """The current key signs a `key.rotated` event naming `new_key`, which signs from
        then on."""

    @abstractmethod
    def record_archived(self, payload: dict, identity: dict) -> AppendResult:
        """A `trail.archived` event for `identity` whose payload the current key signs
        (`archived_message`): only a signed one lets records leave the live trail."""

    def plan_archive(
        self, cur, after_seq: int, older_than, segment_rows: int, frontier=None
    ) -> list:
        """The sealed segments after `after_seq` whose last record is older than
        `older_than` (`archive.Segment`s, each ending at a signed checkpoint), for
        `archiver.run_archive`: by default groups of checkpoints of about `segment_rows`
        records (`archive.plan_segments`); a PostgreSQL trail's are its partitions.
        `frontier`: the Merkle frontier of records 1..`after_seq` (checked by the caller),
        for a backend that signs the segments' checkpoints itself."""
        from .archive import plan_segments

        return plan_segments(cur, after_seq, older_than, segment_rows)

    @abstractmethod
    def compact(self, keep_after: int, timeout: float | None = None) -> None:
        """Remove the records up to `keep_after`, which an archive holds and signed
        `trail.archived` events record, from the live trail (the one exception to
        append-only; `archiver.run_archive` calls it)."""

    # ------------------------------------------------------------------ read side
    @abstractmethod
    def cursor(self):
        """A read connection for the calling thread, in the backend's own SQL dialect (for
        its read modules; other callers use the verbs below)."""

    @abstractmethod
    def trail_stats(self) -> dict:
        """{"events": how many, "last_seq": the last sequence number}."""

    @abstractmethod
    def latest_payload(self, kind: str) -> dict | None:
        """The payload of the newest event of `kind` (None: there is none)."""

    @abstractmethod
    def list_traces(
        self,
        *,
        username: str | None = None,
        limit: int = 100,
        before_seq=None,
        trace_prefixes: tuple[str, ...] | None = None,
    ) -> list[dict]:
        """Newest traces first; with `username`, only those that user took part in; with
        `trace_prefixes`, only traces whose id starts with one of them."""

    @abstractmethod
    def get_trace_summary(self, trace_id: str) -> dict | None:
        """One trace's row and users, or None."""

    @abstractmethod
    def get_trace_events(self, trace_id: str, limit: int = 10_000) -> list[dict]:
        """A trace's records, decoded from the signed bytes, in order."""

    @abstractmethod
    def forward_heads(self) -> dict[str, dict]:
        """For a collector's trail: for each origin `server`, its newest forwarded record by
        sequence number, as `{"trail", "seq", "hash"}` from the record's `origin` (where that
        server's stream stands; `forwarded.forward_heads`). Empty for a server's own trail."""

    @abstractmethod
    def verify(self, *, trusted_keys=None, deep: bool = False) -> VerifyResult:
        """Check the chain, the identity snapshots and the signed checkpoints (in the trail
        and in its checkpoint files) now, as of one moment while appends go on."""

    @abstractmethod
    def build_bundle(self, **filters) -> dict:
        """The records matching `filters` (`queries.export_filter`), the newest signed
        checkpoint and an inclusion proof for each record it covers (call `checkpoint`
        first for one that covers everything)."""
