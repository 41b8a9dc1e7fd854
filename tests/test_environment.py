"""environment.yml (conda) and pyproject.toml (pip) must name the same dependencies."""
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
CONDA_TO_PIP = {"pytorch": "torch"}  # conda-forge names that differ from PyPI's
NOT_DEPENDENCIES = {"python", "pip"}


def _pyproject_requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        names += extra
    return {Requirement(r).name.lower(): Requirement(r).specifier for r in names}


def _conda_requirements():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    found = {}
    for entry in env["dependencies"]:
        specs = entry["pip"] if isinstance(entry, dict) else [entry]
        for spec in specs:
            if spec.startswith("-e"):
                continue  # the editable install of this very package
            req = Requirement(spec.replace(" ", ""))
            name = CONDA_TO_PIP.get(req.name.lower(), req.name.lower())
            if name not in NOT_DEPENDENCIES:
                found[name] = req.specifier
    return found


def test_same_package_names():
    pip, conda = _pyproject_requirements(), _conda_requirements()
    assert set(pip) == set(conda), (
        f"only in pyproject.toml: {sorted(set(pip) - set(conda))}; "
        f"only in environment.yml: {sorted(set(conda) - set(pip))}")


@pytest.mark.parametrize("name", sorted(_pyproject_requirements()))
def test_same_version_bounds(name):
    assert _conda_requirements().get(name) == _pyproject_requirements()[name], (
        f"{name}: pyproject.toml and environment.yml give different version bounds")


def test_torch_never_above_the_local_wheel():
    # A newer torch would download gigabytes on the course machines.
    for spec in (_pyproject_requirements()["torch"], _conda_requirements()["torch"]):
        assert not spec.contains("2.15.0") and spec.contains("2.14.1")
