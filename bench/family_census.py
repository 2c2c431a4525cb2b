"""Every case of a Megatron test_cases tree through the runner's case import: what runs, what the
pre-flight opens, and why the rest are refused — a table by model family and reason (the one in
docs/runner.md). With ``--run`` each runnable case's cpu-tiny shrink is trained (``golden run``)
and its resume checked step for step; with ``--preflight N`` the first N pre-flight cases of
each family are trained too.

    python bench/family_census.py TREE [--run] [--preflight N] [--out DIR] [--only SUBSTRING]

TREE is Megatron-LM's tests/functional_tests/test_cases (or ../shared/fixtures/megatron/test_cases,
a sample of it).
"""
from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def classify(tree: Path) -> list[dict]:
    from goldens.core.errors import GoldenError
    from runner.config import megatron_case_definition

    rows = []
    for path in sorted(tree.rglob("model_config.yaml")):
        folder = path.parent
        row = {"case": str(folder.relative_to(tree)), "folder": str(folder)}
        try:
            definition = megatron_case_definition(folder)
        except GoldenError as exc:
            rows.append({**row, "family": "?", "outcome": "error", "reason": str(exc)})
            continue
        case = definition.megatron
        row["family"] = case.family
        if case.runnable:
            try:
                definition.run_config("cpu-tiny")
                rows.append({**row, "outcome": "runs", "reason": "", "test_type": case.test_type})
            except GoldenError as exc:
                rows.append({**row, "outcome": "error", "reason": str(exc)})
            continue
        reason = case.features[0] if case.features else "?"
        outcome = "preflight" if case.preflight_ready else "refused"
        rows.append({**row, "outcome": outcome, "reason": reason, "test_type": case.test_type})
    return rows


def table(rows: list[dict]) -> str:
    counts = collections.Counter((r["family"], r["outcome"], r["reason"]) for r in rows)
    lines = ["| family | outcome | reason (first feature named) | cases |", "|---|---|---|---|"]
    for (family, outcome, reason), n in sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1], -kv[1])):
        lines.append(f"| {family} | {outcome} | {reason or '—'} | {n} |")
    lines.append(f"| all | | | {len(rows)} |")
    return "\n".join(lines)


def train(row: dict, out: Path, profile: str | None) -> dict:
    run_dir = out / row["case"].replace("/", "__")
    cmd = [sys.executable, "-m", "goldens", "run", row["folder"], "--out", str(run_dir)]
    if profile:
        cmd += ["--profile", profile]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    result = {"case": row["case"], "exit": proc.returncode, "seconds": round(time.perf_counter() - started, 1)}
    try:
        artifact = json.loads((run_dir / "artifact.json").read_text())
    except (OSError, ValueError):
        result["error"] = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no artifact"]
        return result
    phases = artifact["phases"]
    loss = phases["1"]["metrics"]["lm loss"]["values"]
    values = list(loss.values())
    result.update(status=artifact["status"], first=values[0], last=values[-1],
                  falls=values[-1] < values[0], finite=all(v == v and abs(v) != float("inf") for v in values))
    if "2" in phases:
        resumed = phases["2"]["metrics"]
        result["resume_exact"] = all(
            phases["1"]["metrics"][name]["values"].get(step) == value
            for name, metric in resumed.items() if name in ("lm loss", "num-zeros")
            for step, value in metric["values"].items())
    substitutions = artifact["provenance"].get("megatron_case", {}).get("substitutions")
    if substitutions:
        result["substitutions"] = substitutions
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tree", type=Path)
    parser.add_argument("--run", action="store_true", help="train every runnable case's cpu-tiny shrink")
    parser.add_argument("--preflight", type=int, default=0, help="train this many pre-flight cases per family")
    parser.add_argument("--only", default="", help="train only cases whose path contains this")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = classify(args.tree)
    print(table(rows))
    out = args.out or Path(tempfile.mkdtemp(prefix="census-"))
    todo = []
    if args.run:
        todo += [(r, None) for r in rows if r["outcome"] == "runs" and args.only in r["case"]]
    if args.preflight:
        per_family: dict[str, int] = collections.Counter()
        for r in rows:
            if r["outcome"] == "preflight" and args.only in r["case"] and per_family[r["family"]] < args.preflight:
                per_family[r["family"]] += 1
                todo.append((r, "cpu-preflight"))
    results = []
    for row, profile in todo:
        result = train(row, out, profile)
        results.append(result)
        print(json.dumps(result), flush=True)
    if results:
        ok = [r for r in results if r.get("status") == "complete" and r.get("resume_exact", True) and r["finite"]]
        print(f"trained {len(results)}: {len(ok)} complete, finite, resumed bit-exactly where they resume")
    return 0


if __name__ == "__main__":
    sys.exit(main())
