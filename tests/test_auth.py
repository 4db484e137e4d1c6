"""Dashboard access: every route walked anonymously and as each role, sign-in (CSRF, rate limit,
cookie flags), the wall token, and callbacks that return message text refusing a viewer."""

from __future__ import annotations

import re
import stat
from datetime import timedelta

import dash
import pytest
from dash import Input, Output, html
from dash_client import (
    PASSWORD,
    ROLE_USERS,
    add_flagged,
    call_callback,
    csrf_from,
    login,
    make_dashboard,
    response_of,
)
from pydantic import SecretStr
from sqlalchemy import select

import core.settings
from core.db import read_session
from core.models import ROLES, AuditLog, User
from core.settings import Settings

WALL_TOKEN = "tv-in-the-lobby-7f3a"
WALL_PATH = "/probe-wall"
XSS = "<script>alert('x')</script> he said he will bring a gun to school tomorrow"
HTML = {"Accept": "text/html"}
OPEN_PATHS = {"/health", "/login", "/logout", "/_favicon.ico"}
OPEN_PREFIXES = ("/assets/", "/static/", "/_dash-component-suites/", "/webhooks/")
ROUTER_OUTPUTS = [("_pages_content", "children"), ("_pages_store", "data")]
RISK_OUTPUTS = [("risk-grid", "rowData"), ("risk-signature", "data"), ("risk-status", "children")]
RISK_INPUTS = [
    ("risk-tick", "n_intervals", 0),
    ("risk-reviewed", "value", False),
    ("risk-confirm", "n_clicks", None),
    ("risk-dismiss", "n_clicks", None),
]
RISK_STATE = [
    ("risk-grid", "selectedRows", None),
    ("risk-reason", "value", None),
    ("risk-signature", "data", None),
]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"secret_key": SecretStr("test-session-key"), "wall_token": SecretStr(WALL_TOKEN)}
    )


@pytest.fixture
def dashboard(settings):
    """The app, with a probe page that declares min_role="wall" and a wall-only callback (the
    real wall page is another issue's); the probe is removed from Dash's registry after."""
    dash_app, engine = make_dashboard(settings)
    dash.register_page(
        "wall_probe",
        path=WALL_PATH,
        min_role="wall",
        layout=html.Div([html.Div(id="wall-probe"), html.Div(id="wall-probe-tick")]),
    )
    dash_app.callback(Output("wall-probe", "children"), Input("wall-probe-tick", "n_clicks"))(
        lambda _n: "wall panels"
    )
    yield dash_app, engine
    dash.page_registry.pop("wall_probe")
    engine.dispose()


@pytest.fixture
def client(dashboard):
    return dashboard[0].server.test_client()


def as_role(dash_app, role: str):
    """A test client signed in as ``role`` (the wall through its token)."""
    client = dash_app.server.test_client()
    if role == "wall":
        assert client.get(f"{WALL_PATH}?token={WALL_TOKEN}", headers=HTML).status_code == 200
    else:
        assert login(client, ROLE_USERS[role]).status_code == 302
    return client


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def sends_to_login(reply) -> bool:
    return reply.status_code == 302 and reply.headers["Location"].startswith("/login")


def page_paths() -> dict[str, str]:
    """Every registered page's path (path variables filled in) and the role it declares."""
    paths = {}
    for page in dash.page_registry.values():
        path = re.sub(r"<[^>]+>", "1", page.get("path_template") or page["path"])
        paths[path] = page.get("min_role", "viewer")
    return paths


def router(client, path: str):
    """Ask Dash's page router for the layout of ``path``, as in-app navigation does."""
    inputs = [("_pages_location", "pathname", path), ("_pages_location", "search", "")]
    return call_callback(client, ROUTER_OUTPUTS, inputs)


def test_anonymous_requests_get_only_the_open_routes(dashboard, client):
    dash_app, _engine = dashboard
    rules = list(dash_app.server.url_map.iter_rules())
    assert {"/health", "/login", "/_dash-update-component", "/<path:path>"} <= {
        r.rule for r in rules
    }
    for rule in rules:
        path = re.sub(r"<[^>]+>", "probe", rule.rule)
        method = "GET" if "GET" in rule.methods else "POST"
        reply = client.open(path, method=method, headers=HTML)
        if is_open(path):
            assert reply.status_code not in (401, 403) and not sends_to_login(reply), path
        else:
            assert sends_to_login(reply) or reply.status_code in (401, 403), (path, reply.status)
    for path, required in page_paths().items():
        reply = client.get(path, headers=HTML)
        assert reply.status_code == 403 if required == "wall" else sends_to_login(reply), path
        assert router(client, path).status_code == 401, path
    assert client.get("/_dash-layout").status_code == 401
    assert client.post("/_dash-update-component", json={}).status_code == 401
    assert sends_to_login(client.get("/no/such/page", headers=HTML))


@pytest.mark.parametrize("role", ROLES)
def test_each_role_opens_the_pages_its_role_allows_and_no_other(dashboard, role):
    dash_app, _engine = dashboard
    client = as_role(dash_app, role)
    assert client.get("/_dash-layout").status_code == 200
    for path, required in page_paths().items():
        allowed = ROLES.index(role) >= ROLES.index(required)
        page, routed = client.get(path, headers=HTML), router(client, path)
        if allowed:
            assert page.status_code == 200, (role, path, page.status)
            assert routed.status_code == 200, (role, path, routed.status)
        else:
            assert sends_to_login(page) if role == "wall" else page.status_code == 403, path
            assert routed.status_code == 403, (role, path)


def test_the_pages_declare_the_roles_of_the_issue(dashboard):
    paths = page_paths()
    assert (paths["/alerts"], paths["/risk"], paths["/"], paths[WALL_PATH]) == (
        "viewer",
        "analyst",
        "viewer",
        "wall",
    )


def test_sign_in_sets_a_safe_cookie_records_the_time_and_goes_where_asked(dashboard, client):
    _app, engine = dashboard
    reply = login(client, "vera", next="/alerts")
    assert reply.status_code == 302 and reply.headers["Location"] == "/alerts"
    cookie = reply.headers["Set-Cookie"]
    assert cookie.startswith("pulse_session=") and "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie and "Secure" not in cookie  # public_url is http here
    with read_session(engine) as session:
        assert session.scalar(select(User.last_login_at).where(User.username == "vera"))
        logins = session.scalars(select(AuditLog).where(AuditLog.action == "login")).all()
    assert [a.username for a in logins] == ["vera"]
    assert client.get("/alerts", headers=HTML).status_code == 200
    evil = login(dashboard[0].server.test_client(), "vera", next="//evil.example/x")
    assert evil.headers["Location"] == "/"


def test_the_cookie_is_secure_when_the_dashboard_is_served_over_https(settings):
    dash_app, _engine = make_dashboard(settings.model_copy(update={"public_url": "https://p.org"}))
    reply = login(dash_app.server.test_client(), "vera")
    assert "Secure" in reply.headers["Set-Cookie"]


def test_a_wrong_password_or_an_inactive_user_is_refused_and_audited(dashboard, client):
    _app, engine = dashboard
    reply = login(client, "vera", "not the password")
    assert reply.status_code == 401 and "Wrong username or password" in reply.text
    assert sends_to_login(client.get("/", headers=HTML))
    assert login(client, "nobody").status_code == 401
    with read_session(engine) as session:
        failed = session.scalars(select(AuditLog).where(AuditLog.action == "login_failed")).all()
    assert [a.username for a in failed] == ["vera", None]  # an unknown name is not stored
    assert all("nobody" not in (a.target_id or "") for a in failed)
    from core.db import write_session

    with write_session(engine) as session:
        session.scalar(select(User).where(User.username == "anna")).active = False
    assert login(client, "anna").status_code == 401


def test_a_deactivated_user_loses_an_open_session_at_once(dashboard, client):
    from core.db import write_session

    _app, engine = dashboard
    assert login(client, "anna").status_code == 302
    assert client.get("/risk", headers=HTML).status_code == 200
    with write_session(engine) as session:
        session.scalar(select(User).where(User.username == "anna")).active = False
    assert sends_to_login(client.get("/risk", headers=HTML))


def test_repeated_failures_are_rate_limited_per_username_and_address(settings):
    dash_app, _engine = make_dashboard(settings.model_copy(update={"login_rate_limit": "3/300"}))
    client = dash_app.server.test_client()
    assert [login(client, "vera", "wrong password").status_code for _ in range(3)] == [401] * 3
    blocked = login(client, "vera")  # even the right password waits
    assert (
        blocked.status_code == 429 and "Too many failed sign-ins for &#39;vera&#39;" in blocked.text
    )
    assert login(client, "anna").status_code == 302  # another username is not blocked
    elsewhere = dash_app.server.test_client()
    token = csrf_from(elsewhere.get("/login").text)
    form = {"csrf_token": token, "username": "vera", "password": PASSWORD}
    other_address = elsewhere.post("/login", data=form, environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert other_address.status_code == 302


def test_the_rate_limit_setting_is_checked(monkeypatch):
    monkeypatch.setenv("PULSE_LOGIN_RATE_LIMIT", "five")
    with pytest.raises(ValueError, match="login_rate_limit 'five': use FAILURES/SECONDS"):
        Settings()
    assert Settings(login_rate_limit="10/60").login_limit == (10, 60)


def test_a_form_without_its_csrf_token_is_refused(dashboard, client):
    client.get("/login")
    missing = client.post("/login", data={"username": "vera", "password": PASSWORD})
    assert missing.status_code == 400 and "reload" in missing.text
    forged = client.post(
        "/login", data={"csrf_token": "guess", "username": "vera", "password": PASSWORD}
    )
    assert forged.status_code == 400
    assert login(client, "vera").status_code == 302
    assert client.post("/logout").status_code == 400  # no token: still signed in
    assert client.get("/", headers=HTML).status_code == 200
    menu = call_callback(client, [("nav-user", "children")], [("_pages_location", "pathname", "/")])
    token = re.search(r'"value":"([^"]+)","type":"hidden","name":"csrf_token"', menu.text)[1]
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert sends_to_login(client.get("/", headers=HTML))


def test_the_wall_token_opens_only_the_wall(dashboard):
    dash_app, _engine = dashboard
    client = dash_app.server.test_client()
    wrong = client.get(f"{WALL_PATH}?token=guess", headers=HTML)
    assert wrong.status_code == 403 and "not valid" in wrong.text
    assert client.get(WALL_PATH, headers=HTML).status_code == 403
    assert client.get(f"{WALL_PATH}?token={WALL_TOKEN}", headers=HTML).status_code == 200
    assert client.get(WALL_PATH, headers=HTML).status_code == 200  # the session remembers
    assert router(client, WALL_PATH).status_code == 200
    panels = call_callback(
        client, [("wall-probe", "children")], [("wall-probe-tick", "n_clicks", 1)]
    )
    assert response_of(panels, "wall-probe", "children") == "wall panels"
    assert sends_to_login(client.get("/", headers=HTML))
    assert router(client, "/").status_code == 403
    assert call_callback(client, RISK_OUTPUTS, RISK_INPUTS, RISK_STATE).status_code == 403
    menu = call_callback(client, [("nav-user", "children")], [("_pages_location", "pathname", "/")])
    assert response_of(menu, "nav-user", "children") == []  # the app's menu: empty on a wall


def test_the_wall_is_off_without_a_token_setting(settings):
    dash_app, _engine = make_dashboard(settings.model_copy(update={"wall_token": None}))
    dash.register_page("wall_probe_off", path="/probe-wall-off", min_role="wall", layout=html.Div())
    try:
        reply = dash_app.server.test_client().get("/probe-wall-off?token=x", headers=HTML)
    finally:
        dash.page_registry.pop("wall_probe_off")
    assert reply.status_code == 403 and "PULSE_WALL_TOKEN" in reply.text


def test_the_risk_queue_callback_refuses_a_viewer_and_audits_an_analyst(dashboard):
    dash_app, engine = dashboard
    message_id = add_flagged(engine, XSS)
    viewer = call_callback(as_role(dash_app, "viewer"), RISK_OUTPUTS, RISK_INPUTS, RISK_STATE)
    assert response_of(viewer, "risk-grid", "rowData") == []
    assert "needs the analyst role; you are viewer" in viewer.text and "script" not in viewer.text
    reply = call_callback(as_role(dash_app, "analyst"), RISK_OUTPUTS, RISK_INPUTS, RISK_STATE)
    rows = response_of(reply, "risk-grid", "rowData")
    assert [(r["id"], r["body"]) for r in rows] == [(message_id, XSS)]
    with read_session(engine) as session:
        reads = session.scalars(select(AuditLog).where(AuditLog.action == "read_message")).all()
    assert [(a.username, a.target_type, a.target_id) for a in reads] == [
        ("anna", "message", str(message_id))
    ]


def test_a_missing_secret_key_is_made_once_and_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(core.settings, "DATA_DIR", tmp_path)
    first, second = Settings().session_key, Settings().session_key
    key_file = tmp_path / "secrets" / "session.key"
    assert first == second == key_file.read_text().strip().encode() and len(first) == 64
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert Settings(secret_key="given").session_key == b"given"


def test_sessions_last_a_working_day(dashboard):
    assert dashboard[0].server.permanent_session_lifetime == timedelta(hours=12)
