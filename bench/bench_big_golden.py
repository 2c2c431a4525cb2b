"""A ~300 MB golden: time and peak memory of ``golden validate`` and ``golden diff``.

Builds, in a temp folder, one golden file of ``--metrics`` metrics × ``--steps`` steps at full
precision (the current Megatron layout: about 300 MB at the defaults) and a candidate file with
every value nudged; then runs, each in its own process, with the page cache warm:

- the baseline: ``json.load`` of the golden (what any reader of the file pays at least);
- ``golden validate GOLDEN``;
- ``golden diff GOLDEN CANDIDATE --format json``.

It prints each one's wall time and peak RSS (``wait4``'s ``ru_maxrss``) and their ratios to the
baseline measured in the same run, and checks the target of issue 15: validate and diff each
under 2 GiB. ``--code DIR`` measures another checkout of the toolkit (e.g. an older commit) on
the same files.

    python bench/bench_big_golden.py [--steps 1450000] [--metrics 5] [--code DIR]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METRICS = ("lm loss", "num-zeros", "iteration-time", "mem-allocated-bytes", "mem-max-allocated-bytes")
LIMIT_BYTES = 2 * 1024**3


def write_golden(path: Path, steps: int, metrics: int, *, nudge: float = 0.0, seed: int = 0) -> int:
    """A golden file exactly as ``dumps_golden`` lays it out (indent 4), written a block at a time
    so the builder itself stays small. Returns its size in bytes."""
    import numpy as np

    rng = np.random.default_rng(seed)
    names = (METRICS + tuple(f"metric-{i}" for i in range(metrics)))[:metrics]
    block = 200_000
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("{\n")
        for m, name in enumerate(names):
            fh.write(f'    "{name}": {{\n        "start_step": 1,\n        "end_step": {steps},\n'
                     f'        "step_interval": 1,\n        "values": {{\n')
            for start in range(1, steps + 1, block):
                stop = min(start + block, steps + 1)
                values = 10.0 + rng.standard_normal(stop - start)
                values *= 1.0 + nudge
                last = stop == steps + 1
                fh.write(",\n".join(f'            "{s}": {v!r}'
                                     for s, v in zip(range(start, stop), values.tolist(), strict=True)))
                fh.write("\n" if last else ",\n")
            fh.write("        }\n    }" + (",\n" if m < len(names) - 1 else "\n"))
        fh.write("}")
    return path.stat().st_size


def measure(argv: list[str], code: Path) -> tuple[float, int, int, str]:
    """(seconds, peak RSS in bytes, exit code, last line of output) of one command in its own process."""
    env = dict(os.environ, PYTHONPATH=str(code), OPENBLAS_NUM_THREADS="1", CI="1")
    env.pop("GOLDEN_STORE", None)
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=code, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    lines = out.decode(errors="replace").strip().splitlines()
    return seconds, usage.ru_maxrss * 1024, proc.returncode, (lines[-1] if lines else "")[:120]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_450_000, help="steps per metric")
    parser.add_argument("--metrics", type=int, default=5)
    parser.add_argument("--code", type=Path, default=REPO, help="the toolkit checkout to run (default: this one)")
    args = parser.parse_args()
    code = args.code.resolve()
    with tempfile.TemporaryDirectory(prefix="golden-big-") as tmp:
        golden, candidate = Path(tmp) / "golden_values_dev_cpu.json", Path(tmp) / "cand" / "golden_values_dev_cpu.json"
        candidate.parent.mkdir()
        size = write_golden(golden, args.steps, args.metrics)
        write_golden(candidate, args.steps, args.metrics, nudge=1e-3)
        print(f"golden: {args.metrics} metrics x {args.steps} steps = {size / 1e6:.0f} MB; code: {code}")
        for path in (golden, candidate):  # warm the page cache
            path.read_bytes()
        python = sys.executable
        runs = {
            "json.load (baseline)": [python, "-c", "import json, sys; json.load(open(sys.argv[1]))", str(golden)],
            "golden validate": [python, "-m", "goldens", "validate", str(golden)],
            "golden diff": [python, "-m", "goldens", "diff", str(golden), str(candidate), "--format", "json"],
        }
        results = {label: measure(argv, code) for label, argv in runs.items()}
    base_seconds, base_rss, _, _ = results["json.load (baseline)"]
    failed = False
    for label, (seconds, rss, code_, last) in results.items():
        ratio = ("" if label.startswith("json")
                 else f"   {seconds / base_seconds:5.2f}x time, {rss / base_rss:5.2f}x memory")
        print(f"  {label:22} {seconds:7.1f} s  peak RSS {rss / 2**20:7.0f} MiB  exit {code_}{ratio}")
        if not label.startswith("json"):
            within = rss < LIMIT_BYTES and code_ in (0, 1)
            failed |= not within
            if not within:
                print(f"    over the target (under {LIMIT_BYTES / 2**30:.0f} GiB, exit 0 or 1): {last}")
    print("target met: validate and diff each under 2 GiB" if not failed else "target NOT met")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
