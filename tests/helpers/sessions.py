"""Notebook sessions through jupyter_server's real REST API, as JupyterLab drives it (open a
notebook, save it, move it), for users of helpers.identity.HeaderIdentityProvider."""

import json

XSRF = {"X-XSRFToken": "x", "Cookie": "_xsrf=x"}  # as a browser sends it
ALICE = {"X-Test-User": "alice", **XSRF}
BOB = {"X-Test-User": "bob", **XSRF}
ADA = {"X-Test-User": "ada", **XSRF}  # auditor
NB = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


async def call(jp_fetch, *parts, method="GET", body=None, headers=ALICE, **kw):
    r = await jp_fetch(
        *parts,
        method=method,
        body=None if body is None else json.dumps(body),
        headers=headers,
        allow_nonstandard_methods=True,
        **kw,
    )
    return json.loads(r.body) if r.body else None


async def save(jp_fetch, path, headers=ALICE):
    folder = path.rpartition("/")[0]
    if folder:
        await call(jp_fetch, "api", "contents", folder, method="PUT", body={"type": "directory"})
    await call(
        jp_fetch,
        "api",
        "contents",
        *path.split("/"),
        method="PUT",
        body={"type": "notebook", "format": "json", "content": NB},
        headers=headers,
    )


async def open_session(jp_fetch, path, headers=ALICE, kernel=None):
    """What JupyterLab does when it opens a notebook or restores a workspace."""
    session = await call(
        jp_fetch,
        "api",
        "sessions",
        method="POST",
        body={
            "path": path,
            "name": path.rpartition("/")[2],
            "type": "notebook",
            "kernel": kernel or {"name": "python3"},
        },
        headers=headers,
    )
    return session["id"], session["kernel"]["id"]
