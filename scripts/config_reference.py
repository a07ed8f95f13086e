#!/usr/bin/env python3
"""Write docs/config-reference.md from the traitlets themselves: every configurable class
of jupyter_audit (found by importing the package, not by a list kept by hand) and each of
its `config=True` traits: name, type, default, help.

    python scripts/config_reference.py            # rewrite docs/config-reference.md
    python scripts/config_reference.py --check    # exit 1 when the committed file is stale

tests/test_config_reference.py runs `--check`, so a trait added, renamed or re-documented
without regenerating the reference fails the suite. The output depends on the code only
(no machine paths, core counts or dates): defaults computed at start are said to be so.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "docs" / "config-reference.md"
# the kernel side takes no traitlets configuration (standard library + IPython only)
SKIP = ("jupyter_audit.kernel", "jupyter_audit.labextension")
FIRST = ("AuditApp", "OIDCIdentityProvider", "Policy")
HEADER = """# Configuration reference

Generated from the code by `python scripts/config_reference.py`; do not edit by hand (a test
fails when this file is stale). Set these in `jupyter_server_config.py` as
`c.CLASS.NAME = value` (or in `jupyter_server_config.json`). How the pieces fit together:
[admin.md](admin.md); OIDC: [identity.md](identity.md); the risk policy:
[policy.md](policy.md); approvals: [approvals.md](approvals.md).
"""


def configurables() -> list[type]:
    """Every class of the package with configurable traits of its own (or of a
    jupyter_audit base class)."""
    sys.path.insert(0, str(REPO))
    from traitlets.config import Configurable

    import jupyter_audit

    found: dict[str, type] = {}
    for mod in pkgutil.walk_packages(jupyter_audit.__path__, "jupyter_audit."):
        if mod.name.startswith(SKIP) or mod.name.endswith(".__main__"):
            continue
        module = importlib.import_module(mod.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(cls, Configurable)
                and cls.__module__.startswith("jupyter_audit.")
                and own_traits(cls)
            ):
                found[cls.__name__] = cls
    order = {name: i for i, name in enumerate(FIRST)}
    return sorted(found.values(), key=lambda c: (order.get(c.__name__, len(FIRST)), c.__name__))


def own_traits(cls: type) -> dict:
    """The `config=True` traits `cls` declares itself (a subclass of a configurable class of
    the package lists only what it adds; its base's section covers the rest)."""
    return cls.class_own_traits(config=True)  # type: ignore[attr-defined]


def package_bases(cls: type) -> list[str]:
    return [
        b.__name__
        for b in cls.__mro__[1:]
        if b.__module__.startswith("jupyter_audit.") and b.class_own_traits(config=True)  # type: ignore[attr-defined]
    ]


def type_name(trait) -> str:
    name = type(trait).__name__
    inner = getattr(trait, "_trait", None)
    if inner is not None:
        name += f" of {type(inner).__name__}"
    values = getattr(trait, "values", None)
    if values:
        name += " (" + " \\| ".join(f"`{v}`" for v in values) + ")"
    if getattr(trait, "allow_none", False):
        name += ", or None"
    return name


def default(cls: type, name: str, trait) -> str:
    if name in getattr(cls, "_trait_default_generators", {}):
        return "computed at start (see below)"
    return f"`{trait.default_value_repr()}`"


def render() -> str:
    out = [HEADER]
    classes = configurables()
    out.append("Classes: " + ", ".join(f"[`{c.__name__}`](#{c.__name__.lower()})" for c in classes))
    for cls in classes:
        doc = inspect.cleandoc(cls.__dict__.get("__doc__") or "")  # its own, not a base's
        out.append(f"\n## {cls.__name__}\n")
        out.append(
            f"`{cls.__module__}.{cls.__name__}`" + (f": {doc.splitlines()[0]}" if doc else "")
        )
        for base in package_bases(cls):
            out.append(f"\nIt also takes every setting of [`{base}`](#{base.lower()}).")
        for name, trait in sorted(own_traits(cls).items()):
            out.append(f"\n### `c.{cls.__name__}.{name}`\n")
            out.append(f"Type: {type_name(trait)} · Default: {default(cls, name, trait)}\n")
            help_text = textwrap.dedent(trait.help or "").strip() or "(no description)"
            out.append(" ".join(help_text.split()))
    return "\n".join(out).rstrip() + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when OUT is stale")
    parser.add_argument("-o", "--output", default=str(DEFAULT_OUT), metavar="OUT")
    args = parser.parse_args(argv)
    text = render()
    out = Path(args.output)
    if args.check:
        current = out.read_text("utf-8") if out.exists() else ""
        if current != text:
            print(
                f"{out} is stale: run python scripts/config_reference.py and commit it",
                file=sys.stderr,
            )
            return 1
        print(f"{out} is up to date")
        return 0
    out.write_text(text, "utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
