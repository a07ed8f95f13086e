"""The read verbs of `base.TrailStore` every backend answers with the same read modules
(`queries`, `trail`), on the connection its `cursor()` hands out: a DuckDB cursor, or a
PostgreSQL trail's `pg.connection.PortableCursor`. Read side: it never writes and never
imports a writer.
"""

from __future__ import annotations

from . import forwarded, queries, trail


class CursorReads:
    """Listings, timelines, counts and the newest event of a kind, over `self.cursor()`."""

    def cursor(self):  # pragma: no cover - the backend's
        raise NotImplementedError

    def trail_stats(self) -> dict:
        return queries.trail_stats(self.cursor())

    def latest_payload(self, kind: str) -> dict | None:
        return trail.latest_payload(self.cursor(), kind)

    def list_traces(
        self, *, username=None, limit: int = 100, before_seq=None, trace_prefixes=None
    ) -> list[dict]:
        return queries.list_traces(
            self.cursor(),
            username=username,
            limit=limit,
            before_seq=before_seq,
            trace_prefixes=trace_prefixes,
        )

    def get_trace_summary(self, trace_id: str) -> dict | None:
        return queries.get_trace_summary(self.cursor(), trace_id)

    def get_trace_events(self, trace_id: str, limit: int = 10_000) -> list[dict]:
        return queries.get_trace_events(self.cursor(), trace_id, limit=limit)

    def forward_heads(self) -> dict[str, dict]:
        return forwarded.forward_heads(self.cursor())
