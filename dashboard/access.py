"""Who is asking, and what they may see: the signed-in user of the current request, role order,
and the audit trail of message reads.

The login hook (dashboard/auth.py) puts the verified user in ``flask.g`` before any route or Dash
callback runs; these functions read it. Outside a request (a test calling a data function) there
is no user: pass the username and role to data functions as parameters instead.
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import g, has_request_context
from sqlalchemy import Engine

from core.db import write_session
from core.models import ROLES, AuditLog

USERNAME_KEY = "pulse_username"  # keys in flask.g, set by the login hook
ROLE_KEY = "pulse_role"
DEFAULT_MIN_ROLE = "viewer"


def current_username() -> str | None:
    """The signed-in user's name; None when anonymous, on the wall, or outside a request."""
    return g.get(USERNAME_KEY) if has_request_context() else None


def current_role() -> str | None:
    """The current request's role (``wall`` for a wall-token session); None when anonymous."""
    return g.get(ROLE_KEY) if has_request_context() else None


def role_rank(role: str) -> int:
    """The rank of ``role`` in ROLES (wall < viewer < analyst < admin); ValueError if unknown."""
    try:
        return ROLES.index(role)
    except ValueError:
        raise ValueError(f"unknown role {role!r}: use one of {', '.join(ROLES)}") from None


def has_role(role: str | None, required: str) -> bool:
    """Whether ``role`` (None = anonymous) is at least ``required``."""
    return role is not None and role_rank(role) >= role_rank(required)


def role_at_least(required: str) -> bool:
    """Whether the current request's user has ``required`` or a higher role."""
    return has_role(current_role(), required)


def require_role(role: str | None, required: str, doing: str) -> None:
    """Raise PermissionError naming what needs ``required`` when ``role`` is below it."""
    if not has_role(role, required):
        raise PermissionError(f"{doing} needs the {required} role; you are {role or 'signed out'}")


def audit_message_read(
    engine: Engine,
    username: str | None,
    message_ids: Iterable[int],
    action: str = "read_message",
) -> int:
    """Write one audit_log row per message ``username`` was shown; returns how many were written."""
    rows = [
        AuditLog(username=username, action=action, target_type="message", target_id=str(m))
        for m in dict.fromkeys(message_ids)
    ]
    if rows:
        with write_session(engine) as session:
            session.add_all(rows)
    return len(rows)
