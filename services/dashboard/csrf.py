"""Cross-site request forgery: every state-changing request proves it came from our own page.

Two checks, both on every request that is not GET/HEAD/OPTIONS (`protect`, an app-wide
dependency, so a new route cannot forget them):

1. Provenance: a browser's `Origin` must be the dashboard's own (the request's scheme and
   host, or `HAI_DASHBOARD_URL` behind a proxy) and its `Sec-Fetch-Site`, when sent, must be
   `same-origin`. Another port of the same host is another origin, though the same site, so
   `SameSite` cookies alone do not stop it.
2. A token the page carried: the form field `csrf_token` or the header `X-CSRF-Token` (htmx
   sends it from `hx-headers` on <body>). Signed-in, it is an HMAC of the session cookie,
   so it changes with every sign-in and no other session's token passes. For `/login`,
   before any session, it is an HMAC of a random nonce in its own cookie.

Templates put the token in with `{{ csrf_field() }}` inside every `<form method="post">`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from fastapi import Request, Response
from markupsafe import Markup, escape
from starlette.datastructures import FormData

from services.dashboard import session as sess
from shared.settings import Settings

FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
LOGIN_COOKIE = "hai_login_csrf"
LOGIN_PATH = "/login"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class CsrfRejected(Exception):
    """A state-changing request that did not come from one of our pages (answered 403)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def key_for(settings: Settings) -> bytes:
    """The HMAC key, the same on every replica; derived so it never equals the JWT secret."""
    return hmac.new(settings.jwt_secret.encode(), b"hai-dashboard-csrf-v1", hashlib.sha256).digest()


def _sign(key: bytes, purpose: str, value: str) -> str:
    mac = hmac.new(key, f"{purpose}\x00{value}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def session_token(key: bytes, session_cookie: str) -> str:
    """The token of the session that this cookie carries."""
    return _sign(key, "session", session_cookie)


def login_token(key: bytes, nonce: str) -> str:
    """The sign-in form's token for the pre-session nonce in its cookie."""
    return _sign(key, "login", nonce)


def _key(request: Request) -> bytes:
    key: bytes | None = getattr(request.app.state, "csrf_key", None)
    if key is None:
        key = request.app.state.csrf_key = key_for(request.app.state.settings)
    return key


def _login_nonce(request: Request) -> str:
    """The pre-session nonce of this browser; a fresh one (set by `keep_login_nonce`) if none."""
    nonce = request.cookies.get(LOGIN_COOKIE) or getattr(request.state, "login_nonce", None)
    if not nonce:
        nonce = request.state.login_nonce = secrets.token_urlsafe(32)
    return str(nonce)


def token(request: Request, *, login: bool = False) -> str:
    """The token a page of this request must carry ('' when signed out and not on /login)."""
    if login:
        return login_token(_key(request), _login_nonce(request))
    cookie = request.cookies.get(sess.COOKIE)
    return session_token(_key(request), cookie) if cookie else ""


def field(request: Request, *, login: bool = False) -> Markup:
    """The hidden input that carries the token in a form."""
    return Markup('<input type="hidden" name="{}" value="{}">').format(
        FIELD, escape(token(request, login=login)))


def keep_login_nonce(request: Request, response: Response) -> None:
    """Set the pre-session cookie when the sign-in page just made a nonce for this browser."""
    nonce = getattr(request.state, "login_nonce", None)
    if nonce and not request.cookies.get(LOGIN_COOKIE):
        response.set_cookie(LOGIN_COOKIE, nonce, httponly=True, samesite="strict", path=LOGIN_PATH,
                            secure=_secure(request))


def forget_login_nonce(response: Response) -> None:
    """A nonce serves one sign-in."""
    response.delete_cookie(LOGIN_COOKIE, path=LOGIN_PATH, httponly=True, samesite="strict")


def _secure(request: Request) -> bool:
    return request.app.state.settings.env == "production" or request.url.scheme == "https"


def _origin_of(url: str) -> str:
    parts = urlsplit(url.strip().lower())
    default = {"http": 80, "https": 443}.get(parts.scheme)
    try:
        port = parts.port
    except ValueError:
        return ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def own_origins(request: Request) -> set[str]:
    """The origins our pages are served from: this request's, and the configured public URL."""
    found = {_origin_of(f"{request.url.scheme}://{request.headers.get('host', '')}")}
    dashboard_url = request.app.state.settings.dashboard_url
    if dashboard_url:
        found.add(_origin_of(dashboard_url))
    found.discard("")
    return found


def check_provenance(request: Request) -> None:
    """Refuse a request a browser says came from another origin (Origin, Sec-Fetch-Site)."""
    origin = request.headers.get("origin")
    if origin is not None and _origin_of(origin) not in own_origins(request):
        raise CsrfRejected(f"the request came from another origin ({origin[:100]})")
    site = request.headers.get("sec-fetch-site")
    if site is not None and site != "same-origin":
        raise CsrfRejected(f"the browser says the request is {site[:20]}, not same-origin")
    # neither header: not a browser (or a very old one); the token below still has to match


async def _sent_token(request: Request) -> str:
    sent = request.headers.get(HEADER)
    if sent:
        return sent
    try:
        form: FormData = await request.form()
    except Exception:  # noqa: BLE001 - an unreadable body carries no token
        return ""
    value = form.get(FIELD)
    return value if isinstance(value, str) else ""


async def protect(request: Request) -> None:
    """App-wide dependency: a state-changing request must be same-origin and carry its token."""
    if request.method in SAFE_METHODS:
        return
    check_provenance(request)
    key = _key(request)
    if request.url.path == LOGIN_PATH:
        nonce = request.cookies.get(LOGIN_COOKIE)
        if not nonce:
            raise CsrfRejected("the sign-in page's cookie is missing (reload the sign-in page)")
        expected = login_token(key, nonce)
    else:
        cookie = request.cookies.get(sess.COOKIE)
        if not cookie:
            # signed out already (the cookie lives as long as the token): nothing to protect;
            # sign in and come back, as every page does (signing out again needs no return)
            raise sess.LoginRequired("/worklist" if request.url.path == "/logout"
                                     else request.url.path)
        expected = session_token(key, cookie)
    if not hmac.compare_digest((await _sent_token(request)).encode(), expected.encode()):
        raise CsrfRejected("the form's security token is missing or belongs to another session")
