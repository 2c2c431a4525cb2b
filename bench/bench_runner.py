"""Where the time of `golden check` on the default case goes, against its floor measured here.

The floor is what no launcher can avoid: the training steps of both phases, the checkpoint save
and load, and one import of torch + megatron-core (measured in this run by starting the fork
server, which imports exactly what the ranks need, and stopping it). Everything else is
overhead — process start-up, process-group setup, model and data build, the CLI and the
comparison. Reported: total wall time of `golden check`, time in training steps, save, load,
process start-up per phase (launch until the first step), one import, total / floor, and whether
the total meets the main job's target (TARGET_S on 2 cores).

    python bench/bench_runner.py [--repeats 1] [--launcher fork|torchrun|both]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASE = "bert_mcore_tp2_pp2_resume_torch_dist_local_spec"
TARGET_S = 15.0  # issue 14: `golden check` of the seed case on 2 cores


def one_import() -> float:
    """Seconds to start the fork server (interpreter + torch + megatron-core) until it is ready."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "runner.forkserver"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=REPO)
    ready = json.loads(proc.stdout.readline())
    elapsed = time.perf_counter() - start
    proc.stdin.close()
    proc.wait()
    assert ready.get("ready"), ready
    return elapsed


def check(launcher: str, work: Path) -> dict[str, float]:
    """One `golden check` run; its wall time plus the phase timings its artifact records."""
    run_dir = work / f"run-{launcher}-{time.monotonic_ns()}"
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "goldens", "check", CASE, "--store", str(REPO / "cases"),
                           "--out", str(run_dir), "--launcher", launcher, "--format", "json"],
                          cwd=work, capture_output=True, text=True)
    total = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"golden check exited {proc.returncode}: {proc.stderr[-2000:]}")
    prov = json.loads((run_dir / "artifact.json").read_text())["provenance"]
    t1, t2 = prov["timings"]["phase1"], prov["timings"]["phase2"]
    steps = t1["steps_s"] + t2["steps_s"]
    startup1 = t1["wall_s"] - t1["steps_s"] - t1["save_s"]
    startup2 = t2["wall_s"] - t2["steps_s"]  # includes the load
    return {"total": total, "steps": steps, "save": t1["save_s"], "load": t2["load_s"],
            "startup1": startup1, "startup2": startup2 - t2["load_s"],
            "phases": t1["wall_s"] + t2["wall_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--launcher", choices=("fork", "torchrun", "both"), default="fork")
    args = parser.parse_args()
    launchers = ("fork", "torchrun") if args.launcher == "both" else (args.launcher,)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        imports = [one_import() for _ in range(args.repeats)]
        runs = {name: [check(name, work) for _ in range(args.repeats)] for name in launchers}
    imp = min(imports)
    print(f"one import of torch + megatron-core (fork server ready): {imp:6.2f} s  (best of {len(imports)})")
    for name, results in runs.items():
        best = min(results, key=lambda r: r["total"])
        floor = best["steps"] + best["save"] + best["load"] + imp
        print(f"\n`golden check {CASE}` with --launcher {name} (best of {len(results)}):")
        for label, key in (("total wall", "total"), ("both phases (launch to exit)", "phases"),
                           ("training steps (30)", "steps"), ("checkpoint save", "save"),
                           ("checkpoint load", "load"), ("start-up, phase 1 (launch → first step)", "startup1"),
                           ("start-up, phase 2 (launch → first step, without load)", "startup2")):
            print(f"  {label:<55} {best[key]:6.2f} s")
        print(f"  {'floor (steps + save + load + one import)':<55} {floor:6.2f} s")
        print(f"  {'overhead ratio (total / floor)':<55} {best['total'] / floor:6.2f} x")
        verdict = "met" if best["total"] <= TARGET_S else "NOT met"
        print(f"  {f'target: total <= {TARGET_S:g} s':<55} {verdict} ({best['total']:.2f} s)")


if __name__ == "__main__":
    main()
