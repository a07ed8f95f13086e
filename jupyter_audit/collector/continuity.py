"""Each forwarding server's chain continuity, as the collector sees it (pure logic).

A server's stream is its trail id and the last record the collector stored of it (`Head`:
trail, local seq, local hash). A batch continues it when its first record is the next seq
and names the head's hash as its prev_hash. Otherwise, before the record, a note is due:

- `forward.gap`: records are missing (seq past the next one);
- `forward.rewrite`: the record names another prev_hash than the head's hash (the server's
  trail was changed behind the head), or the server's trail id changed (a new trail file).

A record at or behind the head is either a resend the store acknowledges as a duplicate (its
event id is the same) or a different record at a place already forwarded: a rewrite, noted
once the store has told which (`rewrites_after`). The collector always stores what it is sent
and keeps what it had: it never refuses a server forever, never loses an original.

Replays: a batch whose duplicates do not start where a resend starts (`resend_starts`: the
resume point the collector last told the server, the first record of its last batch, the
next record, or seq 1, where a trail starts) is not a plausible resend
(`implausible_replay`): recorded as `security.rejected`, nothing stored again.
"""

from __future__ import annotations

from dataclasses import dataclass

from .protocol import GENESIS_HEX, Batch, Forwarded


@dataclass(frozen=True, slots=True)
class Head:
    trail: str
    seq: int
    hash: str

    def as_dict(self) -> dict:
        return {"trail": self.trail, "seq": self.seq, "hash": self.hash}


def notes_before(server: str, head: Head | None, batch: Batch) -> dict[int, list[dict]]:
    """Index in batch.records -> the `forward.gap` / `forward.rewrite` payloads to record just
    before that record."""
    notes: dict[int, list[dict]] = {}
    trail = batch.trail
    if head is not None and head.trail != trail:
        first = batch.records[0].seq if batch.records else None
        notes.setdefault(0, []).append(
            rewrite(server, trail, first, previous_trail=head.trail, detail="new trail id")
        )
        head = None
    last_seq = head.seq if head else 0
    last_hash = head.hash if head else GENESIS_HEX
    prev: Forwarded | None = None
    for i, rec in enumerate(batch.records):
        if rec.seq <= last_seq:
            prev = rec  # at or behind the head: a duplicate, or a rewrite (`rewrites_after`)
            continue
        if prev is not None and prev.seq == rec.seq - 1 and prev.hash == rec.prev_hash:
            pass  # continues the record before it in this batch
        elif rec.seq > last_seq + 1 or (prev is not None and rec.seq > prev.seq + 1):
            expected = (prev.seq if prev is not None else last_seq) + 1
            notes.setdefault(i, []).append(
                {"server": server, "trail": trail, "expected_seq": expected, "got_seq": rec.seq}
            )
        else:
            expected_hash = prev.hash if prev is not None else last_hash
            if rec.prev_hash != expected_hash:
                notes.setdefault(i, []).append(
                    rewrite(
                        server,
                        trail,
                        rec.seq,
                        expected_hash=expected_hash,
                        got_hash=rec.prev_hash,
                        detail="the record names another previous record than the one "
                        "forwarded before it",
                    )
                )
        prev = rec
    return notes


def rewrite(server: str, trail: str, seq, *, detail: str, **fields) -> dict:
    return {"server": server, "trail": trail, "seq": seq, "detail": detail, **fields}


def rewrites_after(
    server: str, head: Head | None, batch: Batch, duplicate: list[bool]
) -> list[dict]:
    """`forward.rewrite` payloads for records at or behind the head that the store did not
    hold (not duplicates): another record where one was forwarded already."""
    if head is None or head.trail != batch.trail:
        return []
    return [
        rewrite(
            server,
            batch.trail,
            rec.seq,
            got_hash=rec.hash,
            detail="another record at a place already forwarded (the collector keeps both)",
        )
        for rec, dup in zip(batch.records, duplicate, strict=True)
        if rec.seq <= head.seq and not dup
    ]


def new_head(head: Head | None, batch: Batch, duplicate: list[bool]) -> Head | None:
    """The stream's head after the batch: its last record the store did not already hold
    (what `TrailStore.forward_heads` finds after a restart), or one it held beyond the head:
    records archived away with the head and resent after a restart (by a server whose own
    trail may start past #1, or as a replay, which moves only the replayer's own stream),
    which the store holds, so the stream stands there."""
    for rec, dup in zip(reversed(batch.records), reversed(duplicate), strict=True):
        if not dup or head is None or (head.trail == batch.trail and rec.seq > head.seq):
            return Head(batch.trail, rec.seq, rec.hash)
    return head


def resend_starts(head: Head | None, told: int | None, last_start: int | None) -> set[int]:
    """Where a plausible resend starts: seq 1 (a trail from its start), the next record, the
    resume point the collector told the server (`told`: the seq it was told), and the first
    record of the server's last batch (its acknowledgement was lost)."""
    starts = {1, (head.seq + 1) if head else 1}
    starts.update(s for s in ((told + 1) if told is not None else None, last_start) if s)
    return starts


def implausible_replay(batch: Batch, duplicate: list[bool], starts: set[int]) -> bool:
    """Duplicates in a batch that does not start where a resend starts (module docstring)."""
    return bool(batch.records) and any(duplicate) and batch.records[0].seq not in starts
