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
