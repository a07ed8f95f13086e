"""Who may do what: jupyter_server's Authorizer with audit resources.

The extension puts `AuditAuthorizer` in front of the server's configured Authorizer. For
`audit:*` resources it requires a role (from the identity's groups, see identity.resolve,
and the role groups the AuditApp hands it);
for every resource (the kernel API and its websocket included) a revoked or expired service
token is refused; everything else is left to the configured Authorizer, which can only
narrow further.
"""

from __future__ import annotations

import inspect
import time

from jupyter_server.auth.authorizer import Authorizer
from traitlets import Any, List, Unicode

from ..identity.resolve import roles_for, snapshot_for

# resource -> the role it needs
RESOURCES = {
    "audit:me": "user",
    "audit:traces": "user",  # traces the user took part in
    "audit:traces:all": "auditor",  # everyone's traces (each view recorded as trail.accessed)
    "audit:verify": "auditor",
    "audit:export": "auditor",
    "audit:tokens": "admin",
    "audit:cells": "user",  # running cells through the gateway, typing into terminals
    "audit:approvals": "user",  # one's own requests; reviewers see and decide all
    "audit:approvals:review": "reviewer",
}


class AuditAuthorizer(Authorizer):
    base = Any(help="The server's configured Authorizer, consulted after the audit rules.")
    tokens = Any(help="The TokenStore: a revoked or expired service token is refused.")
    reviewer_groups = List(Unicode(), help="Groups whose members review approvals.")
    auditor_groups = List(Unicode(), help="Groups whose members see all traces.")
    admin_groups = List(Unicode(), help="Groups whose members manage tokens.")

    def identity(self, handler, user) -> dict:
        return snapshot_for(user, handler.identity_provider)

    def roles(self, ident: dict, identity_provider) -> list[str]:
        """The roles of an identity snapshot (from its groups)."""
        return roles_for(ident, identity_provider, self)

    def allows(self, handler, user, resource: str, ident: dict | None = None) -> bool:
        """The audit rules alone (synchronous; the gateway uses them per cell, passing the
        identity snapshot it has already resolved)."""
        if user is None:
            return False
        expires_at = getattr(user, "expires_at", None)
        if expires_at is not None and time.time() >= expires_at:
            return False  # e.g. a websocket opened with a token that has since expired
        ident = ident or self.identity(handler, user)
        token_id = ident.get("token_id")
        if token_id and (self.tokens is None or not self.tokens.is_active(token_id)):
            return False
        role = RESOURCES.get(resource)
        return role is None or role in self.roles(ident, handler.identity_provider)

    def is_authorized(self, handler, user, action, resource):
        if not self.allows(handler, user, resource):
            return False
        if self.base is None:
            return True
        result = self.base.is_authorized(handler, user, action, resource)
        if inspect.isawaitable(result):
            return result
        return bool(result)
