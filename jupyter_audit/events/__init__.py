"""The registry of event kinds: versioned payload schemas kept as data (kinds.json).

Validation here is structural (kind known, declared fields present and of the declared JSON
type); normalisation, size caps and masking happen in the Writer.
"""

from __future__ import annotations

import json
from importlib.resources import files

_TYPES = {
    "string": (str,),
    "integer": (int,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list, tuple),
    "null": (type(None),),
}


class EventValidationError(ValueError):
    """An event that the trail refuses; the message says which field and why."""


def _load() -> dict[str, dict]:
    raw = json.loads(files(__package__).joinpath("kinds.json").read_text("utf-8"))
    registry = {}
    for kind, spec in raw.items():
        if kind.startswith("_"):
            continue
        fields = {}
        for name, f in spec["fields"].items():
            types = f["type"] if isinstance(f["type"], list) else [f["type"]]
            fields[name] = (tuple(t for ty in types for t in _TYPES[ty]), bool(f.get("required")))
        registry[kind] = {
            "version": spec["version"],
            "fields": fields,
            "additional": spec.get("additional", True),
            "type_names": {n: f["type"] for n, f in spec["fields"].items()},
            # for the fast path: the exact types each field accepts (type(True) is bool, which
            # is there only where "boolean" is declared)
            "exact": {n: frozenset(types) for n, (types, _req) in fields.items()},
            "required": tuple(n for n, (_t, req) in fields.items() if req),
        }
    return registry


REGISTRY = _load()
KINDS = frozenset(REGISTRY)


def schema_version(kind: str) -> int:
    return REGISTRY[kind]["version"]


def validate_payload(kind: str, payload: object) -> int:
    """Check a payload against its kind's schema; return the schema version."""
    spec = REGISTRY.get(kind)
    if spec is not None and type(payload) is dict:
        # fast path: every field of an exact accepted type and the required ones present;
        # anything else takes the full check below, which also words the refusal
        exact = spec["exact"]
        additional = spec["additional"]
        for name, value in payload.items():
            types = exact.get(name)
            if types is None:
                if not additional:
                    break
            elif type(value) not in types:
                break
        else:
            for name in spec["required"]:
                if name not in payload:
                    break
            else:
                return spec["version"]
    return _validate(spec, kind, payload)


def _validate(spec: dict | None, kind: str, payload: object) -> int:
    if spec is None:
        raise EventValidationError(f"unknown event kind {kind!r}")
    if not isinstance(payload, dict):
        raise EventValidationError(
            f"{kind}: payload must be an object, not {type(payload).__name__}"
        )
    for name, (types, required) in spec["fields"].items():
        if name not in payload:
            if required:
                raise EventValidationError(f"{kind}: payload.{name} is required")
            continue
        value = payload[name]
        # bool is an int subclass: an integer field must not accept True/False
        if not isinstance(value, types) or (
            isinstance(value, bool) and bool not in types and value is not None
        ):
            raise EventValidationError(
                f"{kind}: payload.{name} must be {spec['type_names'][name]}, "
                f"not {type(value).__name__}"
            )
    if not spec["additional"]:
        extra = set(payload) - set(spec["fields"])
        if extra:
            raise EventValidationError(f"{kind}: unexpected payload fields {sorted(extra)}")
    return spec["version"]
