"""The settings object and its documentation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

import core.settings
from core.settings import PROJECT_ROOT, Settings

README = PROJECT_ROOT / "README.md"


def readme_settings() -> dict[str, str]:
    """`PULSE_X` -> default, from the README's configuration table."""
    rows = re.findall(r"^\| `(PULSE_[A-Z_]+)` \| ([^|]+) \|", README.read_text(), re.MULTILINE)
    return {name: default.strip().strip("`") for name, default in rows}


def documented_default(value: object) -> str:
    if value is None:
        return "(unset)"
    if value == "":
        return "(empty)"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def test_every_setting_is_in_the_readme_with_its_default():
    documented = readme_settings()
    fields = {f"PULSE_{name.upper()}": f.default for name, f in Settings.model_fields.items()}
    assert set(documented) == set(fields), "README table and Settings differ"
    for name, default in fields.items():
        assert documented[name] == documented_default(default), name


def test_every_setting_has_a_description():
    for name, field in Settings.model_fields.items():
        assert field.description, name


def test_environment_variables_and_dotenv_are_read(monkeypatch, tmp_path: Path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("PULSE_PORT=9001\nPULSE_DISTRICT_NAME=Riverside\n")
    monkeypatch.setenv("PULSE_PORT", "9002")
    settings = Settings()
    assert settings.port == 9002  # the environment wins over .env
    assert settings.district_name == "Riverside"


def test_a_bad_value_names_the_setting(monkeypatch):
    monkeypatch.setenv("PULSE_TIMEZONE", "Mars/Olympus")
    with pytest.raises(ValidationError, match="unknown time zone 'Mars/Olympus'"):
        Settings()
    monkeypatch.setenv("PULSE_TIMEZONE", "UTC")
    monkeypatch.setenv("PULSE_PORT", "eighty")
    with pytest.raises(ValidationError, match="port"):
        Settings()


def test_relative_sqlite_path_is_under_the_project_folder():
    assert Settings().resolved_database_url == f"sqlite:///{PROJECT_ROOT / 'data' / 'pulse.db'}"
    assert (
        Settings(database_url="sqlite:////srv/p.db").resolved_database_url == "sqlite:////srv/p.db"
    )
    pg = "postgresql+psycopg://u:p@db/pulse"
    assert Settings(database_url=pg).resolved_database_url == pg


def test_author_key_is_generated_once_and_kept(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(core.settings, "DATA_DIR", tmp_path)
    first = Settings().author_key
    second = Settings().author_key
    assert first == second and len(first) == 64
    key_file = tmp_path / "secrets" / "author_hash.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert list(key_file.parent.iterdir()) == [key_file]
    assert Settings(author_hash_key="given").author_key == b"given"
