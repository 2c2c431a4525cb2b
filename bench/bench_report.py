"""Benchmark the reports on a real-sized batch: 57 cases × 5 metrics × 100 steps, some failing.

The results come from the real engine (``goldens.core.compare``) on goldens shaped like Megatron's
memory_speed cases (lm loss, num-zeros, two memory series, iteration-time; values rounded to 5
decimals as Megatron writes them). A quarter of the cases fail on the loss; every case has memory
+10 % and step time +30 % on every step, judged by the default preset for half of them and by
the megatron preset (report only) for the other half.

Prints, best of ``--repeat``: the HTML report's render time and size, the Markdown's size (GitHub's
comment limit is 65,536 characters), and as the baseline measured in the same run the JSON report of
the same results (every number at full precision, per-step rows included): the HTML's cost as a
ratio of it. Targets (issue 13): HTML under 3 MB and under 5 s for 57 cases. With matplotlib's
plots (at most 120 of them) the same batch took 13.8–20.4 s and 9.6 MB on the 2-core CI machine.

    python bench/bench_report.py [--cases 57] [--steps 100] [--repeat 3]
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from goldens.core.compare import compare, side_from_goldens
from goldens.core.model import GoldenSet, MetricSeries
from goldens.core.policy import preset
from goldens.core.result import ComparisonResult
from reports.document import Report
from reports.html import result_html
from reports.json_report import result_json
from reports.markdown import result_markdown

TARGET_MB, TARGET_S = 3.0, 5.0


def golden(values: dict[str, np.ndarray], steps: np.ndarray) -> dict[int, GoldenSet]:
    return {1: GoldenSet(metrics={name: MetricSeries(name, steps, np.round(v, 5)) for name, v in values.items()})}


def build_results(cases: int, steps: int, seed: int = 0) -> list[ComparisonResult]:
    rng = np.random.default_rng(seed)
    grid = np.arange(1, steps + 1, dtype=np.int64)
    results = []
    for i in range(cases):
        reference = {"lm loss": 11.0 - np.log1p(grid) + 0.01 * rng.standard_normal(steps),
                     "num-zeros": np.round(5e8 + 1e6 * rng.standard_normal(steps)),
                     "mem-allocated-bytes": np.full(steps, 24808996864.0),
                     "mem-max-allocated-bytes": np.full(steps, 60720852992.0),
                     "iteration-time": 1.15 + 0.01 * rng.standard_normal(steps)}
        run = dict(reference, **{"mem-allocated-bytes": reference["mem-allocated-bytes"] * 1.1,
                                 "mem-max-allocated-bytes": reference["mem-max-allocated-bytes"] * 1.1,
                                 "iteration-time": reference["iteration-time"] * 1.3})
        if i % 4 == 0:
            run["lm loss"] = reference["lm loss"] * np.where(grid > steps * 0.6, 1.08, 1.0)
        case = f"gpt/gpt3_mcore_te_tp2_pp2_case_{i:02d}"
        name = "golden_values_dev_dgx_h100.json"
        results.append(compare(side_from_goldens(golden(reference, grid), f"store/{case}/{name}"),
                               side_from_goldens(golden(run, grid), f"candidates/{case}/{name}"),
                               preset("megatron" if i % 2 else "default"),
                               case=case, env="dev", platform="dgx_h100"))
    return results


def best_of(repeat: int, render: Callable[[], str]) -> tuple[float, str]:
    times, text = [], ""
    for _ in range(repeat):
        start = time.perf_counter()
        text = render()
        times.append(time.perf_counter() - start)
    return min(times), text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=57)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    results = build_results(args.cases, args.steps)
    report = Report.of(*results, store="store")
    failing = sum(not r.passed for r in results)
    print(f"{args.cases} cases × 5 metrics × {args.steps} steps ({failing} failing), best of {args.repeat}")
    result_html(Report.of(results[0]))  # imports (jinja2, matplotlib's tick locator) outside the timing

    json_s, json_text = best_of(args.repeat, lambda: result_json(report))
    html_s, html_text = best_of(args.repeat, lambda: result_html(report))
    md_text = result_markdown(report)
    json_mb, html_mb = len(json_text.encode()) / 1e6, len(html_text.encode()) / 1e6
    plots = html_text.count("<svg")
    print(f"baseline  JSON report: {json_s:6.2f} s  {json_mb:6.2f} MB")
    print(f"HTML report:           {html_s:6.2f} s  {html_mb:6.2f} MB  ({plots} plots)  "
          f"ratio to JSON: {html_s / json_s:.2f}× time, {html_mb / json_mb:.2f}× size")
    print(f"Markdown:              {len(md_text):,} characters (GitHub comment limit 65,536)")
    ok = html_mb < TARGET_MB and html_s < TARGET_S and len(md_text) <= 65_536
    print(f"targets: HTML < {TARGET_MB:g} MB and < {TARGET_S:g} s for 57 cases: {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
