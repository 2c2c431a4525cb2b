"""Golden-file load speed: ``read_golden`` against a plain ``json.load`` loop over the same files.

Both loops run in the same process on the same files (best of several interleaved passes, files
already in the page cache), so the ratio says what the faithful reader costs on top of bare JSON parsing:
duplicate-key detection, exact float64 arrays, the NaN strings, validation of every field.

    python bench/bench_load.py [--files 300] [--steps 500] [--repeat 5]

Also measures the real Megatron files in ../shared when that folder exists.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SHARED = REPO.parent / "shared" / "fixtures" / "megatron"
METRICS = ("lm loss", "num-zeros", "iteration-time", "mem-allocated-bytes", "mem-max-allocated-bytes")


def make_files(folder: Path, count: int, steps: int) -> list[Path]:
    """Synthetic goldens in the current layout, half of them resume-phase files with a leading "nan" run."""
    import numpy as np

    from goldens.core.model import GoldenSet, MetricSeries
    from goldens.files.formats.golden import dumps_golden

    rng = np.random.default_rng(0)
    grid = np.arange(1, steps + 1, dtype=np.int64)
    paths = []
    for i in range(count):
        metrics = {}
        for name in METRICS:
            values = rng.normal(10.0, 1.0, steps)
            if i % 2:
                values[: steps // 2] = np.nan
            metrics[name] = MetricSeries(name, grid, values, 1, steps, 1)
        path = folder / f"case_{i:04d}" / ("golden_values_dev_cpu_2nd.json" if i % 2 else "golden_values_dev_cpu.json")
        path.parent.mkdir()
        path.write_text(dumps_golden(GoldenSet(metrics)))
        paths.append(path)
    return paths


def _pass_seconds(load: Callable[[Path], object], files: list[Path]) -> float:
    started = time.perf_counter()
    for path in files:
        load(path)
    return time.perf_counter() - started


def best_rates(loads: list[Callable[[Path], object]], files: list[Path], repeat: int) -> list[float]:
    """Files per second of each loader, best of ``repeat`` passes; passes interleave so that
    load from other processes hits both loaders alike."""
    best = [float("inf")] * len(loads)
    for _ in range(repeat):
        for i, load in enumerate(loads):
            best[i] = min(best[i], _pass_seconds(load, files))
    return [len(files) / seconds for seconds in best]


def plain_json(path: Path) -> object:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def measure(label: str, files: list[Path], repeat: int) -> None:
    from goldens.files.formats.golden import read_golden

    for path in files:  # warm the page cache and the imports
        read_golden(path)
    baseline, ours = best_rates([plain_json, read_golden], files, repeat)
    size = sum(p.stat().st_size for p in files) / len(files) / 1024
    print(f"{label}: {len(files)} files, {size:.1f} KiB each on average")
    print(f"  json.load loop     {baseline:10.1f} files/s")
    print(f"  read_golden        {ours:10.1f} files/s")
    print(f"  ratio (json.load / read_golden time): read_golden takes {baseline / ours:.2f}x as long")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--steps", type=int, default=500, help="steps per metric in the synthetic files")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="golden-bench-") as tmp:
        measure(f"synthetic ({len(METRICS)} metrics x {args.steps} steps)",
                make_files(Path(tmp), args.files, args.steps), args.repeat)
    if SHARED.is_dir():
        real = sorted(p for p in SHARED.rglob("golden_values_*.json"))
        real += sorted(p for p in (SHARED / "history").rglob("*_golden_values_*.json"))
        measure("Megatron files from ../shared", real, args.repeat)
    else:
        print(f"({SHARED} absent: real-file measurement skipped)")


if __name__ == "__main__":
    main()
