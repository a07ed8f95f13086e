"""Identity under JupyterHub: who is behind a request to a single-user server.

Two halves, in two processes:

- In the Hub, `auth_state_hook` (set as `c.Spawner.auth_state_hook`) copies the owner's OIDC
  claims (subject, issuer, email, name, groups) from the authenticator's `auth_state` into the
  spawned server's environment, as JSON in `JUPYTER_AUDIT_HUB_CLAIMS`. Nothing else of
  `auth_state` (tokens) leaves the Hub.
- In the single-user server, `snapshot_for_hub_user` turns the user jupyterhub's
  `JupyterHubIdentityProvider` authenticated (the Hub's user model: name, groups) into an
  identity snapshot. The OIDC claims apply only to the server's owner (`JUPYTERHUB_USER`);
  another Hub user let into a shared server is recorded with their own Hub name and groups.

The user signs in once, at the Hub; the single-user server never asks again.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from typing import Any

from .snapshot import make_snapshot

ENV = "JUPYTER_AUDIT_HUB_CLAIMS"
AUTH_METHOD = "jupyterhub"
CLAIMS = ("sub", "iss", "email", "name")

log = logging.getLogger("jupyter_audit.identity.hub")

# the last environment value parsed and its result, so a bad value warns once, not per request
_parsed: tuple[str | None, dict] = (None, {})


# -- in the Hub -------------------------------------------------------------------------------


def _jwt_claims(token) -> dict:
    """The payload of a JWT, unverified. Used only for the ID token the Hub itself received
    from the provider's token endpoint (OIDC Core 3.1.3.7: TLS to the token endpoint may stand
    in for the signature check)."""
    if not isinstance(token, str) or token.count(".") != 2:
        return {}
    body = token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, binascii.Error):
        return {}
    return claims if isinstance(claims, dict) else {}


def _groups_at(auth_state: dict, key) -> list | None:
    """auth_state at a dotted key such as "oauth_user.groups" (OAuthenticator's
    `auth_state_groups_key` when it is a string), if that is a list."""
    if not isinstance(key, str) or not key:
        return None
    value: Any = auth_state
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value if isinstance(value, list) else None


def hub_claims(auth_state, user_key: str = "oauth_user", groups_key=None) -> dict:
    """The claims worth recording, from an OAuthenticator `auth_state`: the userinfo response
    (`auth_state[user_key]`, `oauth_user` for GenericOAuthenticator) first, then the ID token."""
    if not isinstance(auth_state, dict):
        return {}
    user_info = auth_state.get(user_key)
    user_info = user_info if isinstance(user_info, dict) else {}
    id_claims = _jwt_claims(auth_state.get("id_token"))
    out: dict[str, Any] = {}
    for name in CLAIMS:
        # sub and iss name the person at the provider: the ID token (which the Hub received
        # straight from the token endpoint) decides them
        sources = (id_claims, user_info) if name in ("sub", "iss") else (user_info, id_claims)
        for src in sources:
            value = src.get(name)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
                out[name] = str(value)
                break
    groups = _groups_at(auth_state, groups_key)
    if groups is None:
        groups = next(
            (s["groups"] for s in (user_info, id_claims) if isinstance(s.get("groups"), list)),
            None,
        )
    if groups is not None:
        out["groups"] = sorted({str(g) for g in groups if isinstance(g, str | int)})
    return out


def auth_state_hook(spawner, auth_state) -> None:
    """`c.Spawner.auth_state_hook`: pass the owner's OIDC claims to their single-user server.

    Needs `c.Authenticator.enable_auth_state = True` (and `JUPYTERHUB_CRYPT_KEY`); without an
    auth_state the server records the Hub name and groups only."""
    env = dict(spawner.environment or {})  # a copy: the configured dict may be shared
    env.pop(ENV, None)
    authenticator = getattr(spawner, "authenticator", None)
    user_key = getattr(authenticator, "user_auth_state_key", None) or "oauth_user"
    groups_key = getattr(authenticator, "auth_state_groups_key", None)
    try:
        claims = hub_claims(auth_state, user_key=user_key, groups_key=groups_key)
    except Exception as e:  # noqa: BLE001 - never stop a spawn over the audit claims
        spawner.log.warning("jupyter-audit: could not read OIDC claims from auth_state: %s", e)
        claims = {}
    if claims:
        claims["user"] = spawner.user.name  # whom they were issued for
        env[ENV] = json.dumps(claims, sort_keys=True, separators=(",", ":"))
    spawner.environment = env


# -- in the single-user server ----------------------------------------------------------------


def _owner_claims() -> dict:
    """The owner's claims from the environment; {} if absent or unusable (with a warning)."""
    global _parsed
    raw = os.environ.get(ENV)
    if raw == _parsed[0]:
        return _parsed[1]
    claims: dict = {}
    if raw:
        try:
            value = json.loads(raw)
            if not isinstance(value, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            log.warning("jupyter-audit: ignoring %s, which is not valid JSON: %s", ENV, e)
        else:
            owner = os.environ.get("JUPYTERHUB_USER")
            if value.get("user") not in (None, owner):
                log.warning(
                    "jupyter-audit: ignoring %s, issued for %r, not this server's owner %r",
                    ENV,
                    value.get("user"),
                    owner,
                )
            else:
                for name in CLAIMS:
                    if isinstance(value.get(name), str) and value[name]:
                        claims[name] = value[name]
                    elif value.get(name) is not None:
                        log.warning("jupyter-audit: ignoring %s.%s: not a string", ENV, name)
                groups = value.get("groups")
                if isinstance(groups, list) and all(isinstance(g, str) for g in groups):
                    claims["groups"] = groups
                elif groups is not None:
                    log.warning("jupyter-audit: ignoring %s.groups: not a list of strings", ENV)
    _parsed = (raw, claims)
    return claims


def snapshot_for_hub_user(user) -> dict:
    """Identity snapshot of a user authenticated by jupyterhub's JupyterHubIdentityProvider
    (a `JupyterHubUser`, whose `hub_user` is the Hub's user model)."""
    hub = getattr(user, "hub_user", None)
    hub = hub if isinstance(hub, dict) else {}
    name = hub.get("name") or user.username
    groups = {str(g) for g in hub.get("groups") or []}
    display = getattr(user, "display_name", None) or name
    method = AUTH_METHOD if hub.get("kind", "user") == "user" else f"{AUTH_METHOD}-service"
    fields = {}
    owner = os.environ.get("JUPYTERHUB_USER")
    if method == AUTH_METHOD and owner and name == owner:
        claims = _owner_claims()
        fields = {
            "subject": claims.get("sub"),
            "issuer": claims.get("iss"),
            "email": claims.get("email"),
        }
        groups |= set(claims.get("groups") or [])
        if display == name and claims.get("name"):
            display = claims["name"]
    return make_snapshot(
        username=name,
        groups=groups,
        auth_method=method,
        display_name=display,
        **fields,
    )
