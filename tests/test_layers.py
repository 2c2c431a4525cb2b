"""The layering, as a checked contract: cli → workflow → {runner, reports} → core.

Every import in goldens/, runner/ and reports/ — at module level, inside functions and under
TYPE_CHECKING alike — is resolved to a module and its layer; an import that points up (or
sideways between runner and reports) is a violation. The core is every ``goldens`` module but
``goldens.cli``, ``goldens.workflow`` and the front doors beside it (the package itself, ``goldens.api``,
``goldens.pytest_plugin``); it imports none of the others.
"""
from __future__ import annotations

import ast
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("goldens", "runner", "reports")

# layer → the layers it may import (itself included)
ALLOWED = {
    "cli": {"cli", "workflow", "runner", "reports", "core"},
    "workflow": {"workflow", "runner", "reports", "core"},
    "runner": {"runner", "core"},
    "reports": {"reports", "core"},
    "core": {"core"},
}


# The workflow layer: the workflow and the front doors beside it that call it, goldens.api and the
# pytest plugin. The package's __init__ re-exports the API lazily (a module __getattr__), so as an
# importer it is a front door too; importing the package itself runs only its import-light body
# (``__version__``), so ``import goldens`` stays core.
FRONT_DOOR = ("goldens.workflow", "goldens.api", "goldens.pytest_plugin")
PACKAGE = "goldens"


def layer_of(module: str) -> str | None:
    """The layer of an absolute module name (None: not one of ours)."""
    top = module.split(".")[0]
    if top == "runner":
        return "runner"
    if top == "reports":
        return "reports"
    if top != "goldens":
        return None
    if module in ("goldens.cli", "goldens.__main__") or module.startswith("goldens.cli."):
        return "cli"  # __main__: `python -m goldens` is the command line
    if module in FRONT_DOOR or any(module.startswith(f"{door}.") for door in FRONT_DOOR):
        return "workflow"
    return "core"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(root: Path, path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import statement in the file, relative ones resolved;
    ``from pkg import name`` counts as ``pkg.name`` (a submodule or a name of pkg: same layer)."""
    here = module_name(root, path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found += [(node.lineno, f"{prefix}.{alias.name}") for alias in node.names]
    return found


def violations(root: Path) -> list[str]:
    """Every import in the three packages under ``root`` that breaks the layering."""
    problems = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            importer = module_name(root, path)
            source = "workflow" if importer == PACKAGE else layer_of(importer)
            for line, target in imported_modules(root, path):
                layer = layer_of(target)
                if layer is not None and layer not in ALLOWED[source]:
                    problems.append(f"{path.relative_to(root)}:{line}: {importer} ({source}) imports "
                                    f"{target} ({layer})")
    return problems


def test_the_layering_holds():
    assert violations(REPO) == []


def test_the_check_finds_a_core_module_importing_the_cli(tmp_path):
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    assert violations(tmp_path) == []
    model = tmp_path / "goldens" / "model.py"
    model.write_text(model.read_text() + "\n\ndef _render():\n    from .cli import app\n    return app\n")
    found = violations(tmp_path)
    assert len(found) == 1 and found[0].startswith("goldens/model.py:")
    assert found[0].endswith("goldens.core.model (core) imports goldens.cli.app (cli)")


def test_the_check_sees_relative_type_only_and_sideways_imports(tmp_path):
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "goldens" / "store" / "sneaky.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..workflow import Judgement\n")
    (tmp_path / "reports" / "sneaky.py").write_text("import runner.launch\n")
    assert sorted(violations(tmp_path)) == [
        "goldens/store/sneaky.py:3: goldens.store.sneaky (core) imports goldens.workflow.Judgement (workflow)",
        "reports/sneaky.py:1: reports.sneaky (reports) imports runner.launch (runner)",
    ]


def test_the_check_keeps_the_api_and_the_plugin_out_of_the_core(tmp_path):
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "goldens" / "sneaky.py").write_text(
        "def f():\n    from .api import judge\n    from . import pytest_plugin\n")
    assert sorted(violations(tmp_path)) == [
        "goldens/sneaky.py:2: goldens.sneaky (core) imports goldens.api.judge (workflow)",
        "goldens/sneaky.py:3: goldens.sneaky (core) imports goldens.pytest_plugin (workflow)",
    ]
