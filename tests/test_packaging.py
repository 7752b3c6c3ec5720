"""The package list in pyproject.toml must name every folder under services/."""

import subprocess
import sys
import tomllib

from conftest import REPO


def test_every_services_folder_is_a_listed_package():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    found = set()
    for init in (REPO / "services").rglob("__init__.py"):
        rel = init.parent.relative_to(REPO / "services").parts
        found.add(".".join(("gbsynth", *rel)))
    assert found == listed


def test_cli_help_lists_commands():
    out = subprocess.run(
        [sys.executable, "-m", "gbsynth", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "gbsynth" in out
