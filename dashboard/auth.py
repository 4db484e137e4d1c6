"""Login, logout and the one access check every request passes through.

Sessions are Flask's own signed cookie (itsdangerous, key ``settings.session_key``) holding the
username, a CSRF token and, on a wall display, a digest of the wall token. Nothing more is
needed: the user is re-read from the database on every request, so a deactivated user or a
changed role takes effect at once, and several gunicorn workers share sessions through the key.

Failed logins are written to ``audit_log`` and counted there per username and address, so the
rate limit holds across workers and restarts (an in-process counter would not).

Access rules (:func:`guard`, a ``before_request`` hook):

- open: ``/health``, ``/login``, ``/logout``, ``/assets/``, ``/static/``, Dash's
  ``/_dash-component-suites/`` and ``/_favicon.ico``, and ``/webhooks/`` (signed by the sender);
- a Dash page needs its ``min_role`` (``dash.register_page(..., min_role="analyst")``; default
  viewer, unknown paths too); a page with ``min_role="wall"`` also accepts ``?token=`` matching
  ``settings.wall_token``, which makes the session a wall session;
- Dash's layout and callback endpoints need a session; the page router callback is checked
  against the page it would render; a wall session may only call callbacks whose outputs all have
  ids starting ``wall-`` (or the app menu, which shows a wall nothing);
- every other route needs a viewer.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from dash._pages import _path_to_page  # Dash's own matcher: the same page the router will render
from flask import Flask, g, jsonify, redirect, render_template_string, request, session
from flask.typing import ResponseReturnValue
from sqlalchemy import Engine, func, select

from core.db import read_session, write_session
from core.models import AuditLog, User, utcnow
from core.settings import Settings
from core.users import verify_password
from dashboard.access import DEFAULT_MIN_ROLE, ROLE_KEY, USERNAME_KEY, has_role, role_rank
from dashboard.context import pulse

SESSION_LIFETIME = timedelta(hours=12)
OPEN_PATHS = frozenset({"/health", "/login", "/logout", "/_favicon.ico"})
OPEN_PREFIXES = ("/assets/", "/static/", "/_dash-component-suites/", "/webhooks/")
DASH_API = frozenset({"/_dash-layout", "/_dash-dependencies", "/_reload-hash"})
CALLBACK_PATH = "/_dash-update-component"
DASH_PAGE_ENDPOINTS = frozenset({"/", "/<path:path>"})  # Dash's index routes serve every page
ROUTER_OUTPUT, ROUTER_LOCATION = "_pages_content", "_pages_location"
WALL_CALLBACK_PREFIX = "wall-"
WALL_SHARED_OUTPUTS = frozenset({"nav-user"})  # app-level callbacks that answer a wall empty
FAILED_LOGIN, LOGIN = "login_failed", "login"

LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Pulse · Sign in</title><link rel="stylesheet" href="/assets/bootstrap.min.css"></head>
<body class="bg-light"><main class="container" style="max-width: 24rem; margin-top: 10vh">
<h1 class="h4 mb-3">Pulse · {{ district }}</h1>
{% if error %}<div class="alert alert-danger" role="alert">{{ error }}</div>{% endif %}
<form method="post" action="/login">
<input type="hidden" name="csrf_token" value="{{ csrf }}">
<input type="hidden" name="next" value="{{ next }}">
<div class="mb-3"><label class="form-label" for="username">Username</label>
<input class="form-control" id="username" name="username" value="{{ username }}"
 autocomplete="username" required autofocus></div>
<div class="mb-3"><label class="form-label" for="password">Password</label>
<input class="form-control" id="password" name="password" type="password"
 autocomplete="current-password" required></div>
<button class="btn btn-primary w-100" type="submit">Sign in</button>
</form></main></body></html>"""

REFUSAL_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Pulse · {{ title }}</title>
<link rel="stylesheet" href="/assets/bootstrap.min.css"></head>
<body><main class="container" style="max-width: 40rem; margin-top: 10vh">
<h1 class="h4">{{ title }}</h1><p>{{ message }}</p></main></body></html>"""


def install(server: Flask, settings: Settings) -> None:
    """Configure signed session cookies and add /login, /logout and the access check."""
    server.config.update(
        SECRET_KEY=settings.session_key,
        SESSION_COOKIE_NAME="pulse_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=urlsplit(settings.public_url).scheme == "https",
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
    )
    server.add_url_rule("/login", "login", login, methods=["GET", "POST"])
    server.add_url_rule("/logout", "logout", logout, methods=["POST"])
    server.before_request(guard)


def csrf_token() -> str:
    """This session's CSRF token (made on first use); forms send it back as ``csrf_token``."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def _csrf_ok() -> bool:
    sent, expected = request.form.get("csrf_token", ""), session.get("csrf", "")
    return bool(sent and expected) and hmac.compare_digest(sent, expected)


def _wants_html() -> bool:
    """A page request (a browser's, or curl's with no Accept header), not an API call."""
    accept = request.accept_mimetypes
    return request.method in ("GET", "HEAD") and (accept.accept_html or not accept)


def _refuse(status: int, title: str, message: str) -> ResponseReturnValue:
    """An HTML page for page requests, JSON for everything else."""
    if _wants_html():
        return render_template_string(REFUSAL_PAGE, title=title, message=message), status
    return jsonify(error=message), status


# --- login and logout --------------------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never another host (``//evil``, ``https://evil``)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _attempt_key(username: str, address: str) -> str:
    """What failed logins are counted by: the username (case-folded) and the client address,
    hashed so a password typed into the username field never sits in the audit log."""
    return hashlib.sha256(f"{username.casefold()}|{address}".encode()).hexdigest()[:40]


def recent_failures(engine: Engine, key: str, seconds: int) -> int:
    """Failed logins for ``key`` in the last ``seconds``."""
    since = utcnow() - timedelta(seconds=seconds)
    with read_session(engine) as session_:
        return session_.scalar(
            select(func.count(AuditLog.id)).where(
                AuditLog.action == FAILED_LOGIN, AuditLog.target_id == key, AuditLog.at > since
            )
        )


def authenticate(engine: Engine, username: str, password: str, key: str) -> User | None:
    """The active user with this password (last_login_at set, audited), or None (the failure is
    audited under ``key``)."""
    with write_session(engine) as session_:
        user = session_.scalar(select(User).where(User.username == username))
        if user is not None and user.active and verify_password(password, user.password_hash):
            user.last_login_at = utcnow()
            session_.add(AuditLog(username=user.username, action=LOGIN, target_type="user"))
            return user
        known = user.username if user is not None else None
        session_.add(
            AuditLog(username=known, action=FAILED_LOGIN, target_type="login", target_id=key)
        )
        return None


def login() -> ResponseReturnValue:
    """GET: the sign-in form. POST: check CSRF, the rate limit, then the password."""
    context = pulse()
    next_path = _safe_next(request.values.get("next"))
    if request.method == "GET":
        return _login_page(next_path)
    if not _csrf_ok():
        return _refuse(
            400,
            "Form expired",
            "The sign-in form was not sent by this page or has expired: reload it and try again.",
        )
    username = request.form.get("username", "").strip()
    key = _attempt_key(username, request.remote_addr or "")
    allowed, seconds = context.settings.login_limit
    if recent_failures(context.engine, key, seconds) >= allowed:
        minutes = max(1, seconds // 60)
        return _login_page(
            next_path,
            username,
            f"Too many failed sign-ins for {username!r} from your address: wait {minutes} "
            "minute(s) and try again, or ask an admin to check your account.",
            429,
        )
    user = authenticate(context.engine, username, request.form.get("password", ""), key)
    if user is None:
        return _login_page(next_path, username, "Wrong username or password.", 401)
    session.clear()  # a fresh session: no fixation, a new CSRF token
    session.permanent = True
    session["username"] = user.username
    return redirect(next_path)


def _login_page(
    next_path: str, username: str = "", error: str | None = None, status: int = 200
) -> ResponseReturnValue:
    context = pulse()
    page = render_template_string(
        LOGIN_PAGE,
        district=context.settings.district_name,
        csrf=csrf_token(),
        next=next_path,
        username=username,
        error=error,
    )
    return page, status


def logout() -> ResponseReturnValue:
    """End the session (POST with the CSRF token, so no other site can sign you out)."""
    if not _csrf_ok():
        return _refuse(400, "Form expired", "Sign-out was not sent by this site: reload the page.")
    session.clear()
    return redirect("/login")


# --- the access check --------------------------------------------------------------------------


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _identify(engine: Engine, settings: Settings) -> tuple[str | None, str | None]:
    """(username, role) of this session, or (None, "wall") for a wall session, or (None, None)."""
    username = session.get("username")
    if username:
        with read_session(engine) as session_:
            user = session_.scalar(select(User).where(User.username == username))
        if user is not None and user.active:
            return user.username, user.role
        session.pop("username")
    wall, token = session.get("wall"), settings.wall_token
    if wall and token and hmac.compare_digest(wall, _token_digest(token.get_secret_value())):
        return None, "wall"
    return None, None


def page_min_role(path: str) -> str:
    """The role the Dash page at ``path`` needs (viewer for pages that do not say, and for
    unknown paths, which render Dash's 404 page)."""
    page, _variables = _path_to_page(path.strip("/"))
    return page.get("min_role", DEFAULT_MIN_ROLE)


def guard() -> ResponseReturnValue | None:
    """The before_request hook: None lets the request through, anything else answers it."""
    path = request.path
    if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
        return None
    context = pulse()
    username, role = _identify(context.engine, context.settings)
    setattr(g, USERNAME_KEY, username)
    setattr(g, ROLE_KEY, role)
    if path == CALLBACK_PATH:
        return _check_callback(role)
    if path in DASH_API:
        return None if role else _refuse(401, "Sign in", "Sign in first: /login")
    if request.url_rule is not None and request.url_rule.endpoint in DASH_PAGE_ENDPOINTS:
        return _check_page(path, context.settings, role)
    if has_role(role, DEFAULT_MIN_ROLE):
        return None
    return _ask_to_sign_in()


def _ask_to_sign_in() -> ResponseReturnValue:
    if _wants_html():
        return redirect(f"/login?next={request.full_path.rstrip('?')}")
    return _refuse(401, "Sign in", "Sign in first: /login")


def _check_page(path: str, settings: Settings, role: str | None) -> ResponseReturnValue | None:
    required = page_min_role(path)
    if required == "wall" and "token" in request.args:
        token = settings.wall_token
        if token is None:
            return _refuse(
                403,
                "Wall display off",
                "The wall display is turned off: an admin sets PULSE_WALL_TOKEN to turn it on.",
            )
        if not hmac.compare_digest(request.args["token"], token.get_secret_value()):
            return _refuse(403, "Wrong wall token", "This wall token is not valid: check the URL.")
        session.permanent = True
        session["wall"] = _token_digest(token.get_secret_value())
        if role is None:
            role = "wall"
            setattr(g, ROLE_KEY, role)
    if has_role(role, required):
        return None
    if required == "wall":
        return _refuse(
            403,
            "Wall token needed",
            "Open the wall display with its token: /wall?token=... (PULSE_WALL_TOKEN)."
            if settings.wall_token
            else "The wall display is turned off: an admin sets PULSE_WALL_TOKEN to turn it on.",
        )
    if role is None or role == "wall":
        return _ask_to_sign_in()
    return _refuse(403, "Not allowed", f"This page needs the {required} role; you are {role}.")


def _callback_ids(body: dict[str, Any]) -> list[Any]:
    outputs = body.get("outputs")
    outputs = outputs if isinstance(outputs, list) else [outputs]
    return [o.get("id") for o in outputs if isinstance(o, dict)]


def _router_path(body: dict[str, Any]) -> str | None:
    for item in body.get("inputs") or []:
        if isinstance(item, dict) and (item.get("id"), item.get("property")) == (
            ROUTER_LOCATION,
            "pathname",
        ):
            return str(item.get("value") or "/")
    return None


def _check_callback(role: str | None) -> ResponseReturnValue | None:
    if role is None:
        return _refuse(401, "Sign in", "Your session has ended: sign in again at /login.")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _refuse(400, "Bad request", "A Dash callback request must be a JSON object.")
    ids = _callback_ids(body)
    if ROUTER_OUTPUT in ids:
        required = page_min_role(_router_path(body) or "/")
        if has_role(role, required):
            return None
        return _refuse(403, "Not allowed", f"This page needs the {required} role; you are {role}.")
    if role_rank(role) > role_rank("wall"):
        return None
    if ids and all(
        isinstance(i, str) and (i.startswith(WALL_CALLBACK_PREFIX) or i in WALL_SHARED_OUTPUTS)
        for i in ids
    ):
        return None
    return _refuse(403, "Not allowed", "A wall display may only refresh the wall's own panels.")
