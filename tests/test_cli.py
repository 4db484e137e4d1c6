"""Every command and group answers --help."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from app import cli

EXPECTED = {"run", "serve", "worker", "migrate", "import", "export", "users"}


def walk(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += walk(command, (*path, name))
        else:
            found.append((*path, name))
    return found


def test_the_commands_of_the_design_exist():
    assert set(cli.commands) >= EXPECTED
    assert {"add", "list"} <= set(cli.commands["users"].commands)
    assert "messages" in cli.commands["export"].commands


@pytest.mark.parametrize("path", walk(cli), ids=lambda p: " ".join(p) or "pulse")
def test_help(path):
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and len(result.output.splitlines()) > 3
