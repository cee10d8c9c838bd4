"""Shared test helpers."""
import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load_script(script: Path, name: str):
    """A script of the repository (recipes, tools: not a package) imported as a module."""
    spec = importlib.util.spec_from_file_location(name, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def project_recipe():
    """A loader of project recipes: ``project_recipe("DensePoseCascade")`` -> its module."""
    return lambda project: _load_script(REPO / "projects" / project / "run.py",
                                        f"{project.lower()}_recipe")


@pytest.fixture(scope="session")
def tool_script():
    """A loader of tools: ``tool_script("build_pose_classes")`` -> tools/build_pose_classes.py."""
    return lambda name: _load_script(REPO / "tools" / f"{name}.py", f"tool_{name}")
