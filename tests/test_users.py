"""Users: roles, password hashing, the CLI."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from app import cli
from core.users import (
    UserError,
    add_user,
    ensure_first_admin,
    hash_password,
    list_users,
    verify_password,
)


def test_password_hash_is_salted_scrypt_and_verifies():
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first.startswith("scrypt$") and first != second
    assert verify_password("correct horse", first)
    assert not verify_password("wrong horse!", first)
    assert not verify_password("correct horse", "garbage")
    assert not verify_password("correct horse", "md5$1$2$3$4$5")


def test_add_and_list_users(db_engine):
    add_user(db_engine, "ana", "a long password", "analyst")
    add_user(db_engine, "wall-tv", "another long one", "wall")
    assert [(u.username, u.role) for u in list_users(db_engine)] == [
        ("ana", "analyst"),
        ("wall-tv", "wall"),
    ]
    assert verify_password("a long password", list_users(db_engine)[0].password_hash)
    with pytest.raises(UserError, match="exists already"):
        add_user(db_engine, "ana", "a long password", "viewer")
    with pytest.raises(UserError, match="unknown role 'boss'"):
        add_user(db_engine, "bo", "a long password", "boss")
    with pytest.raises(UserError, match="too short"):
        add_user(db_engine, "bo", "short", "viewer")


def test_users_cli_prompts_for_the_password(tmp_path, monkeypatch):
    monkeypatch.setenv("PULSE_DATABASE_URL", f"sqlite:///{tmp_path / 'u.db'}")
    runner = CliRunner()
    result = runner.invoke(
        cli, ["users", "add", "maria", "--role", "admin"], input="s3cret-pass!\ns3cret-pass!\n"
    )
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output
    result = runner.invoke(
        cli, ["users", "add", "maria", "--role", "admin", "--password", "x" * 12]
    )
    assert result.exit_code == 1 and "exists already" in result.output
    result = runner.invoke(cli, ["users", "list"])
    assert result.stdout == "maria\tadmin\n"


def test_the_first_admin_is_made_once_with_a_password_that_signs_in(db_engine):
    password = ensure_first_admin(db_engine)
    (admin,) = list_users(db_engine)
    assert (admin.username, admin.role) == ("admin", "admin")
    assert password and verify_password(password, admin.password_hash)
    assert ensure_first_admin(db_engine) is None and len(list_users(db_engine)) == 1
