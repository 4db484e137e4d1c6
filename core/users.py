"""Dashboard users: roles and passwords hashed with scrypt (a standard memory-hard KDF)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from sqlalchemy import Engine, select

from core.db import read_session, write_session
from core.models import ROLES, User

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
SCRYPT_MAXMEM = 64 * 1024 * 1024
MIN_PASSWORD_LENGTH = 10


class UserError(ValueError):
    """A user cannot be added or changed; the message says why."""


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash`` for ``password``, with a fresh random salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=SCRYPT_MAXMEM
    )
    encoded = [base64.b64encode(x).decode() for x in (salt, digest)]
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${encoded[0]}${encoded[1]}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a hash made by :func:`hash_password` (constant time)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=SCRYPT_MAXMEM,
            dklen=len(expected),
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def add_user(engine: Engine, username: str, password: str, role: str) -> User:
    """Create a user; raises UserError for a taken name, an unknown role or a short password."""
    username = username.strip()
    if not username:
        raise UserError("the username is empty")
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"the password is too short: use at least {MIN_PASSWORD_LENGTH} characters")
    with write_session(engine) as session:
        if session.scalar(select(User).where(User.username == username)) is not None:
            raise UserError(f"user {username!r} exists already")
        user = User(username=username, password_hash=hash_password(password), role=role)
        session.add(user)
    return user


def list_users(engine: Engine) -> list[User]:
    """All users, by name."""
    with read_session(engine) as session:
        return list(session.scalars(select(User).order_by(User.username)))


def ensure_first_admin(engine: Engine, username: str = "admin") -> str | None:
    """On a database with no users, create ``username`` as admin with a random password and
    return that password (to show once); None when users exist already."""
    if list_users(engine):
        return None
    password = secrets.token_urlsafe(12)
    add_user(engine, username, password, "admin")
    return password
