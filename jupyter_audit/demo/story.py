"""The demo's two stories, played through the running world's server as its people would:

- the contractor: the admin makes a service token for `contractor-etl` (owned by the data
  scientist), the contractor's job runs with it through `jupyter audit run`, and the token is
  revoked (the trail still names the contractor and the owner);
- the analysis, headless: the data scientist runs the reasoning-chain notebook through
  `jupyter audit run`; its `DELETE` waits; she cannot approve it herself (403), nor can the
  auditor; the reviewer approves it through the REST API and the run finishes.

`jupyter audit demo` plays the first at start (the second is for people in a browser);
`jupyter audit demo --headless` and the tests play both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

from .notebook import CONTRACTOR_JOB, REASONING_CHAIN
from .people import ADMIN, AUDITOR, DATA_SCIENTIST, REVIEWER

CONTRACTOR = "contractor-etl"


class StoryError(Exception):
    """A step of a story did not go as it must: one line for the console."""


def _run(world, notebook: Path, token: str) -> subprocess.Popen:
    """`jupyter audit run NOTEBOOK` against the world's server, the token in the environment
    (never on the command line)."""
    return subprocess.Popen(
        [sys.executable, "-m", "jupyter_audit.cli", "run", str(notebook), "--url", world.url],
        env={**os.environ, "JUPYTER_AUDIT_TOKEN": token},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _trace_of(output: Path) -> str | None:
    if not output.exists():
        return None
    return json.loads(output.read_text())["metadata"]["jupyter_audit"]["run"]["trace_id"]


def contractor_story(world) -> dict:
    """Token made, job run with it, token revoked: {token_id, trace_id}."""
    admin = world.bearer(ADMIN)
    made = world.rest(
        "tokens",
        admin,
        "POST",
        {"service_account": CONTRACTOR, "owner": DATA_SCIENTIST.email, "expires": "30d"},
    )
    job = _run(world, world.notebooks / CONTRACTOR_JOB, made["token"])
    out, err = job.communicate(timeout=600)
    world.rest(
        f"tokens/{made['id']}", admin, "DELETE", {"reason": "the contractor's engagement ended"}
    )
    if job.returncode != 0:
        raise StoryError(f"the contractor's job failed: {(err or out).strip()[-300:]}")
    trace = _trace_of(world.notebooks / "contractor_job.run.ipynb")
    return {"token_id": made["id"], "trace_id": trace}


def _refused(world, request_id: str, auth: str) -> int:
    try:
        world.rest(f"approvals/{request_id}", auth, "POST", {"decision": "approve", "reason": "x"})
    except urllib.error.HTTPError as e:
        return e.code
    return 200


def analysis_story(world, timeout: float = 600) -> dict:
    """The data scientist's notebook run headless, its DELETE approved by the reviewer:
    {trace_id, request_id, refused: {requester, auditor}, output}."""
    dana, rui = world.bearer(DATA_SCIENTIST), world.bearer(REVIEWER)
    run = _run(world, world.notebooks / REASONING_CHAIN, dana)
    deadline = time.monotonic() + timeout
    pending: list = []
    try:
        while not pending:  # the REST API has no push for reviewers: ask, as the panel does
            if run.poll() is not None:
                raise StoryError(f"the notebook ended before its DELETE asked: {run.stderr}")
            if time.monotonic() > deadline:
                raise StoryError("the notebook's DELETE never asked for approval")
            pending = world.rest("approvals?state=pending", rui)["approvals"]
            if not pending:
                time.sleep(0.2)
        request = pending[0]
        refused = {
            "requester": _refused(world, request["id"], dana),  # her own: never
            "auditor": _refused(world, request["id"], world.bearer(AUDITOR)),  # not a reviewer
        }
        world.rest(
            f"approvals/{request['id']}",
            rui,
            "POST",
            {"decision": "approve", "reason": "the queue was exported for the review team"},
        )
        out, err = run.communicate(timeout=timeout)
    finally:
        if run.poll() is None:
            run.terminate()
            run.wait()
    if run.returncode != 0:
        raise StoryError(f"the notebook failed: {(err or out).strip()[-300:]}")
    output = world.notebooks / "reasoning_chain.run.ipynb"
    return {
        "trace_id": _trace_of(output),
        "request_id": request["id"],
        "statement": request["statement"],
        "refused": refused,
        "output": output,
    }
