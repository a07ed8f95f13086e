"""Secrets by their name: `is_secret_name` and the recognizer of assigned secrets.

``password = "hunter2"``, ``"client_secret": "..."``, ``--token x``, ``Authorization: ...``:
the value is a secret because of the name it is given. Only the value is masked; the name
and the separator stay, so a reader sees what was set. This module must never mask a name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .base import SECRET, Recognizer
from .context import Context

# A name is secret when, lowercased with separators removed (and neutral trailing words such as
# "value" or "prod" dropped), it ends with one of these ...
_KEY_QUALIFIERS = (
    "api", "access", "private", "secret", "account", "master", "encryption", "signing",
    "session", "subscription", "client", "app", "auth", "shared", "storage", "license",
    "consumer", "service", "webhook", "admin",
)  # fmt: skip
SECRET_NAME_SUFFIXES = (
    "password", "passwords", "passwd", "passphrase", "pwd", "secret", "secrets", "token",
    "authorization", "auth", "credential", "credentials", "creds", "cookie", "cookies",
    "sessionid", "sessid", "signature", "privkey",
) + tuple(q + "key" for q in _KEY_QUALIFIERS)  # fmt: skip
# ... or when its last word is one of these ...
SECRET_NAME_WORDS = frozenset({"pass", "pw", "sig"})
# ... unless it ends with one of these (tokenizer special tokens are not secrets).
NOT_SECRET_SUFFIXES = (
    "eostoken", "bostoken", "padtoken", "unktoken", "septoken", "clstoken", "masktoken",
    "nostoken", "startoken",
)  # fmt: skip
_NEUTRAL_WORDS = frozenset(
    """value val str string text txt raw b64 base64 hex plain plaintext clear cleartext bytes
    data enc encoded hash hashed env var header headers hdr literal input new old orig original
    current cur tmp temp default prod production dev development staging stage test testing
    local live qa sandbox""".split()
)
_NAME_SPLIT = re.compile(r"[^a-z0-9]+")
_name_cache: dict[str, bool] = {}


def is_secret_name(name: str) -> bool:
    """True when a key / variable / header / parameter name denotes a secret.

    ``password``, ``DB_PASSWORD``, ``PGPASSWORD``, ``X-Api-Key``, ``clientSecret``,
    ``session_id``, ``Authorization``, ``--token``, ``secret_value`` -> True;
    ``token_id``, ``auth_method``, ``tokenizer``, ``max_tokens``, ``password_file``,
    ``eos_token`` -> False.
    """
    cached = _name_cache.get(name)
    if cached is not None:
        return cached
    result = False
    if len(name) <= 128:
        words = [w for w in _NAME_SPLIT.split(name.lower()) if w]
        while words and (words[-1] in _NEUTRAL_WORDS or words[-1].isdigit()):
            words.pop()
        if words:
            if words[-1] in SECRET_NAME_WORDS:
                result = True
            else:
                squashed = "".join(words).rstrip("0123456789")
                result = squashed.endswith(SECRET_NAME_SUFFIXES) and not squashed.endswith(
                    NOT_SECRET_SUFFIXES
                )
    if len(_name_cache) > 8192:
        _name_cache.clear()
    _name_cache[name] = result
    return result


# Every secret name contains one of these stems (token, key, cookie / pass, pw / secret, sess,
# sig / auth / cred). Each regex starts with a literal, so ``re`` scans for it at C speed.
_STEMS = tuple(
    re.compile(p)
    for p in (
        rb"k(?:ey|en|ie)",
        rb"p(?:ass(?:w|p|(?![a-z]))|w)",  # not "passenger"
        rb"s(?:ecret|ess(?:ion)?[_-]?(?:id|key)|ig(?:nature)?(?![a-z]))",  # not "signup"
        rb"auth",
        rb"cred(?:s|ential)",  # not "credit"
    )
)
_NAME_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_.-")
_NAME_FWD = re.compile(rb"[a-z0-9_.\-]{0,128}")

_SCHEME = r"(?:(?i:bearer|basic|token|digest|bot|negotiate|ntlm|jwt|apikey|sswss)[ \t]+)?+"
_STR_PREFIX = r"(?:[rRbBuUfF]{1,2}(?=[\"']))?+"
# an opening quote that is not the closing quote of a prompt: "Password: ")
_OPEN_Q = r"(?![ \t]*(?:[),;+\]}%\r\n\x00]|\Z))"
# what follows the name: closing quote of a quoted name, then a separator
_SEP = r"""
    (?:\\?["'](?:[ \t]*\])?)?                                            # "NAME"] (subscript)
    (?>                                                                  # atomic: no retry
        [ \t]*:[ \t]*[A-Za-z_][\w.\[\], |]{0,60}?[ \t]+=(?![=>])[ \t]*   # name: type = value
      | [ \t]*(?:=>|[=!]=|:=|[=:])[ \t]*                                 # = : == != := =>
      | [ \t]+(?=[rRbBuUfF]{0,2}\\?["'])                                 # SQL: PASSWORD 'x'
      | (?<=["'])[ \t]*(?P<comma>,)[ \t]*(?=[rRbBuUfF]{0,2}["'])          # ("NAME", "x")
    )
"""
# the value; exactly one of the named groups matches
_VALUE = rf"""
    (?:
        \\"{_SCHEME}(?P<e>(?:[^"\\\n\x00]|\\(?!"))*+)                   # \"escaped\"
      | \\'{_SCHEME}(?P<f>(?:[^'\\\n\x00]|\\(?!'))*+)
      | {_STR_PREFIX}\"\"\"(?P<t>(?:[^"\\\x00]|\\[^\n\x00]|"(?!""))*+)     # triple quotes
      | {_STR_PREFIX}'''(?P<r>(?:[^'\\\x00]|\\[^\n\x00]|'(?!''))*+)
      | {_STR_PREFIX}"{_OPEN_Q}{_SCHEME}(?P<d>(?:[^"\\\n\x00]|\\[^\n\x00])*+)
      | {_STR_PREFIX}'{_OPEN_Q}{_SCHEME}(?P<s>(?:[^'\\\n\x00]|\\[^\n\x00])*+)
      | \{{(?P<b>[^}}\n\x00]*+)                                          # ODBC {{...}}, dicts
      | \((?P<p>[^()\n\x00]*+)\)                                         # ("user", "pass")
      | (?P<c>[A-Za-z_][\w.]*+)\((?P<a>[^()\n\x00]*+)\)                  # call("...")
      | {_SCHEME}(?![=:]|[rRbBuUfF]{{1,2}}["'])                             # unquoted
        (?P<u>[^\s"'`,;&(){{}}\[\]<>\\\x00]++)(?![(\[])
    )
"""
_ASSIGN_TAIL = re.compile(_SEP + _VALUE, re.X)
_CLI_TAIL = re.compile(r"(?:[ \t]+|=)" + _VALUE, re.X)  # --password hunter2
_LINE_REST = re.compile(r"[^\r\n\"'\\\x00]*")
_VALUE_GROUPS = ("e", "f", "t", "r", "d", "s", "b", "p", "a", "u")
_NOT_VALUES = frozenset(
    "none null true false nil undefined nan yes no on off required optional str bytes".split()
)
# calls whose arguments name where a secret comes from rather than the secret itself
_SAFE_CALLS = frozenset(
    """getpass getenv get input get_password get_secret getsecret read read_text load loads
    open environ prompt ask secret_from_env from_env lookup fetch""".split()
)
_LINE_VALUE_SUFFIXES = ("cookie", "cookies", "authorization")
# an unquoted value that names where the value comes from: SQL placeholders ($1, %s, ?,
# %(name)s) and environment references ($DB_PASSWORD, ${DB_PASSWORD})
_REFERENCE = re.compile(r"\$[0-9]+|%s|\?|%\([A-Za-z_][\w]*\)s|\$\{?[A-Z_][A-Z0-9_]*\}?")


# calls that set a named value: os.environ.setdefault("API_KEY", "x"), os.putenv(...)
_SETTER_CALL = re.compile(rb"(?:setdefault|putenv|setenv|set|set_secret|setitem|__setitem__)\($")


def _is_call_arg(low: bytes, j: int) -> bool:
    """True when the quoted name starting at ``j`` is the first argument of a setter call."""
    q = j - 1 if j > 0 and low[j - 1] in b"\"'" else j
    return _SETTER_CALL.search(low, max(0, q - 16), q) is not None


class SecretAssignmentRecognizer(Recognizer):
    """``password = "hunter2"``, ``"client_secret": "..."``, ``--token x``, ``PGPASSWORD=...``,
    ``Authorization: Bearer ...``, ``?api_key=...&sig=...``, ``Pwd=...;``, ``PASSWORD 'x'``.

    Finds the stems (``pass``, ``token``, ``key``...) in the lowercased view, widens each to the
    surrounding name, classifies the name with :func:`is_secret_name`, then matches a separator
    and a value after it. Only the value is replaced; the name and separator stay.
    """

    type = SECRET
    priority = 90
    name = "assignment"

    def find(self, ctx: Context) -> Iterable[tuple[int, int]]:
        low = ctx.low
        positions: list[int] = []
        for stem in _STEMS:
            m = stem.search(low)  # cheaper than finditer when there is nothing
            if m is not None:
                positions.append(m.start())
                positions.extend(x.start() for x in stem.finditer(low, m.end()))
        if not positions:
            return ()
        positions.sort()
        text, out, done = ctx.text, [], -1
        for p in positions:
            if p < done:
                continue
            j, floor = p, max(0, p - 128)
            while j > floor and low[j - 1] in _NAME_BYTES:
                j -= 1
            k = _NAME_FWD.match(low, p).end()  # type: ignore[union-attr]  # {0,128}: matches
            done = k
            name = text[j:k].strip(".")
            if not name or not is_secret_name(name):
                continue
            tail = _ASSIGN_TAIL.match(text, k)
            if tail is not None and tail.start("comma") >= 0 and not _is_call_arg(low, j):
                tail = None  # ["password", "email"] is a list of names
            if tail is None and low.startswith(b"--", j):
                tail = _CLI_TAIL.match(text, k)
            if tail is None:
                continue
            span = self._value_span(tail, name)
            if span is not None:
                out.append(span)
                done = max(done, span[1])
        return out

    @staticmethod
    def _value_span(m: re.Match, name: str) -> tuple[int, int] | None:
        for g in _VALUE_GROUPS:
            s = m.start(g)
            if s >= 0:
                break
        else:  # pragma: no cover - the pattern always sets one group
            return None
        e = m.end(g)
        if s >= e:
            return None
        value = m.string[s:e]
        if g == "u":
            if value.lower() in _NOT_VALUES or _REFERENCE.fullmatch(value):
                return None
            if value == "$" and _REFERENCE.match(m.string, s):  # ${NAME}: "{" ends the run
                return None
            if name.lower().replace("-", "_").endswith(_LINE_VALUE_SUFFIXES):
                # Cookie: a=1; b=2 -> whole line (the pattern matches the empty string too)
                e = _LINE_REST.match(m.string, e).end()  # type: ignore[union-attr]
        elif g == "a":
            callee = m.group("c").rsplit(".", 1)[-1].lower()
            if callee in _SAFE_CALLS or not ('"' in value or "'" in value):
                return None
        return s, e
