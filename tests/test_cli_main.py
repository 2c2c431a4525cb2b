"""The installed entry point: usage errors are one line and exit 2, like every input error."""
from __future__ import annotations

import subprocess
import sys

import pytest


def golden(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "goldens", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args, says", [
    (["show"], "Missing argument"),
    (["show", "x", "--phase", "3"], "--phase"),
    (["diff", "--bogus"], "No such option: --bogus"),
    (["nosuchcommand"], "No such command"),
])
def test_usage_errors_are_one_line_and_exit_2(args, says):
    proc = golden(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_help_and_bare_command_still_print_the_help():
    assert golden("--help").returncode == 0
    assert "Commands" in golden("--help").stdout
    bare = golden()
    assert "Usage: " in bare.stdout + bare.stderr


def test_a_command_exit_code_passes_through():
    proc = golden("show", "no-such-case", "--store", "cases")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1


def test_help_imports_no_heavy_library():
    code = ("import sys; sys.argv = ['golden', '--help']\n"
            "from goldens.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('numpy', 'pandas', 'torch', 'deepdiff', 'matplotlib', 'scipy') "
            "if m in sys.modules), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "Commands" in proc.stdout and proc.stderr.strip() == "[]", proc.stderr


def test_version_and_shell_completion():
    import os
    import shutil
    from importlib.metadata import version

    proc = golden("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"golden {version('golden-toolkit')}"
    script = shutil.which("golden") or pytest.skip("the golden script is not installed in this environment")
    shown = subprocess.run([script, "--show-completion", "bash"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "_golden_completion" in shown.stdout
    done = subprocess.run([script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "_GOLDEN_COMPLETE": "complete_bash", "COMP_WORDS": "golden di",
                               "COMP_CWORD": "1"})
    assert done.stdout.split() == ["diff"], done.stdout + done.stderr
