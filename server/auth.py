"""Bearer JWT verification. The accepted algorithms come from settings only."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import jwt
from sqlalchemy import Select, select

from db import models as m
from server.settings import Settings


class AuthError(Exception):
    """Any reason a token is refused; the reason is logged, never sent to the client."""


@dataclass(frozen=True)
class Claims:
    user_id: int
    partner_id: int | None
    roles: frozenset[str]
    # The token's `exp` (a Unix time): a subscription opened with it ends then.
    expires_at: float | None = None


class TokenVerifier:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._jwks = (
            jwt.PyJWKClient(settings.jwt_jwks_url, timeout=5) if settings.jwt_jwks_url else None
        )

    def _key(self, token: str, algorithm: str) -> Any:
        if algorithm == "HS256":
            return self._settings.jwt_secret
        if self._jwks is not None:
            return self._jwks.get_signing_key_from_jwt(token).key
        return self._settings.jwt_public_key

    def verify(self, token: str) -> Claims:
        try:
            header = jwt.get_unverified_header(token)
            algorithm = header.get("alg")
            if algorithm not in self._settings.jwt_algorithms:
                raise AuthError(f"algorithm {algorithm!r} not accepted")
            payload = jwt.decode(
                token,
                self._key(token, algorithm),
                algorithms=list(self._settings.jwt_algorithms),
                issuer=self._settings.jwt_issuer,
                audience=self._settings.jwt_audience,
                options={
                    "require": ["exp", "sub"],
                    "verify_aud": self._settings.jwt_audience is not None,
                },
            )
        except jwt.PyJWTError as exc:
            raise AuthError(str(exc)) from exc
        return _claims(payload)

    async def verify_async(self, token: str) -> Claims:
        """As verify; a JWKS fetch (network I/O) runs off the event loop."""
        if self._jwks is None:
            return self.verify(token)
        return await asyncio.to_thread(self.verify, token)


def _claims(payload: dict[str, Any]) -> Claims:
    try:
        user_id = int(payload["sub"])
        org = payload.get("org")
        partner_id = int(org) if org is not None else None
        roles = payload.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise AuthError("roles must be a list of strings")
    except (TypeError, ValueError) as exc:
        raise AuthError(f"malformed claims: {exc}") from exc
    exp = payload.get("exp")
    return Claims(user_id=user_id, partner_id=partner_id, roles=frozenset(roles),
                  expires_at=float(exp) if isinstance(exp, (int, float)) else None)


def issue_dev_token(
    settings: Settings, user_id: int, partner_id: int | None, roles: list[str]
) -> str:
    """Sign an HS256 token with the configured secret (demo and tests only)."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "sub": str(user_id),
        "roles": roles,
        "iat": now,
        "exp": now + settings.jwt_ttl_seconds,
    }
    if partner_id is not None:
        payload["org"] = str(partner_id)
    if settings.jwt_issuer:
        payload["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        payload["aud"] = settings.jwt_audience
    return jwt.encode(payload, settings.jwt_secret, algorithm="HS256")


def user_token(settings: Settings, user: m.User) -> str:
    """A development token for `user`, with the user's own role."""
    return issue_dev_token(settings, user.id, user.partner_id, [user.role])


def demo_users() -> Select[m.User]:
    """The users `demo-tokens` lists, Partners' users first; GraphiQL's development page
    signs in as the first."""
    return select(m.User).order_by(m.User.partner_id.is_(None), m.User.partner_id, m.User.id)
