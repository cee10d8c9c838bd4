"""Shared test helpers."""
import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load_project_recipe(project: str):
    """``projects/<project>/run.py`` imported as a module (the recipes are scripts, not a package)."""
    script = REPO / "projects" / project / "run.py"
    spec = importlib.util.spec_from_file_location(f"{project.lower()}_recipe", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def project_recipe():
    """A loader of project recipes: ``project_recipe("DensePoseCascade")`` -> its module."""
    return _load_project_recipe
