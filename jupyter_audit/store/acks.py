"""Acknowledgements: how the outcome of a commit reaches those who submitted its events.

A submitter holds a `concurrent.futures.Future`. One event (`submit`) gets a plain Future and,
once stored, its `AppendResult`; several (`submit_batch`, `submit_later`) get a `BatchFuture`,
which gathers their results across the commits that store them and resolves, in submission
order, when the last is in. The Writer calls `resolve` after the transaction has committed,
never before: this module carries outcomes and decides none. It must never touch a trail,
nor import anything of a backend.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import Future
from itertools import repeat
from typing import NamedTuple


class AppendResult(NamedTuple):
    """Where an acknowledged event is: its sequence number and chain hash."""

    seq: int
    hash: str
    event_id: str
    duplicate: bool = False  # a client re-sent an event the trail already holds


class BatchFuture(Future):
    """The future of several events: resolves to their AppendResults, in the order they were
    submitted, once every one is stored (they may be committed in more than one round)."""

    def __init__(self, prepared: list | None = None) -> None:
        super().__init__()
        # the events in submission order (for `submit_later`: set once the writer thread has
        # prepared them)
        self.prepared: list | None = prepared
        self.got: dict[int, list[AppendResult]] = {}  # results that came in parts
        self.count = 0  # how many results came in parts


def stored_results(first_seq: int, hashes: list[bytes], ps: list) -> list[AppendResult]:
    """The AppendResults of events `ps`, stored from `first_seq` on with chain `hashes`."""
    # built by tuple.__new__ (C) rather than the NamedTuple's own __new__ (a Python
    # function): a big batch makes thousands
    return list(
        map(
            tuple.__new__,
            repeat(AppendResult),
            zip(
                range(first_seq, first_seq + len(ps)),
                map(bytes.hex, hashes),
                [p.event_id for p in ps],
                repeat(False),
            ),
        )
    )


def resolve(fut: Future, ps: list, results: list[AppendResult]) -> None:
    """A submit's future gets its one result. A BatchFuture resolves once all of its events
    are in, to their results in the order they were submitted (a batch's held client ids
    are acknowledged after the events stored with it)."""
    if type(fut) is not BatchFuture:
        if not fut.done():
            fut.set_result(results[0])
        return
    prepared: list  # None only until the writer thread has prepared a `submit_later` batch
    got, prepared = fut.got, fut.prepared  # type: ignore[assignment]
    if not got and len(results) == len(prepared):  # all at once, in order
        if not fut.done():
            fut.set_result(results)
        return
    for p, r in zip(ps, results, strict=True):
        got.setdefault(id(p), []).append(r)
    fut.count += len(results)
    if fut.count == len(prepared) and not fut.done():
        fut.set_result([got[id(p)].pop(0) for p in prepared])


def fail(futures: Iterable[Future], error: BaseException) -> None:
    """Tell every future not yet resolved that its events were not stored."""
    for fut in futures:
        if not fut.done():
            fut.set_exception(error)
