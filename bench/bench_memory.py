"""The CPU memory figure of the seed case across virtual environments: it must depend on the code,
not on which files happen to be in the page cache.

Runs `golden run CASE` with each environment's interpreter, alternating, ``--repeats`` times each,
and reports per run the figure the golden gates (``cpu-max-rss-anon-bytes``: max over steps ≥ 2 of
each phase), the spread within an environment and the largest difference between environments as a
ratio of the figures measured in this run. Exit 1 if that difference exceeds ``--limit`` (2 %).

    python bench/bench_memory.py --python /path/venv-a/bin/python --python /path/venv-b/bin/python
    # two fresh environments from the lock:
    #   python3 -m venv A && A/bin/pip install -c requirements/lock.txt -e ".[runner,tb,test]"
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASE = "bert_mcore_tp2_pp2_resume_torch_dist_local_spec"
METRIC = "cpu-max-rss-anon-bytes"


def one_run(python: str, work: Path, index: int, launcher: str) -> dict[int, float]:
    run_dir = work / f"run-{index}"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    proc = subprocess.run([python, "-m", "goldens", "run", CASE, "--store", str(REPO / "cases"), "--out", str(run_dir),
                           "--launcher", launcher], cwd=work, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{python}: golden run exited {proc.returncode}: {proc.stderr[-1500:]}")
    doc = json.loads((run_dir / "artifact.json").read_text())
    figures = {}
    for number, phase in doc["phases"].items():
        values = phase["metrics"][METRIC]["values"]
        figures[int(number)] = max(float(v) for step, v in values.items() if int(step) >= 2 and v != "nan")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", required=True, help="an environment's interpreter (repeat)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--launcher", choices=("fork", "torchrun"), default="fork")
    parser.add_argument("--limit", type=float, default=0.02)
    args = parser.parse_args()
    results: dict[str, list[dict[int, float]]] = {p: [] for p in args.python}
    with tempfile.TemporaryDirectory() as tmp:
        index = 0
        for _ in range(args.repeats):
            for python in args.python:
                index += 1
                results[python].append(one_run(python, Path(tmp), index, args.launcher))
    print(f"{METRIC} of `golden run {CASE}` (--launcher {args.launcher}), max over steps >= 2, MB:")
    worst = 0.0
    for phase in (1, 2):
        means = {}
        for python, runs in results.items():
            values = [r[phase] for r in runs]
            means[python] = statistics.fmean(values)
            spread = (max(values) - min(values)) / min(values)
            print(f"  phase {phase}  {python}: " + ", ".join(f"{v / 1e6:.2f}" for v in values)
                  + f"  (spread {spread:.3%})")
        low, high = min(means.values()), max(means.values())
        across = (high - low) / low
        worst = max(worst, across)
        print(f"  phase {phase}  largest difference between environments: {across:.3%} (limit {args.limit:.0%})")
    return 0 if worst <= args.limit else 1


if __name__ == "__main__":
    sys.exit(main())
