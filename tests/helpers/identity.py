"""A small IdentityProvider for tests: the user named by the X-Test-User header, with groups
from a fixed directory. Stands in for an organisation's sign-in (the OIDC provider has its
own tests)."""

from jupyter_server.auth.identity import IdentityProvider, User

DIRECTORY = {
    "alice": ["data-science"],
    "bob": ["data-science"],
    "rita": ["audit-reviewers"],
    "ada": ["audit-auditors"],
    "root-admin": ["audit-admins"],
}


class HeaderIdentityProvider(IdentityProvider):
    async def get_user(self, handler):
        name = handler.request.headers.get("X-Test-User")
        if not name or name not in DIRECTORY:
            return None
        user = User(username=name, name=name, display_name=name.title())
        user.audit_identity = {
            "username": name,
            "display_name": name.title(),
            "email": f"{name}@example.org",
            "subject": f"sub-{name}",
            "issuer": "https://idp.test",
            "groups": DIRECTORY[name],
            "auth_method": "test-header",
        }
        return user


class HubHeaderIdentityProvider(IdentityProvider):
    """Who jupyterhub's identity provider would name in a single-user server: the Hub user in
    the X-Test-User header (any name), recorded as the Hub's (`auth_method` jupyterhub), so
    that the owner check (`JUPYTERHUB_USER`, server/collector_proxy.py) runs as under a Hub.
    The real Hub is tests/e2e/test_collector_hub.py."""

    async def get_user(self, handler):
        name = handler.request.headers.get("X-Test-User")
        if not name:
            return None
        user = User(username=name, name=name, display_name=name)
        user.audit_identity = {
            "username": name,
            "display_name": name,
            "groups": DIRECTORY.get(name, []),
            "auth_method": "jupyterhub",
        }
        return user
