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
