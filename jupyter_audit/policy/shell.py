"""Shell classification: a command line -> the programs it runs and the built-in rules they
trip (`rm -r`, SQL passed to psql/sqlite3/duckdb/mysql, cloud CLIs deleting resources).

Splits on `;`, `&&`, `||`, `|`, `&` and newlines, looks into `sh -c '…'`, `$(…)` and
backticks, and skips wrappers (`sudo`, `env`, `nohup`, `time`, `xargs`, `timeout`, …). SQL
given to a database client is classified by policy/sql.py and keeps its rule ids; a client
whose SQL the policy cannot see (`psql -f`, a pipe or stdin) is `shell.sql-hidden`. A command
shlex cannot split (an unclosed quote) is read as plain words: it can only add findings.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass

from .sql import Finding, classify


@dataclass(frozen=True, slots=True)
class Program:
    """One simple command: `program` is argv[0]'s base name, `text` the argv joined."""

    program: str
    text: str
    findings: tuple[Finding, ...]


_SEPARATORS = {";", "&&", "||", "|", "&", "|&", ";;", "(", ")", "{", "}", "!"}
_WRAPPERS = {"sudo", "env", "nohup", "time", "nice", "command", "exec", "xargs", "timeout",
             "stdbuf", "ionice", "doas", "watch", "builtin", "busybox"}  # fmt: skip
# reserved words before a command (`if x; then rm -rf y; fi`, `for d in a; do rm -rf $d; done`)
_RESERVED = {"if", "then", "else", "elif", "do", "while", "until", "coproc", "for", "select"}
_SHELLS = {"sh", "bash", "zsh", "dash", "ksh", "ash", "fish"}
_SUBSTITUTION = re.compile(r"\$\(([^()]*)\)|`([^`]*)`")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
MAX_DEPTH = 4


def classify_shell(command: str, depth: int = 0) -> list[Program]:
    out: list[Program] = []
    for m in _SUBSTITUTION.finditer(command):
        if depth < MAX_DEPTH:
            out += classify_shell(m.group(1) or m.group(2) or "", depth + 1)
    for line in command.splitlines() or [""]:
        for argv in _simple_commands(line):
            out.append(_program(argv, depth))
    return out


def _simple_commands(line: str) -> list[list[str]]:
    try:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|(){}!")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words = list(lexer)
    except ValueError:
        words = line.replace(";", " ; ").replace("|", " | ").replace("&", " & ").split()
    commands: list[list[str]] = [[]]
    for w in words:
        if w in _SEPARATORS or set(w) <= set(";&|(){}!"):
            commands.append([])
        else:
            commands[-1].append(w)
    return [c for c in commands if c]


def _strip_wrappers(argv: list[str]) -> list[str]:
    i = 0
    while i < len(argv):
        word = argv[i]
        if _ASSIGNMENT.match(word) or word in _RESERVED:
            i += 1
        elif os.path.basename(word) in _WRAPPERS:
            i += 1
            # the wrapper's own options and their values (sudo -u x, timeout 10, nice -n 5)
            while i < len(argv) and (argv[i].startswith("-") or argv[i].replace(".", "").isdigit()):
                if argv[i] in ("-u", "-g", "-n", "-s", "-k", "-C", "-p") and i + 1 < len(argv):
                    i += 1
                i += 1
        else:
            break
    return argv[i:]


def _program(argv: list[str], depth: int) -> Program:
    argv = _strip_wrappers(argv)
    if not argv:
        return Program("", "", ())
    prog = os.path.basename(argv[0])
    args = argv[1:]
    text = " ".join(argv)
    findings: list[Finding] = []
    lower = [a.lower() for a in args]
    short = "".join(a[1:] for a in args if a.startswith("-") and not a.startswith("--"))
    if prog in _SHELLS and "-c" in args[:3] or (prog in _SHELLS and short.endswith("c")):
        idx = next((k for k, a in enumerate(args) if a.startswith("-") and "c" in a), None)
        if idx is not None and idx + 1 < len(args) and depth < MAX_DEPTH:
            for inner in classify_shell(args[idx + 1], depth + 1):
                findings.extend(inner.findings)
    elif prog == "eval" and depth < MAX_DEPTH:
        for inner in classify_shell(" ".join(args), depth + 1):
            findings.extend(inner.findings)
    elif prog == "rm" and ("r" in short.lower() or any(_recursive(a) for a in lower)):
        findings.append(Finding("shell.rm-recursive", "rm -r deletes whole directory trees"))
    elif prog == "find" and ("-delete" in lower or _exec_rm(args)):
        findings.append(Finding("shell.rm-recursive", "find … -delete deletes files"))
    elif prog in ("psql", "mysql", "mariadb", "sqlite3", "duckdb", "clickhouse-client"):
        findings += _database_client(prog, args)
    elif prog in ("dropdb", "dropuser"):
        findings.append(Finding("schema.drop", f"{prog} drops a database or role"))
    elif prog == "aws":
        if (args[:2] == ["s3", "rm"] and "--recursive" in lower) or args[:2] == ["s3", "rb"]:
            findings.append(Finding("cloud.delete", "aws s3 deletes a bucket or many objects"))
        elif any(a.startswith(("delete-", "terminate-", "remove-", "deregister-")) for a in lower):
            findings.append(Finding("cloud.delete", "aws … delete-* deletes cloud resources"))
    elif prog in ("gcloud", "az"):
        if "delete" in lower or ("storage" in lower and "rm" in lower):
            findings.append(Finding("cloud.delete", f"{prog} … delete deletes cloud resources"))
    elif prog == "gsutil":
        verbs = [a for a in args if not a.startswith("-")][:1]
        if verbs == ["rb"] or (verbs == ["rm"] and "r" in short.lower()):
            findings.append(Finding("cloud.delete", "gsutil rm -r / rb deletes storage"))
    elif prog in ("kubectl", "oc"):
        if "delete" in lower:
            findings.append(Finding("kubernetes.delete", f"{prog} delete removes resources"))
    elif prog == "helm":
        if lower[:1] in (["uninstall"], ["delete"], ["del"], ["un"]):
            findings.append(Finding("kubernetes.delete", "helm uninstall removes a release"))
    elif prog in ("terraform", "tofu", "pulumi"):
        if "destroy" in lower or "-destroy" in lower:
            findings.append(Finding("cloud.delete", f"{prog} destroy deletes infrastructure"))
    return Program(prog, text, tuple(dict.fromkeys(findings)))


def _recursive(arg: str) -> bool:
    # GNU getopt takes any unambiguous prefix of a long option: `rm --rec` is `--recursive`
    return len(arg) >= 3 and "--recursive".startswith(arg)


def _exec_rm(args: list[str]) -> bool:
    return any(a in ("-exec", "-execdir", "-ok", "-okdir") and k + 1 < len(args)
               and os.path.basename(args[k + 1]) == "rm" for k, a in enumerate(args))  # fmt: skip


# options whose next word is SQL, per client; anything else that reads SQL is hidden
_SQL_OPTIONS = {
    "psql": ("-c", "--command"),
    "mysql": ("-e", "--execute"),
    "mariadb": ("-e", "--execute"),
    "clickhouse-client": ("-q", "--query"),
    "duckdb": ("-c", "-cmd", "-s"),
    "sqlite3": ("-cmd",),
}
_HARMLESS = {"--version", "-V", "--help", "-?", "-l", "--list", "-version", "-help"}


def _database_client(prog: str, args: list[str]) -> list[Finding]:
    sql: list[str] = []
    options = _SQL_OPTIONS[prog]
    positional: list[str] = []
    k = 0
    while k < len(args):
        a = args[k]
        name, eq, value = a.partition("=")
        if a in options and k + 1 < len(args):
            sql.append(args[k + 1])
            k += 2
            continue
        if eq and name in options:
            sql.append(value)
        elif a.startswith("-c") and prog == "psql" and len(a) > 2:
            sql.append(a[2:])
        elif not a.startswith("-"):
            positional.append(a)
        k += 1
    if prog in ("sqlite3", "duckdb") and len(positional) > 1:
        sql.extend(positional[1:])  # sqlite3 DB "SQL …"
    if not sql:
        if _HARMLESS & set(args):
            return []
        return [Finding("shell.sql-hidden", f"{prog} runs SQL the policy cannot see (a file "
                                            "or stdin)")]  # fmt: skip
    findings = []
    for text in sql:
        for st in classify(text):
            findings += [Finding(f.rule, f"{prog}: {f.message}", f.tables) for f in st.findings]
    return findings
