"""Benchmark the comparison engine: 20 metrics × 1,000,000 steps, then 2× the points.

Prints the time of ``compare()`` (best of ``--repeat``; target under 1 s at 20 × 1,000,000) and its
ratio to a floor measured in the same run — ``numpy.isclose`` and a count over the same arrays, the
least any per-step check does —, its peak traced memory (tracemalloc, which numpy reports its
buffers to), the time ratio for 2× the points (target ≤ 2.2: the engine must stay linear-ish, i.e.
no Python loop over steps), and ``golden --help`` start-up time against a bare ``python -c pass``
measured in the same run.

    python bench/bench_compare.py [--steps 1000000] [--metrics 20] [--repeat 3]
"""
from __future__ import annotations

import argparse
import gc
import os
import shutil
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from goldens.core.compare import Side, compare
from goldens.core.model import MetricSeries
from goldens.core.policy import preset

# One of each kind the default preset knows, then generic metrics (fallback policy).
NAMES = ["lm loss", "mtp_1 loss", "num-zeros", "iteration-time", "mem-allocated-bytes",
         "mem-max-allocated-bytes", "cpu-max-rss-bytes"]


def metric_names(count: int) -> list[str]:
    return (NAMES + [f"metric-{i}" for i in range(count)])[:count]


def build_sides(steps: int, metrics: int, seed: int = 0) -> tuple[Side, Side]:
    """Golden and run: the run 0.5 % noisy, a few NaN steps, and every fifth metric on a
    different grid (a truncated run with a hole), so alignment takes the general path."""
    rng = np.random.default_rng(seed)
    grid = np.arange(1, steps + 1, dtype=np.int64)
    golden, actual = {}, {}
    for i, name in enumerate(metric_names(metrics)):
        values = 10.0 + rng.random(steps)
        noisy = values * (1.0 + 0.005 * rng.standard_normal(steps))
        noisy[rng.integers(0, steps, 10)] = np.nan
        golden[name] = MetricSeries(name, grid, values)
        if i % 5 == 4:
            keep = np.ones(steps, dtype=bool)
            keep[steps // 3: steps // 3 + 1000] = False
            keep[-steps // 10:] = False
            actual[name] = MetricSeries(name, grid[keep], noisy[keep])
        else:
            actual[name] = MetricSeries(name, grid, noisy)
    return Side("golden", {1: golden}), Side("run", {1: actual})


def time_compare(steps: int, metrics: int, repeat: int) -> tuple[float, object]:
    reference, candidate = build_sides(steps, metrics)
    policies = preset("default")
    compare(*build_sides(100, metrics), policies)  # warm: lazy imports, first-call costs
    best, result = float("inf"), None
    for _ in range(repeat):
        result = None
        gc.collect()
        start = time.perf_counter()
        result = compare(reference, candidate, policies)
        best = min(best, time.perf_counter() - start)
    return best, result


def time_floor(steps: int, metrics: int, repeat: int) -> float:
    """The floor: numpy.isclose and a count per metric over the same arrays (golden's grid only)."""
    reference, candidate = build_sides(steps, metrics)
    pairs = [(reference.phases[1][n].values, candidate.phases[1][n].values) for n in reference.phases[1]
             if candidate.phases[1][n].values.size == reference.phases[1][n].values.size]
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for golden, actual in pairs:
            np.count_nonzero(np.isclose(actual, golden, rtol=0.05, atol=0))
        best = min(best, (time.perf_counter() - start) * metrics / len(pairs))
    return best


def peak_memory(steps: int, metrics: int) -> tuple[int, int]:
    """(peak bytes traced during compare(), bytes of the inputs) at this size."""
    reference, candidate = build_sides(steps, metrics)
    inputs = sum(s.steps.nbytes + s.values.nbytes for side in (reference, candidate)
                 for s in side.phases[1].values())
    policies = preset("default")
    compare(Side("g", {1: {}}), Side("r", {1: {}}), policies)  # warm imports outside the trace
    gc.collect()
    tracemalloc.start()
    result = compare(reference, candidate, policies)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del result
    return peak, inputs


def startup(command: list[str], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--metrics", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n, m = args.steps, args.metrics

    t1, result = time_compare(n, m, args.repeat)
    verdicts = result.metric_verdicts()
    print(f"compare: {m} metrics × {n:,} steps: {t1:.3f} s "
          f"({m * n / t1 / 1e6:.1f} M steps/s; verdict {result.verdict.value}, "
          f"{sum(v.passed for v in verdicts)}/{len(verdicts)} metrics pass) "
          f"(target < 1 s at 20 × 1,000,000: {'OK' if t1 < 1 else 'OVER'})")
    floor = time_floor(n, m, args.repeat)
    print(f"floor (numpy.isclose + count over the same arrays): {floor:.3f} s; compare / floor: {t1 / floor:.1f}×")
    del result
    t2, result = time_compare(2 * n, m, args.repeat)
    del result
    ratio = t2 / t1
    print(f"compare: {m} metrics × {2 * n:,} steps: {t2:.3f} s")
    print(f"time ratio 2× points / 1×: {ratio:.2f} (target <= 2.2: {'OK' if ratio <= 2.2 else 'OVER'})")

    peak, inputs = peak_memory(n, m)
    print(f"peak traced memory during compare at {n:,} steps: {peak / 2**20:.0f} MiB "
          f"({peak / inputs:.2f}× the {inputs / 2**20:.0f} MiB of input arrays)")
    try:
        import resource

        print(f"process max RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB")
    except ImportError:  # not on this platform
        pass

    golden_exe = shutil.which("golden")
    cli = [golden_exe, "--help"] if golden_exe else [sys.executable, "-m", "goldens", "--help"]
    bare = startup([sys.executable, "-c", "pass"])
    help_time = startup(cli)
    print(f"golden --help start-up: {help_time * 1000:.0f} ms (bare python: {bare * 1000:.0f} ms, "
          f"ratio {help_time / bare:.1f}×)")
    heavy = subprocess.run([sys.executable, "-c", "import sys; from goldens import cli; "
                            "print(','.join(m for m in ('torch', 'pandas', 'numpy') if m in sys.modules))"],
                           capture_output=True, text=True, env=dict(os.environ)).stdout.strip()
    print(f"modules imported by the CLI at start-up among torch/pandas/numpy: {heavy or 'none'}")


if __name__ == "__main__":
    main()
