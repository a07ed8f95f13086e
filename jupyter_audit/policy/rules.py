"""Configured rules: what a deployment writes in `c.Policy.rules`, checked once at load.

A rule either narrows or re-rates built-in findings (`"rule": "table.drop"`, a glob over
rule ids) or adds a rule of its own (`"id": "acme.no-prod-inserts"`). Both may filter on
statement type, tables (globs), database/DSN (regex), a regex over the statement (or the
shell command, or the URL) and, for HTTP, method and host (glob), and set the action,
`exempt_groups`, `min_approvals` and `force` (keep `review` even where nobody can review).
Unknown keys, actions or bad regexes are refused with a message naming the rule.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from .decision import ACTIONS

KINDS = ("sql", "shell", "http")
_KEYS = {
    "rule", "id", "kind", "message", "action", "statement_type", "tables", "database",
    "regex", "method", "host", "program", "exempt_groups", "min_approvals", "force",
}  # fmt: skip
RULE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)+$")


class RuleError(ValueError):
    """A configured rule that cannot be used (the message names it)."""


@dataclass(frozen=True)
class Rule:
    action: str
    rule: str | None = None  # glob over built-in rule ids this rule re-rates
    id: str | None = None  # id of a rule of the deployment's own
    kind: str = "sql"
    message: str = ""
    statement_types: frozenset[str] = frozenset()
    tables: tuple[str, ...] = ()
    database: re.Pattern | None = None
    regex: re.Pattern | None = None
    methods: frozenset[str] = frozenset()
    hosts: tuple[str, ...] = ()
    programs: frozenset[str] = frozenset()
    exempt_groups: frozenset[str] = frozenset()
    min_approvals: int | None = None
    force: bool = False
    source: dict = field(default_factory=dict, compare=False, hash=False)

    def matches_tables(self, tables: Sequence[str]) -> bool:
        if not self.tables:
            return True
        names = [t.lower() for t in tables]
        names += [n.rsplit(".", 1)[-1] for n in names if "." in n]
        return any(fnmatch.fnmatchcase(n, pat) for n in names for pat in self.tables)

    def matches_sql(self, statement_type: str, tables: Sequence[str], text: str, db: str) -> bool:
        if self.statement_types and statement_type.upper() not in self.statement_types:
            return False
        if not self.matches_tables(tables):
            return False
        if self.database is not None and not self.database.search(db or ""):
            return False
        return self.regex is None or self.regex.search(text) is not None

    def matches_shell(self, program: str, command: str) -> bool:
        if self.programs and program not in self.programs:
            return False
        return self.regex is None or self.regex.search(command) is not None

    def matches_http(self, method: str, host: str, url: str) -> bool:
        if self.methods and method.upper() not in self.methods:
            return False
        if self.hosts and not any(fnmatch.fnmatchcase(host.lower(), h) for h in self.hosts):
            return False
        return self.regex is None or self.regex.search(url) is not None

    def exempts(self, groups: Sequence[str] | frozenset[str]) -> bool:
        return bool(self.exempt_groups) and not self.exempt_groups.isdisjoint(groups)


def parse_rules(raw: Sequence[dict]) -> tuple[Rule, ...]:
    return tuple(parse_rule(r, n) for n, r in enumerate(raw))


def parse_rule(raw: dict, n: int = 0) -> Rule:
    name = f"policy rule #{n + 1}"
    if not isinstance(raw, dict):
        raise RuleError(f"{name}: a rule is a dict, not {type(raw).__name__}")
    if isinstance(raw.get("id") or raw.get("rule"), str):
        name += f" ({raw.get('id') or raw.get('rule')})"
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise RuleError(f"{name}: unknown key(s) {', '.join(unknown)}; known: {sorted(_KEYS)}")
    action = raw.get("action")
    if action not in ACTIONS:
        raise RuleError(f"{name}: action must be one of {', '.join(ACTIONS)}, not {action!r}")
    if ("rule" in raw) == ("id" in raw):
        raise RuleError(f"{name}: give either 'rule' (built-in ids, a glob) or 'id' (a new rule)")
    if "id" in raw and not (isinstance(raw["id"], str) and RULE_ID.match(raw["id"])):
        raise RuleError(f"{name}: id must look like 'group.name' (lower case, dots)")
    if "rule" in raw and not isinstance(raw["rule"], str):
        raise RuleError(f"{name}: rule must be a string")
    kind = raw.get("kind") or (
        "http" if {"method", "host"} & set(raw) else "shell" if "program" in raw else "sql"
    )
    if kind not in KINDS:
        raise RuleError(f"{name}: kind must be one of {', '.join(KINDS)}, not {kind!r}")
    min_approvals = raw.get("min_approvals")
    if min_approvals is not None and (
        not isinstance(min_approvals, int) or isinstance(min_approvals, bool) or min_approvals < 1
    ):
        raise RuleError(f"{name}: min_approvals must be an integer >= 1")
    if not isinstance(raw.get("force", False), bool):
        raise RuleError(f"{name}: force must be true or false")
    message = raw.get("message", "")
    if not isinstance(message, str):
        raise RuleError(f"{name}: message must be a string")
    return Rule(
        action=action,
        rule=raw.get("rule"),
        id=raw.get("id"),
        kind=kind,
        message=message or (f"matches rule {raw['id']}" if "id" in raw else ""),
        statement_types=frozenset(s.upper() for s in _strings(raw, "statement_type", name)),
        tables=tuple(t.lower() for t in _strings(raw, "tables", name)),
        database=_regex(raw, "database", name),
        regex=_regex(raw, "regex", name),
        methods=frozenset(m.upper() for m in _strings(raw, "method", name)),
        hosts=tuple(h.lower() for h in _strings(raw, "host", name)),
        programs=frozenset(_strings(raw, "program", name)),
        exempt_groups=frozenset(_strings(raw, "exempt_groups", name)),
        min_approvals=min_approvals,
        force=raw.get("force", False),
        source=dict(raw),
    )


def _strings(raw: dict, key: str, name: str) -> tuple[str, ...]:
    value = raw.get(key)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise RuleError(f"{name}: {key} must be a string or a list of strings")


def _regex(raw: dict, key: str, name: str) -> re.Pattern | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise RuleError(f"{name}: {key} must be a regular expression (a string)")
    try:
        return re.compile(value)
    except re.error as e:
        raise RuleError(f"{name}: {key} is not a valid regular expression: {e}") from None
