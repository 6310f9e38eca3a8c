"""Who is signed in: the token lives in an HttpOnly, SameSite=Lax cookie and is verified per request."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import jwt
from fastapi import Request, Response

from services.dashboard.demo import DEMO_CENTER
from shared.auth import ALL_CENTERS, ROLES, Principal, TokenVerifier, mint_token
from shared.settings import Settings

COOKIE = "hai_session"
CENTER_COOKIE = "hai_center"
DEV_TOKEN_TTL = timedelta(hours=12)


@dataclass(frozen=True)
class DemoUser:
    """A user offered on the development sign-in form."""

    sub: str
    label: str
    roles: tuple[str, ...]
    centers: tuple[str, ...] = (DEMO_CENTER,)  # the token's `centers` claim


DEMO_USERS = (
    DemoUser("nora.nurse", "Nora Nurse (infusion nurse)", ("nurse",)),
    DemoUser("otto.oncall", "Otto Oncall (on-call)", ("oncall", "nurse")),
    DemoUser("bea.biomed", "Bea Biomed (biomedical engineering)", ("biomed",)),
    DemoUser("omar.oncologist", "Omar Oncologist", ("oncologist",)),
    # the pharmacy and the consortium's administrator serve every centre
    DemoUser("pia.pharmacist", "Pia Pharmacist", ("pharmacist",), (ALL_CENTERS,)),
    DemoUser("ada.admin", "Ada Admin (everything)", ("admin",), (ALL_CENTERS,)),
)
SIGNIN_ROLES = tuple(r for r in ROLES if r != "service")
NO_CENTERS = ("This token carries no centers claim (the centres it may see), which this "
              "deployment requires; ask the identity provider for one, then sign in again.")
NO_KNOWN_ROLE = ("This token carries no role the HAI services know (one of "
                 + ", ".join(ROLES) + "); ask for a role to be granted, then sign in again.")


class LoginRequired(Exception):
    """No valid session: the handler sends the browser to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


@dataclass(frozen=True)
class Session:
    """The signed-in user and the token the dashboard calls the APIs with."""

    principal: Principal
    token: str


def dev_signin_allowed(settings: Settings) -> bool:
    """Picking a demo user is for development and tests only."""
    return settings.env != "production"


def read_session(request: Request, verifier: TokenVerifier) -> Session | None:
    """The session from the cookie, or None when missing, expired or not valid."""
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    try:
        principal = verifier.verify(token)
    except (jwt.InvalidTokenError, jwt.PyJWKClientError):
        return None
    if refusal(principal, verifier.settings):  # the services would refuse every call it makes
        return None
    return Session(principal=principal, token=token)


def refusal(principal: Principal, settings: Settings) -> str | None:
    """Why the services would refuse every call made with this principal's token, or None."""
    if not principal.has_known_role:
        return NO_KNOWN_ROLE
    if not principal.centers_claimed and settings.centers_claim_enforced:
        return NO_CENTERS
    return None


def require_session(request: Request) -> Session:
    """The session, or LoginRequired carrying where to come back to."""
    session = read_session(request, request.app.state.verifier)
    if session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target)
    return session


def mint_dev_token(settings: Settings, sub: str, roles: list[str], now: datetime,
                   centers: list[str] | None = None) -> str:
    """A dev token for the chosen demo user (with its centres), signed with HAI_JWT_SECRET."""
    return mint_token(sub, roles, secret=settings.jwt_secret, ttl=DEV_TOKEN_TTL, now=now,
                      centers=centers)


def token_expiry(token: str) -> datetime | None:
    """The `exp` of a token already verified (for the cookie's lifetime)."""
    claims = jwt.decode(token, options={"verify_signature": False})
    exp = claims.get("exp")
    return datetime.fromtimestamp(exp, tz=UTC) if exp else None


def set_session_cookie(response: Response, token: str, *, max_age_seconds: int, secure: bool) -> None:
    """Keep the token where scripts cannot read it and other sites cannot send it."""
    response.set_cookie(COOKIE, token, max_age=max(0, max_age_seconds), httponly=True,
                        samesite="lax", secure=secure, path="/")


def clear_session_cookie(response: Response) -> None:
    """Sign out."""
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax")


def safe_next(target: str | None) -> str:
    """Only local paths to come back to after sign-in (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/worklist"
    return target


def login_url(next_path: str) -> str:
    """The sign-in page that comes back to next_path."""
    return f"/login?next={quote(safe_next(next_path), safe='')}"
