"""A person's request to this single-user server, answered from the Hub's collector.

With `c.AuditApp.collector_url` set, the people endpoints that read the trail or list approvals
answer from the collector (one trail, one approval queue for the whole Hub; decisions are not
proxied: `DECIDE_AT_THE_COLLECTOR`): the request's path under `jupyter-audit/api/`, its query
(less a `?token=` that signed its sender in here) and body go to the collector's same path
(which speaks this server's REST API), authenticated with this server's Hub token. The
collector decides what the server's owner may see and do from the Hub's answer for that
token, so only the owner is served: another Hub user this server admits (JupyterHub sharing)
would otherwise act with the owner's rights (403). A refusal from the collector passes on
with its status and message; a collector that cannot be reached is a 503 that says so, never
a quiet fall-back to the local trail (which its owner can edit).
"""

from __future__ import annotations

import os

from tornado import web

from ..identity.hub import AUTH_METHOD
from .collector_client import COLLECTOR_CLIENT_KEY, CollectorRefused, CollectorUnavailable

API = "jupyter-audit/api/"
# a decision is never proxied: this server's token is in every kernel it runs
DECIDE_AT_THE_COLLECTOR = (
    "under the Hub's audit collector, approvals are decided at the collector, never through "
    "a server (its token is in every kernel it runs): decide in JupyterLab's audit panel "
    "(it asks you to sign in at the collector in your browser), or with `jupyter audit "
    "approvals approve|deny ID --url COLLECTOR --token T` and a Hub API token of your own"
)


def collector_client(handler):
    """The server's collector client, or None (no collector: answer from the local trail)."""
    return handler.settings.get(COLLECTOR_CLIENT_KEY)


def check_owner(ident: dict) -> None:
    owner = os.environ.get("JUPYTERHUB_USER")
    if not owner or ident.get("auth_method") != AUTH_METHOD or ident.get("username") != owner:
        raise web.HTTPError(
            403,
            "the Hub's audit trail is read through a server by its owner only: open your own "
            "JupyterLab",
        )


# query parameters that sign a person in to this server (jupyter_server takes `?token=`),
# never the collector's business: not sent on
CREDENTIALS = frozenset({"token", "_xsrf"})


def query_of(handler) -> dict:
    """The request's query, every value kept (repeated names as lists), as text, less the
    credentials that signed its sender in here (`CREDENTIALS`)."""
    return {
        name: [v.decode("utf-8", "replace") for v in values]
        for name, values in handler.request.query_arguments.items()
        if name not in CREDENTIALS
    }


async def from_collector(
    handler, path: str, *, method: str = "GET", body: dict | None = None, params=None
) -> dict:
    """The collector's answer to `path` (under `jupyter-audit/api/`), for the server's owner;
    the request's own query unless `params` is given."""
    client = collector_client(handler)
    if client is None:
        raise web.HTTPError(500, "no collector is configured")
    check_owner(handler.identity())
    try:
        return await client.fetch(
            method, API + path, body, query_of(handler) if params is None else params
        )
    except CollectorRefused as e:
        status = e.status if 400 <= e.status < 600 else 502
        raise web.HTTPError(status, e.message.replace("%", "%%")) from None
    except CollectorUnavailable as e:
        handler.log.warning("jupyter-audit: the collector cannot be reached: %s", e)
        raise web.HTTPError(
            503, "the Hub's audit collector cannot be reached; try again in a moment"
        ) from None
