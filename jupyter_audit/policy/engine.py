"""Policy: built-in findings + configured rules -> one Decision per operation.

Configured as `c.Policy.*` (rules, default_action, min_approvals); `review_possible` is set
by the server: True only where someone other than the requester can decide (an identity
provider that supplies groups and a non-empty `c.AuditApp.reviewer_groups`). Where it is
False a `review` becomes `warn` and says how to enable review, unless the rule that asked for
it has `"force": true`; `deny` stays. Thread-safe; decisions are cached per input (a bounded
cache, emptied when any trait changes). Pure: no web, no trail.
"""

from __future__ import annotations

import fnmatch
import threading
import urllib.parse
from collections.abc import Callable, Sequence

from traitlets import Bool, Enum, Int, List, TraitError, observe, validate
from traitlets.config import LoggingConfigurable

from ..kernel.prefilter import might_write
from .decision import SEVERITY, Decision, Reason
from .rules import Rule, RuleError, parse_rules
from .shell import classify_shell
from .sql import Finding, classify

REVIEW_HINT = (
    "review is not enabled here, so this only warns: to have a reviewer approve such "
    "operations, log in through an identity provider that supplies groups (OIDC or "
    "JupyterHub) and set c.AuditApp.reviewer_groups"
)
_ALLOW = Decision("allow")
_NO_GROUPS: frozenset[str] = frozenset()


class Policy(LoggingConfigurable):
    rules: List[dict] = List(
        config=True,
        help="""Rules in order, each a dict. Re-rate built-in findings with "rule" (a rule
        id or glob: "table.drop", "statement.*") or add one with "id"; filter with
        statement_type, tables (globs), database (regex over the database/DSN), regex (over
        the statement, command or URL), method and host (HTTP), program (shell); set
        "action" (allow, warn, review, deny), exempt_groups, min_approvals and force.
        The first matching "rule" entry rates a finding; every matching "id" entry adds a
        reason. See docs/policy.md.""",
    )
    default_action = Enum(
        ["warn", "review", "deny"],
        default_value="review",
        config=True,
        help="Action of a built-in finding no configured rule re-rates.",
    )
    min_approvals = Int(
        1, min=1, config=True, help="Approvals a review needs unless its rule says otherwise."
    )
    review_possible = Bool(
        False,
        config=True,
        help="""Set by the server: whether someone other than the requester can decide
        (groups from the identity provider and c.AuditApp.reviewer_groups set). When False,
        review becomes warn unless the rule forces it.""",
    )
    cache_size = Int(4096, min=0, config=True, help="Decisions kept per kind of operation.")

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._lock = threading.Lock()
        self._cache: dict[tuple, Decision] = {}
        self._parsed: tuple[Rule, ...] = parse_rules(self.rules)

    @validate("rules")
    def _validate_rules(self, proposal):
        try:
            parse_rules(proposal["value"])
        except RuleError as e:
            raise TraitError(str(e)) from None
        return proposal["value"]

    @observe("rules", "default_action", "min_approvals", "review_possible")
    def _changed(self, change) -> None:
        if change["name"] == "rules":
            self._parsed = parse_rules(change["new"])
        if hasattr(self, "_lock"):
            with self._lock:
                self._cache.clear()

    # ------------------------------------------------------------------ public
    def check_sql(
        self, statement: str, *, groups: Sequence[str] = (), database: str | None = None
    ) -> Decision:
        """The decision for a SQL string (all its statements)."""
        key = ("sql", statement, frozenset(groups) if groups else _NO_GROUPS, database)
        return self._cached(key, lambda: self._sql(statement, key[2], database or ""))

    def check_shell(self, command: str, *, groups: Sequence[str] = ()) -> Decision:
        key = ("shell", command, frozenset(groups) if groups else _NO_GROUPS)
        return self._cached(key, lambda: self._shell(command, key[2]))

    def check_http(self, method: str, url: str, *, groups: Sequence[str] = ()) -> Decision:
        key = ("http", method.upper(), url, frozenset(groups) if groups else _NO_GROUPS)
        return self._cached(key, lambda: self._http(method.upper(), url, key[3]))

    # ------------------------------------------------------------------ internals
    def _cached(self, key: tuple, compute: Callable[[], Decision]) -> Decision:
        cache = self._cache
        hit = cache.get(key)
        if hit is not None:
            return hit
        try:
            decision = compute()
        except Exception as e:  # noqa: BLE001 - fail closed, never let a check raise
            self.log.error("policy check failed (%s); failing closed", type(e).__name__)
            finding = Finding("statement.unparsed", "the policy could not classify this")
            decision = self._decide([self._rate(finding, lambda r: True)], _NO_GROUPS)
        with self._lock:
            if len(cache) >= self.cache_size:
                cache.clear()
            if self.cache_size:
                cache[key] = decision
        return decision

    def _sql(self, text: str, groups: frozenset[str], database: str) -> Decision:
        rated: list[tuple[Reason, Rule | None]] = []
        custom = [r for r in self._parsed if r.id and r.kind == "sql"]
        if not custom and not might_write(text):
            # no built-in rule can match without a write word (the kernel's own test): skip
            # the lexer, ~100x faster for the reads that reach the server anyway
            return _ALLOW
        for st in classify(text):
            for f in st.findings:
                tables = f.tables or st.tables

                def match(r: Rule, st=st, tables=tables) -> bool:
                    return r.matches_sql(st.statement_type, tables, st.text, database)

                rated.append(self._rate(f, match))
            for r in custom:
                if r.matches_sql(st.statement_type, st.tables, st.text, database):
                    rated.append((Reason(r.id or "", r.message, r.action, st.tables), r))
        return self._decide(rated, groups)

    def _shell(self, command: str, groups: frozenset[str]) -> Decision:
        rated: list[tuple[Reason, Rule | None]] = []
        custom = [r for r in self._parsed if r.id and r.kind == "shell"]
        for prog in classify_shell(command):
            for f in prog.findings:

                def match(r: Rule, prog=prog) -> bool:
                    return r.matches_shell(prog.program, command)

                rated.append(self._rate(f, match))
            for r in custom:
                if r.matches_shell(prog.program, command):
                    rated.append((Reason(r.id or "", r.message, r.action), r))
        return self._decide(rated, groups)

    def _http(self, method: str, url: str, groups: frozenset[str]) -> Decision:
        try:
            host = _host(urllib.parse.urlsplit(url).hostname or "")
        except ValueError:
            host = ""
        rated: list[tuple[Reason, Rule | None]] = []
        for r in self._parsed:
            if r.id and r.kind == "http" and r.matches_http(method, host, url):
                rated.append((Reason(r.id, r.message, r.action), r))
        return self._decide(rated, groups)

    def _rate(self, f: Finding, match: Callable[[Rule], bool]) -> tuple[Reason, Rule | None]:
        for r in self._parsed:
            if r.rule and fnmatch.fnmatchcase(f.rule, r.rule) and match(r):
                return Reason(f.rule, f.message, r.action, f.tables), r
        return Reason(f.rule, f.message, self.default_action, f.tables), None

    def _decide(self, rated: list[tuple[Reason, Rule | None]], groups: frozenset[str]) -> Decision:
        reasons: dict[Reason, None] = {}  # ordered, and deduplicated in O(1)
        need = 1
        for reason, rule in rated:
            if rule is not None and rule.exempts(groups):
                continue
            if reason.action == "review" and not self.review_possible:
                if not (rule is not None and rule.force):
                    reason = Reason(
                        reason.rule, f"{reason.message} ({REVIEW_HINT})", "warn", reason.tables
                    )
            if reason.action == "allow" or reason in reasons:
                continue
            if reason.action == "review":
                want = rule.min_approvals if rule and rule.min_approvals else None
                need = max(need, want or self.min_approvals)
            reasons[reason] = None
        if not reasons:
            return _ALLOW
        action = max((r.action for r in reasons), key=SEVERITY.__getitem__)
        return Decision(action, tuple(reasons), need if action == "review" else 1)


def _host(host: str) -> str:
    """The host a client connects to, as rules name it: IDNA-mapped as clients map it
    (`api。prod。example。com` and full-width letters reach api.prod.example.com through httpx),
    lower case, without the trailing dot of an absolute name (`api.prod.example.com.`)."""
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            pass
    return host.lower().rstrip(".")
