"""Bearer JWT authentication and role checks (CONTRACT.md, HTTP conventions)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import jwt
from fastapi import Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from shared.clock import Clock, SystemClock
from shared.settings import Settings, get_settings

ROLES = ("nurse", "pharmacist", "oncologist", "biomed", "oncall", "admin", "service")
KNOWN_ROLES = frozenset(ROLES)
# the `centers` claim: the centre codes whose records the caller may read and write, or this
ALL_CENTERS = "*"
CENTER_CODE_MAX_LEN = 100  # as the services' `center` columns
ALGORITHMS_DEV = ["HS256"]
# a verified token is trusted again, without its signature checked, until it expires but for at
# most this long (so a signing key withdrawn from the JWKS stops working soon after)
VERIFIED_TOKEN_TTL_S = 60.0
VERIFIED_TOKEN_CACHE_SIZE = 4096
CLOCK_LEEWAY_S = 0.0  # as PyJWT's default: no leeway


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's subject, roles and centres.

    `centers` is None when the caller may see every centre (`["*"]`, or a token without the
    claim where `HAI_CENTERS_CLAIM_REQUIRED` is off); else the codes it names (maybe none).
    `centers_claimed` says whether the token carried the claim at all."""

    sub: str
    roles: frozenset[str]
    centers: frozenset[str] | None = None
    centers_claimed: bool = False

    def sees_center(self, center: str | None) -> bool:
        """True when the caller may see records of `center` (None: a record of no centre)."""
        return self.centers is None or (center is not None and center in self.centers)

    def has_any(self, roles: tuple[str, ...] | frozenset[str]) -> bool:
        return "admin" in self.roles or bool(self.roles & set(roles))

    @property
    def has_known_role(self) -> bool:
        """At least one role of ROLES: a signed token without one may read nothing."""
        return bool(self.roles & KNOWN_ROLES)


class TokenVerifier:
    """Verifies HS256 dev tokens, or RS256 tokens against a JWKS document in production.

    `exp`, `nbf` and `iat` are judged by the verifier's clock: the wall clock (SystemClock) in
    every service and in production; a process that mints its own tokens on an injected clock
    (the dashboard under test) verifies them on that same clock."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        # token → (principal, trusted until, epoch seconds): each caller sends the same token
        # with every request, and checking its signature is the costliest step of a GET
        self._verified: dict[str, tuple[Principal, float]] = {}
        self._jwks: jwt.PyJWKClient | None = (
            jwt.PyJWKClient(settings.jwt_jwks_url, cache_keys=True, lifespan=300)
            if settings.jwt_jwks_url else None
        )

    @property
    def uses_jwks(self) -> bool:
        return self._jwks is not None

    def verify(self, token: str) -> Principal:
        """Return the principal of a valid token or raise jwt.InvalidTokenError."""
        now = self.clock.now().timestamp()
        cached = self._verified.get(token)
        if cached is not None and now < cached[1]:
            return cached[0]
        principal, expires_at = self._verify_signed(token, now)
        if len(self._verified) >= VERIFIED_TOKEN_CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (principal, min(expires_at, now + VERIFIED_TOKEN_TTL_S))
        return principal

    def _verify_signed(self, token: str, now: float) -> tuple[Principal, float]:
        """Check the signature and claims at `now`; the principal and when the token expires."""
        # PyJWT judges time claims by the wall clock: they are checked below on our clock instead
        options: Any = {"require": ["exp", "sub"], "verify_exp": False, "verify_nbf": False,
                        "verify_iat": False}
        audience = self.settings.jwt_audience
        header = jwt.get_unverified_header(token)
        alg = header.get("alg")
        if self._jwks is not None and alg in ("RS256", "ES256"):
            key = self._jwks.get_signing_key_from_jwt(token).key
            claims = jwt.decode(token, key, algorithms=["RS256", "ES256"], options=options,
                                audience=audience)
        elif alg == "HS256" and self.settings.jwt_secret:
            claims = jwt.decode(token, self.settings.jwt_secret, algorithms=ALGORITHMS_DEV,
                                options=options, audience=audience)
        else:
            raise jwt.InvalidTokenError(f"algorithm {alg!r} not accepted")
        _check_time_claims(claims, now)
        roles = claims.get("roles") or []
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise jwt.InvalidTokenError("roles claim must be a list of strings")
        centers = _centers_claim(claims)
        return Principal(sub=str(claims["sub"]), roles=frozenset(roles), centers=centers,
                         centers_claimed="centers" in claims), float(claims["exp"])


def _centers_claim(claims: dict[str, Any]) -> frozenset[str] | None:
    """The centres a token names: None for `["*"]` or no claim (every centre), else the codes."""
    if "centers" not in claims:
        return None
    centers = claims["centers"]
    if not isinstance(centers, list) or not all(
            isinstance(c, str) and c.strip() and len(c) <= CENTER_CODE_MAX_LEN and "\x00" not in c
            for c in centers):
        raise jwt.InvalidTokenError("centers claim must be a list of centre codes, or [\"*\"]")
    if ALL_CENTERS in centers:
        return None
    return frozenset(centers)


def _check_time_claims(claims: dict[str, Any], now: float) -> None:
    """`exp` passed, `nbf` not yet reached, `iat` in the future: each refuses the token."""
    for name in ("exp", "nbf", "iat"):
        if name in claims and (isinstance(claims[name], bool)
                               or not isinstance(claims[name], int | float)):
            raise jwt.InvalidTokenError(f"the {name} claim must be a number")
    if now >= float(claims["exp"]) + CLOCK_LEEWAY_S:
        raise jwt.ExpiredSignatureError("Signature has expired")
    if "nbf" in claims and now < float(claims["nbf"]) - CLOCK_LEEWAY_S:
        raise jwt.ImmatureSignatureError("The token is not yet valid (nbf)")
    if "iat" in claims and now < float(claims["iat"]) - CLOCK_LEEWAY_S:
        raise jwt.ImmatureSignatureError("The token is not yet valid (iat)")


def mint_token(sub: str, roles: list[str], *, secret: str, ttl: timedelta = timedelta(hours=12),
               now: datetime | None = None, centers: list[str] | None = None) -> str:
    """A dev token signed HS256 with the given secret (`centers` None: no `centers` claim)."""
    issued = now or datetime.now(UTC)
    claims: dict[str, Any] = {"sub": sub, "roles": roles, "iat": issued, "exp": issued + ttl}
    if centers is not None:
        claims["centers"] = centers
    return jwt.encode(claims, secret, algorithm="HS256")


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail,
                         headers={"WWW-Authenticate": 'Bearer realm="hai"'})


async def get_verifier(request: Request) -> TokenVerifier:
    verifier = getattr(request.app.state, "token_verifier", None)
    if verifier is None:
        verifier = TokenVerifier(get_settings())
        request.app.state.token_verifier = verifier
    return verifier


async def authenticate(authorization: str, verifier: TokenVerifier) -> Principal:
    """The caller of an `Authorization` header: 401 when missing or invalid, 403 without a known role."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("missing bearer token")
    try:
        if verifier.uses_jwks:  # may fetch the key set over the network: not on the event loop
            principal = await run_in_threadpool(verifier.verify, token.strip())
        else:  # HS256 is a few microseconds of CPU: no thread hop
            principal = verifier.verify(token.strip())
    except jwt.ExpiredSignatureError as exc:
        raise _unauthorized("token expired") from exc
    except (jwt.InvalidTokenError, jwt.PyJWKClientError) as exc:
        raise _unauthorized(f"invalid token: {exc}") from exc
    if not principal.has_known_role:
        raise no_known_role()
    if not principal.centers_claimed and verifier.settings.centers_claim_enforced:
        raise HTTPException(status_code=403, detail="the token carries no centers claim "
                            "(a list of centre codes, or [\"*\"]); this deployment requires one")
    return principal


async def current_principal(request: Request,
                            verifier: Annotated[TokenVerifier, Depends(get_verifier)]) -> Principal:
    """The caller, from the bearer token (already checked by the request gate, when the app has one)."""
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):
        principal = await authenticate(request.headers.get("authorization", ""), verifier)
    request.state.actor = principal.sub
    return principal


def no_known_role() -> HTTPException:
    """403 for a valid token that carries none of ROLES (CONTRACT: even reads need one)."""
    return HTTPException(status_code=403,
                         detail=f"the token carries no known role; needs one of {sorted(ROLES)}")


CurrentUser = Annotated[Principal, Depends(current_principal)]


def require_roles(*roles: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that lets through `admin` and the given roles; 403 otherwise."""

    async def dependency(principal: CurrentUser) -> Principal:
        if not principal.has_any(roles):
            raise HTTPException(
                status_code=403,
                detail=f"needs one of the roles {sorted({*roles, 'admin'})}",
            )
        return principal

    dependency.required_roles = tuple(roles)  # type: ignore[attr-defined]
    return dependency


def roles_dep(*roles: str) -> Any:
    """`Annotated[Principal, Depends(require_roles(...))]` for route signatures."""
    return Annotated[Principal, Depends(require_roles(*roles))]
