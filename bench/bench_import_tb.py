"""import-tb vs TensorBoard's EventAccumulator on one 100,000-scalar log written in this run.

The log is Megatron-shaped and written by torch's SummaryWriter (what the runner and Megatron
use): 5 per-iteration tags plus their "vs samples" twins over 10,000 steps, split across two
event files (a restart) with a header-only file beside them. Both readers load every scalar
(EventAccumulator with size_guidance 0, as Megatron's test utilities configure it); the best of
a few repeats is compared and the values are checked to agree.

    python bench/bench_import_tb.py [--steps 10000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

TAGS = ("lm loss", "num-zeros", "iteration-time", "mem-allocated-bytes", "grad-norm")


def write_log(logdir: Path, steps: int) -> int:
    from torch.utils.tensorboard import SummaryWriter

    written = 0
    halves = ((1, steps // 2), (steps // 2 + 1, steps))
    for first, last in halves:
        writer = SummaryWriter(str(logdir))
        for step in range(first, last + 1):
            for k, tag in enumerate(TAGS):
                value = 10.0 / (1.0 + 0.001 * step) + 0.37 * k
                writer.add_scalar(tag, value, step)
                writer.add_scalar(f"{tag} vs samples", value, 32 * step)
                written += 2
        writer.close()
    SummaryWriter(str(logdir)).close()  # header-only, as a launcher that never logged leaves it
    return written


def best_of(repeats: int, func):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - start)
    return best, result


def with_event_accumulator(logdir: Path) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing import event_accumulator as ea

    acc = ea.EventAccumulator(str(logdir), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def with_import_tb(logdir: Path):
    from goldens.files.ingest import import_tensorboard

    return import_tensorboard(logdir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        logdir = Path(tmp) / "tb"
        count = write_log(logdir, args.steps)
        files = sorted(logdir.iterdir())
        size = sum(f.stat().st_size for f in files)
        print(f"log: {count:,} scalars in {len(files)} event files, {size / 1e6:.1f} MB")
        with_event_accumulator(logdir), with_import_tb(logdir)  # warm imports and page cache
        ea_time, ea_values = best_of(args.repeats, lambda: with_event_accumulator(logdir))
        ours_time, artifact = best_of(args.repeats, lambda: with_import_tb(logdir))
        metrics = artifact.phases[1].metrics
        agree = sorted(metrics) == sorted(TAGS) and all(metrics[t].as_dict() == ea_values[t] for t in TAGS)
        print(f"EventAccumulator: {ea_time:.3f} s   import-tb: {ours_time:.3f} s   (best of {args.repeats})")
        print(f"values agree with EventAccumulator: {agree}")
        print(f"ratio EventAccumulator / import-tb: {ea_time / ours_time:.1f}x faster")


if __name__ == "__main__":
    main()
