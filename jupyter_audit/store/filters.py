"""Filters on the trail's records as users write them (REST query parameters, CLI flags)."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_time(raw: str) -> datetime:
    """ISO 8601 date or date-time; naive values are UTC."""
    text = raw.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
