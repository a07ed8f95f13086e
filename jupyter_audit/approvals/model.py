"""One approval request and the rules of deciding it: who is the same person as whom, who may
decide, what a decision does. Pure data and rules: no trail, no web, no clock of its own.

An `Approval` is only ever changed by `apply`, from a record as the trail stored it (masked,
timestamped), so the state a server holds is the state it would rebuild from the trail.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime

PENDING, APPROVED, DENIED = "pending", "approved", "denied"
EXPIRED, CANCELLED, EXECUTED = "expired", "cancelled", "executed"
STATES = (PENDING, APPROVED, DENIED, EXPIRED, CANCELLED, EXECUTED)
CANCEL_REASONS = ("interrupt", "restart", "shutdown", "died", "server shutdown")
MAX_REASON = 2000


class Refused(Exception):
    """A decision or report the broker does not take: `status` is the HTTP answer (400 bad
    input, 403 not yours to decide, 404 unknown, 409 no longer possible)."""

    def __init__(self, status: int, message: str, role: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.role = role  # a 403 for want of this role (the server says who grants it)


def person_keys(identity: dict | None) -> set[tuple]:
    """What makes an identity a person: their OIDC issuer + subject, their username, their
    email, and the owner and the creator of the service token they used (a token owned by
    alice, named by her email address, acts as alice; so does one alice made for someone
    else)."""
    if not identity:
        return set()
    keys: set[tuple] = set()
    if identity.get("issuer") and identity.get("subject"):
        keys.add(("oidc", identity["issuer"], identity["subject"]))
    # `token_creator` is no snapshot field: the broker adds it (who made the token used)
    for name in (
        identity.get("username"),
        identity.get("token_owner"),
        identity.get("token_creator"),
    ):
        if name:
            keys.add(("user", name))
    for email in (identity.get("email"), identity.get("token_owner")):
        if email and "@" in email:
            keys.add(("email", email.strip().lower()))
    return keys


def same_person(a: dict | None, b: dict | None) -> bool:
    """True when two identities may be one person (any key shared). Unknown counts as the
    same: an identity without keys can approve nothing."""
    ka, kb = person_keys(a), person_keys(b)
    return not ka or not kb or bool(ka & kb)


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Approval:
    id: int
    requester: dict
    operation: str
    statement: str  # masked, as the trail stores it
    statement_sha256: str  # of the original text
    params_sha256: str | None  # of the original parameters
    reasons: list
    rules: list
    min_approvals: int
    requested_at: str
    expires_at: str
    driver: str | None = None
    database: str | None = None
    kernel_id: str | None = None
    trace_id: str | None = None
    session_id: str | None = None
    notebook: str | None = None
    msg_id: str | None = None
    cell_code: str | None = None
    state: str = PENDING
    reason: str | None = None  # why it ended (the deciding reviewer's, or the cancellation)
    decisions: list = field(default_factory=list)
    executed: dict | None = None
    seq: int = 0  # of its approval.requested
    params: list | dict | None = None  # masked, as the trail stores op.sql's
    # set by the broker: no one but the requester can decide here (a rule forced review
    # where review is not possible), so the request can only expire
    undecidable: bool = False

    # ------------------------------------------------------------------ reading
    @property
    def decided_by(self) -> list[str]:
        return [d["reviewer"] for d in self.decisions if d["decision"] in ("approve", "deny")]

    def expired_at(self, now: datetime) -> bool:
        return self.state == PENDING and now >= parse_time(self.expires_at)

    def headline(self) -> str:
        return "; ".join(r.get("message", r.get("rule", "")) for r in self.reasons) or "review"

    def message(self) -> str:
        """The live status the waiting cell shows."""
        who = self.requester.get("username") or "?"
        asked = parse_time(self.requested_at).strftime("%H:%M")
        if self.state == PENDING:
            need = self.min_approvals - self.approvals()
            more = f" ({need} more approvals needed)" if self.approvals() and need > 0 else ""
            if self.undecidable:
                until = parse_time(self.expires_at).strftime("%H:%M")
                return (
                    f"waiting for approval #{self.id}: {self.headline()}, asked {asked} by "
                    f"{who}; no one here can decide it (review is not enabled: no reviewer "
                    f"groups from an identity provider, nor break-glass groups), so it will "
                    f"not run and expires at {until}"
                )
            return (
                f"waiting for approval #{self.id}: {self.headline()}, asked {asked} by {who}{more}"
            )
        by = ", ".join(self.decided_by)
        why = f": {self.reason}" if self.reason else ""
        if self.state in (APPROVED, DENIED):
            return f"request #{self.id} {self.state} by {by}{why}"
        if self.state == EXECUTED:
            return f"request #{self.id} approved by {by} and executed"
        return f"request #{self.id} {self.state}{why}"

    def approvals(self) -> int:
        return sum(1 for d in self.decisions if d["decision"] == "approve")

    def to_json(self) -> dict:
        """The user REST shape (shared/DESIGN.md): raw (masked) strings, for JSON."""
        return {
            "id": self.id,
            "state": self.state,
            "requester": self.requester.get("username"),
            "statement": self.statement,
            "params": self.params,
            "reasons": self.reasons,
            "rules": self.rules,
            "kind": self.operation,
            "driver": self.driver,
            "database": self.database,
            "notebook": self.notebook,
            "cell_code": self.cell_code,
            "kernel_id": self.kernel_id,
            "msg_id": self.msg_id,
            "requested_at": self.requested_at,
            "expires_at": self.expires_at,
            "decisions": [
                {k: d[k] for k in ("reviewer", "decision", "reason", "time", "break_glass")}
                for d in self.decisions
            ],
            "min_approvals": self.min_approvals,
            "reason": self.reason,
            "message": self.message(),
            "executed": self.executed,
        }

    def status_json(self) -> dict:
        """What the kernel waiting on it reads."""
        return {
            "id": self.id,
            "state": self.state,
            "reason": self.reason,
            "decided_by": self.decided_by,
            "message": self.message(),
        }

    # ------------------------------------------------------------------ deciding
    def judge(
        self,
        identity: dict,
        *,
        reviewer: bool,
        break_glass: bool,
        decision: object,
        reason: object,
        requester: dict | None = None,
    ) -> tuple[str, bool]:
        """Check one person's decision against the rules; (new state, break-glass used), or
        Refused. The requester never decides their own request, whatever their roles.
        `requester` stands in for the stored requester with what the broker knows more
        (the creator of the token it used)."""
        if decision not in ("approve", "deny"):
            raise Refused(400, 'decision must be "approve" or "deny"')
        if reason is not None and not isinstance(reason, str):
            raise Refused(400, "reason must be a string")
        if reason is not None and len(reason) > MAX_REASON:
            raise Refused(400, f"reason is longer than {MAX_REASON} characters")
        if same_person(requester or self.requester, identity):
            raise Refused(
                403,
                f"request #{self.id} is your own: the requester can never decide their own "
                "request (admins included); another reviewer must decide",
            )
        if not reviewer and not break_glass:
            raise Refused(403, "deciding approvals needs the reviewer role", role="reviewer")
        if self.state != PENDING:
            raise Refused(409, f"request #{self.id} is no longer pending: it is {self.state}")
        if any(person_keys(d.get("identity")) & person_keys(identity) for d in self.decisions):
            raise Refused(409, f"you have already decided request #{self.id}")
        if decision == "deny":
            used = break_glass and not reviewer
            state = DENIED
        else:
            enough = self.approvals() + 1 >= self.min_approvals
            used = break_glass and (not reviewer or not enough)
            state = APPROVED if enough or used else PENDING
        if used and not says_something(reason or ""):
            raise Refused(
                400, "a break-glass decision needs a reason (visible text, not only spaces)"
            )
        return state, used

    # ------------------------------------------------------------------ the trail
    @classmethod
    def from_record(cls, record: dict, identity: dict) -> Approval:
        p = record["payload"]
        return cls(
            id=int(p["request_id"]),
            requester=identity,
            operation=p.get("operation") or "sql",
            statement=p.get("statement") or "",
            statement_sha256=p.get("statement_sha256") or "",
            params_sha256=p.get("params_sha256"),
            reasons=list(p.get("reasons") or []),
            rules=list(p.get("rules") or []),
            min_approvals=max(1, int(p.get("min_approvals") or 1)),
            requested_at=record["time"],
            expires_at=p.get("expires_at") or record["time"],
            driver=p.get("driver"),
            database=p.get("database"),
            kernel_id=record.get("kernel_id"),
            trace_id=record.get("trace_id"),
            session_id=record.get("session_id"),
            notebook=record.get("notebook"),
            msg_id=record.get("msg_id"),
            seq=int(record.get("seq") or 0),
            params=p.get("params") if isinstance(p.get("params"), list | dict) else None,
        )

    def apply(self, record: dict, identity: dict | None) -> None:
        """A stored `approval.decided` or `approval.executed` record of this request."""
        p = record["payload"]
        if record["kind"] == "approval.executed":
            self.state = EXECUTED
            self.executed = {
                "rowcount": p.get("rowcount"),
                "error": p.get("error"),
                "time": record["time"],
            }
            return
        decision = p["decision"]
        if decision in ("approve", "deny"):
            self.decisions.append(
                {
                    "reviewer": p.get("reviewer"),
                    "decision": decision,
                    "reason": p.get("reason"),
                    "time": record["time"],
                    "break_glass": bool(p.get("break_glass")),
                    "identity": identity,
                }
            )
        state = p.get("state")
        if state in STATES:
            self.state = state
        elif decision in (EXPIRED, CANCELLED):
            self.state = decision
        if self.state != PENDING:
            self.reason = p.get("reason")


# letters, symbols and marks that draw nothing: Unicode's default-ignorable ones (the Hangul
# fillers, the combining grapheme joiner, Khmer's inherent vowels, variation selectors…)
# and the Braille blank
_BLANK = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u2800\u3164\ufe00-\ufe0f\uffa0"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)


def says_something(text: str) -> bool:
    """Whether `text` has a character that draws something: a letter, digit, punctuation
    or symbol, not only spaces, line breaks, zero-width, bidi, other format and control
    characters, lone combining marks or blank letters (`_BLANK`): a break-glass reason of
    U+200B or U+3164 alone would read as none in every listing."""
    return any(
        not unicodedata.category(ch).startswith(("Z", "C", "M")) and not _BLANK.match(ch)
        for ch in text
    )
