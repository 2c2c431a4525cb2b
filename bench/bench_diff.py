"""Benchmark one ``golden diff A B`` against Megatron's own per-case check on the same pair.

The baseline, measured in the same run: Megatron's CI check of one case, as run_ci_test.sh runs it —
``pytest test_pretraining_regular_pipeline.py --golden-values-path A --actual-values-path B
--train-iters N --model-config-path model_config.yaml`` (its python_test_utils from ../shared, in a
throwaway package root). Ours: ``golden diff A B --policy megatron`` (same verdict, the result
printed). Both are new processes, timed wall-clock, best of ``--repeat``. Targets: ours <= 0.25 s and
at least 2× faster. Also lists which heavy modules the diff imported (``-X importtime``): none of
pandas, deepdiff, scipy, matplotlib, torch should be, unless the comparison needs them.

    python bench/bench_diff.py [--repeat 7]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MEGATRON = REPO.parent / "shared" / "fixtures" / "megatron"
PAIRS = (  # (case, reference, candidate): the same case on two platforms, a real difference
    ("bert/bert_mcore_tp2_pp2", "golden_values_dev_dgx_h100.json", "golden_values_dev_dgx_a100.json"),
    ("gpt/gpt3_7b_tp1_pp4_memory_speed", "golden_values_dev_dgx_h100.json", "golden_values_dev_dgx_gb200.json"),
)
HEAVY = ("pandas", "deepdiff", "scipy", "matplotlib", "torch")


def best_of(command: list[str], repeat: int, env: dict[str, str]) -> tuple[float, float, int]:
    """(best wall seconds, best CPU seconds of the child — user + system, less sensitive to a busy
    machine —, exit code)."""
    import resource

    best, cpu_best, code = float("inf"), float("inf"), 0
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        code = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env).returncode
        best = min(best, time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_best = min(cpu_best, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return best, cpu_best, code


def megatron_package(root: Path) -> Path:
    package = root / "tests" / "functional_tests" / "python_test_utils"
    package.mkdir(parents=True)
    for folder in (root / "tests", root / "tests" / "functional_tests", package):
        (folder / "__init__.py").write_text("")
    for source in (MEGATRON / "python_test_utils").glob("*.py"):
        shutil.copy(source, package / source.name)
    return package


def heavy_imports(command: list[str]) -> list[str]:
    """The heavy top-level packages a command imports, read from ``python -X importtime``."""
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "goldens", *command[1:]],
                         capture_output=True, text=True)
    loaded = {line.split("|")[-1].strip().split(".")[0] for line in run.stderr.splitlines() if "|" in line}
    return sorted(loaded & set(HEAVY))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    if not MEGATRON.is_dir():
        raise SystemExit(f"{MEGATRON} is absent: the baseline is Megatron's own check (../shared)")
    sys.path.insert(0, str(REPO))
    from goldens.megatron.case import read_megatron_case

    golden = shutil.which("golden") or str(Path(sys.executable).with_name("golden"))
    root = Path(tempfile.mkdtemp(prefix="bench_diff_"))
    try:
        package = megatron_package(root)
        env = {**os.environ, "PYTHONPATH": str(root), "CI": ""}
        bare, _, _ = best_of([sys.executable, "-c", "pass"], args.repeat, env)
        print(f"bare python start-up: {bare * 1000:.0f} ms")
        slowest, lowest = 0.0, float("inf")
        for case_path, reference, candidate in PAIRS:
            case = MEGATRON / "test_cases" / case_path
            config = read_megatron_case(case / "model_config.yaml")
            theirs_cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          str(package / "test_pretraining_regular_pipeline.py"),
                          "--golden-values-path", str(case / reference), "--actual-values-path", str(case / candidate),
                          "--train-iters", str(config.train_iters),
                          "--model-config-path", str(case / "model_config.yaml")]
            if config.allow_nondeterministic:
                theirs_cmd.append("--allow-nondeterministic-algo")
            ours_cmd = [golden, "diff", str(case / reference), str(case / candidate), "--policy", "megatron"]
            theirs, their_cpu, their_code = best_of(theirs_cmd, args.repeat, env)
            ours, our_cpu, our_code = best_of(ours_cmd, args.repeat, env)
            verdict = "same verdict" if (their_code == 0) == (our_code == 0) else "DIFFERENT VERDICTS"
            print(f"{case_path} ({candidate} vs {reference}): Megatron's pytest {theirs:.3f} s wall, {their_cpu:.3f} s "
                  f"CPU (exit {their_code}); golden diff {ours:.3f} s wall, {our_cpu:.3f} s CPU (exit {our_code}); "
                  f"{verdict}; ratio {theirs / ours:.1f}× wall, {their_cpu / our_cpu:.1f}× CPU")
            slowest, lowest = max(slowest, ours), min(lowest, theirs / ours)
        print(f"slowest golden diff {slowest:.3f} s (target <= 0.25 s: {'OK' if slowest <= 0.25 else 'OVER'}); "
              f"lowest ratio {lowest:.1f}× (target >= 2: {'OK' if lowest >= 2 else 'UNDER'})")
        case = MEGATRON / "test_cases" / PAIRS[0][0]
        heavy = heavy_imports(["golden", "diff", str(case / PAIRS[0][1]), str(case / PAIRS[0][2]),
                               "--policy", "megatron"])
        print(f"heavy modules imported by golden diff among {', '.join(HEAVY)}: {', '.join(heavy) or 'none'}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
