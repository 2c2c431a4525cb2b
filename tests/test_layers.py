"""The layering, as a checked contract: import-linter's contracts in pyproject.toml (``lint-imports``).

One way down — ``goldens.__main__``; the CLI and the pytest plugin; the API; the workflow; runner and
reports; approvals and CI fetch; a command's inputs; the store; Megatron's tree readers; the file edge;
the pure core — no import cycle inside a package, and a core that imports nothing else of the project
and no file, process, network or environment module. Imports inside functions and under
TYPE_CHECKING count. What import-linter cannot see (a call to ``open`` or a read of ``os.environ``
through a name the core was handed) is checked here on the core's syntax tree.
"""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter", reason="import-linter is in the test extra")

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("goldens", "runner", "reports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """import-linter on the packages under ``root``, with the repository's contracts."""
    script = ("import sys; from importlinter.cli import lint_imports; "
              "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True))")
    return subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


def copy_of_the_tree(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_contracts_hold():
    out = lint_imports(REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Contracts: 3 kept, 0 broken." in out.stdout


def test_the_contracts_break_on_a_deliberate_violation(tmp_path):
    root = copy_of_the_tree(tmp_path)
    model = root / "goldens" / "core" / "model.py"
    model.write_text(model.read_text() + "\n\ndef _render():\n    from ..cli import app\n    return app\n")
    sneaky = root / "goldens" / "store" / "sneaky.py"
    sneaky.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                      "    from ..workflow.judge import Judgement\n")
    (root / "goldens" / "core" / "peek.py").write_text("import subprocess\n")
    out = lint_imports(root)
    assert out.returncode == 1
    assert "goldens.core.model -> goldens.cli" in out.stdout
    assert "goldens.store.sneaky -> goldens.workflow.judge" in out.stdout
    assert "goldens.core.peek -> subprocess" in out.stdout
    # the core importing the CLI also closes a cycle among goldens' own packages (cli reaches core)
    assert "No cycles are allowed in goldens." in out.stdout
    assert "Contracts: 0 kept, 3 broken." in out.stdout


def test_the_contracts_break_on_a_cycle(tmp_path):
    root = copy_of_the_tree(tmp_path)
    align = root / "goldens" / "core" / "align.py"
    align.write_text(align.read_text() + "\n\ndef _judge():\n    from .compare import compare\n    return compare\n")
    out = lint_imports(root)
    assert out.returncode == 1
    assert "No cycles are allowed in goldens.core" in out.stdout


# Calls the core may not make: files, processes, the environment. (Imports are import-linter's.)
IO_CALLS = {"open", "read_text", "write_text", "read_bytes", "write_bytes", "getenv", "system", "popen", "input"}
IO_NAMES = {"environ"}


def io_in_core(root: Path) -> list[str]:
    found = []
    for path in sorted((root / "goldens" / "core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = None
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
                name = name if name in IO_CALLS else None
            elif isinstance(node, ast.Attribute) and node.attr in IO_NAMES:
                name = node.attr
            if name:
                found.append(f"{path.relative_to(root)}:{node.lineno}: {name}")
    return found


def test_the_core_does_no_io():
    assert io_in_core(REPO) == []


def test_the_io_check_finds_a_file_read_in_the_core(tmp_path):
    root = copy_of_the_tree(tmp_path)
    (root / "goldens" / "core" / "peek.py").write_text("def f(p):\n    return p.read_text(), open(p)\n")
    assert io_in_core(root) == ["goldens/core/peek.py:2: read_text", "goldens/core/peek.py:2: open"]


def test_importing_the_core_imports_nothing_else_of_the_project():
    script = ("import sys, goldens.core, goldens.core.compare, goldens.core.policy, goldens.core.stats; "
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('goldens', 'runner', 'reports')))")
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    loaded = ast.literal_eval(out.stdout.strip())
    assert "goldens.core.compare" in loaded
    assert [m for m in loaded if m != "goldens" and not m.startswith("goldens.core")] == []
