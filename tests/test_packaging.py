"""The package list in pyproject.toml must name every folder under services/."""

import subprocess
import sys
import tomllib
from pathlib import Path

from conftest import REPO


def test_every_services_folder_is_a_listed_package():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    found = set()
    for folder in [REPO / "services", *(REPO / "services").rglob("*")]:
        if not folder.is_dir() or folder.name == "__pycache__":
            continue
        # a Python package, or a folder of data files only (the generator's web page)
        tracked = [p for p in folder.iterdir() if p.is_file() and not p.name.endswith(".pyc")]
        if (
            (folder / "__init__.py").exists()
            or tracked
            and not any(p.suffix == ".py" for p in tracked)
        ):
            rel = folder.relative_to(REPO / "services").parts
            found.add(".".join(("gbsynth", *rel)))
    assert found == listed


def test_data_packages_ship_their_files():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    package_data = pyproject["tool"]["setuptools"]["package-data"]
    for package in ("gbsynth.generator.static", "gbsynth.generator.static.vendor"):
        folder = REPO / "services" / Path(*package.split(".")[1:])
        patterns = package_data[package]
        for path in folder.iterdir():
            if path.is_file():
                assert any(path.match(p) for p in patterns), f"{path} would not be installed"


def test_cli_help_lists_commands():
    out = subprocess.run(
        [sys.executable, "-m", "gbsynth", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "gbsynth" in out


def test_command_modules_follow_the_naming_rule():
    # docs/contributing.md: a service's subcommand is its package's main.py, an offline
    # tool's is cli_<command>.py; argparse lives only in those and in the table itself.
    from gbsynth.cli import COMMANDS

    services = {"emulator-worker", "pruner", "trainer", "generator"}
    for name, (module, _) in COMMANDS.items():
        expected = "main" if name in services else "cli_" + name.replace("-", "_")
        assert module.rsplit(".", 1)[1] == expected, (name, module)
    command_files = {
        REPO / "services" / Path(*module.split(".")[1:]).with_suffix(".py")
        for module, _ in COMMANDS.values()
    }
    for path in (REPO / "services").rglob("*.py"):
        if "import argparse" in path.read_text() and path.name != "cli.py":
            assert path in command_files or path.name in _ARGPARSE_HELPERS, path


# Library modules handed a command's parsed arguments: the default model's recipe
# (gbsynth train --recipe).
_ARGPARSE_HELPERS = {"recipe.py"}
