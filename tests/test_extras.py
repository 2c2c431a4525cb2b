"""Each command's optional extra: a missing one is one line naming it, exit 2, nothing written."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from goldens.cli import extras

REPO = Path(__file__).resolve().parents[1]
SEED = "bert_mcore_tp2_pp2_resume_torch_dist_local_spec"


def golden_without(extra: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`golden ARGS` in a fresh interpreter in which every module of ``extra`` counts as absent."""
    script = (f"import sys; from goldens.cli import extras; extras.EXTRAS[{extra!r}] = ('no_such_module_for_test',); "
              f"sys.argv = ['golden', *{list(args)!r}]; from goldens.cli import main; main()")
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})


@pytest.mark.parametrize("extra, args", [
    ("runner", ["run", SEED, "--store", str(REPO / "cases")]),
    ("runner", ["check", SEED, "--store", str(REPO / "cases")]),
    ("tb", ["import-tb", "logs", "-o", "artifact.json"]),
])
def test_a_command_without_its_extra_names_it_in_one_line_and_exits_2(tmp_path, extra, args):
    (tmp_path / "logs").mkdir()
    proc = golden_without(extra, *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0] == (f"error: golden {args[0]} needs the {extra!r} extra (missing: no_such_module_for_test): "
                        f"pip install -c requirements/lock.txt -e '.[{extra}]'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs"]  # no runs/, no artifact


def test_missing_modules_lists_only_what_cannot_be_imported(monkeypatch):
    monkeypatch.setitem(extras.EXTRAS, "demo", ("json", "no_such_module_for_test", "no_such_pkg.sub"))
    assert extras.missing_modules("demo") == ["no_such_module_for_test", "no_such_pkg.sub"]
    monkeypatch.setitem(extras.EXTRAS, "demo", ("json", "os.path"))
    assert extras.missing_reason("demo") is None
    extras.require_extra("demo", "demo")  # installed: no error


def test_every_extra_module_is_declared_in_the_matching_pyproject_extra():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {extra: " ".join(reqs).lower() for extra, reqs in project["optional-dependencies"].items()}
    distribution = {"torch": "torch", "megatron.core": "megatron-core", "psutil": "psutil",
                    "tensorboard": "tensorboard", "google.protobuf": "tensorboard"}  # protobuf comes with it
    for extra, modules in extras.EXTRAS.items():
        for module in modules:
            assert distribution[module] in declared[extra], (extra, module)
