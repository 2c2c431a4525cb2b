"""Benchmark a whole Megatron tree judged inside its git repository with a long history, against
Megatron's own functions over the same pairs in one process (measured in the same run).

The repository is real-shaped: ``tests/functional_tests/test_cases`` holds ../shared's real cases
(the seed case committed through its twelve real revisions, from ``history/``) and synthetic cases up
to ``--cases`` (three env/platform goldens each, regular / ckpt-resume with ``_2nd`` / memory_speed /
inference goldens of real size, and one case in 15 a release-sized 4,000-step series), and
``--commits`` synthetic commits (made with ``git fast-import``) change source files and, one in ten,
some case's goldens — so every case has a history of several versions, as in Megatron-LM (9,600
commits). The candidates tree mirrors the synthetic cases (most equal to their golden, others 1 %
off, a step spiked, memory up), as Megatron's CI downloads them.

Each measurement runs in its own process (peak RSS is that process's own):
- ``megatron``: Megatron's test functions (python_test_utils, unmodified) as its CI calls them, per
  candidate — reading both files and the case's model_config.yaml;
- ``verdicts``: ``goldens.workflow.bulk.judge_bulk`` (find, pair, read, judge) with the megatron policy;
- ``reports``: the same, then ``publish_bulk`` (results, findings, Markdown, HTML, JUnit, JSON).
Printed: the times, ratios, peak memory, the report sizes, and whether every verdict is identical.

    python bench/bench_tree.py [--cases 300] [--commits 5000] [--repeat 1] [--keep | --reuse DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

SHARED = REPO.parent / "shared" / "fixtures" / "megatron"
UTILS = SHARED / "python_test_utils"
SEED_CASE = "bert/bert_mcore_tp2_pp2_resume_torch_dist_local_spec"
STORE = Path("tests/functional_tests/test_cases")
LONG_STEPS = 4000


def _synthetic(store: Path, candidates: Path, cases: int, seed: int = 0) -> int:
    """Synthetic cases and their candidates, one regular case in 15 a 4,000-step release-size series,
    inference goldens of 48 requests; returns the number of golden files written."""
    from bench_bulk import write_synthetic_cases

    return write_synthetic_cases(store, candidates, cases, seed, long_every=15, long_steps=LONG_STEPS, requests=48)


def _fast_import_stream(repo: Path, commits: int, seed: int = 1) -> bytes:
    """The history: the seed case's twelve real revisions, then ``commits`` synthetic commits (source
    files; one in ten rewrites an earlier version of a few synthetic goldens), then the tree as it is."""
    rng = np.random.default_rng(seed)
    out: list[bytes] = []
    mark = 0
    when = 1_600_000_000

    def commit(message: str, files: dict[str, bytes]) -> None:
        nonlocal mark, when
        mark += 1
        when += 3600
        out.append(b"commit refs/heads/main\nmark :%d\n" % mark)
        out.append(b"author Bench <bench@example.com> %d +0000\ncommitter Bench <bench@example.com> %d +0000\n"
                   % (when, when))
        text = message.encode()
        out.append(b"data %d\n%s\n" % (len(text), text))
        if mark > 1:
            out.append(b"from :%d\n" % (mark - 1))
        for path, data in files.items():
            out.append(b"M 100644 inline %s\ndata %d\n%s\n" % (path.encode(), len(data), data))

    history = SHARED / "history" / SEED_CASE.split("/")[1]
    seed_dir = STORE / SEED_CASE
    for revision in json.loads((history / "index.json").read_text()):
        prefix = revision["commit"][:10] + "_"
        commit(revision["subject"], {(seed_dir / name.removeprefix(prefix)).as_posix(): (history / name).read_bytes()
                                     for name in revision["files"]})
    goldens = sorted(p for p in (repo / STORE).rglob("golden_values_*.json")
                     if not p.is_relative_to(repo / STORE / SEED_CASE))
    for n in range(commits):
        files = {f"megatron/core/module_{n % 400:03d}.py": f"# revision {n}\nVALUE = {rng.random()!r}\n".encode()}
        if n % 10 == 0 and goldens:
            for path in rng.choice(len(goldens), 3, replace=False):
                doc = json.loads(goldens[path].read_bytes() or b"{}")
                for metric in doc.values() if isinstance(doc, dict) else ():
                    if isinstance(metric, dict) and isinstance(metric.get("values"), dict):
                        metric["values"] = {k: round(v * (1 + 0.001 * rng.standard_normal()), 5)
                                            if isinstance(v, float) else v for k, v in metric["values"].items()}
                files[goldens[path].relative_to(repo).as_posix()] = json.dumps(doc, indent=4).encode()
        commit(f"synthetic change {n}", files)
    final = {p.relative_to(repo).as_posix(): p.read_bytes() for p in sorted(repo.rglob("*"))
             if p.is_file() and ".git" not in p.relative_to(repo).parts}
    commit("the tree as it is", final)
    return b"".join(out)


def build(root: Path, cases: int, commits: int) -> dict:
    repo, candidates = root / "megatron-lm", root / "candidates"
    store = repo / STORE
    shutil.copytree(SHARED / "test_cases", store)
    for path in store.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    files = _synthetic(store, candidates, cases)
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null"}
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True, env=env)
    start = time.perf_counter()
    subprocess.run(["git", "fast-import", "--quiet"], cwd=repo, input=_fast_import_stream(repo, commits), check=True,
                   env=env)
    subprocess.run(["git", "reset", "-q", "--hard"], cwd=repo, check=True, env=env)
    made = time.perf_counter() - start
    count = int(subprocess.run(["git", "rev-list", "--count", "HEAD"], cwd=repo, capture_output=True, check=True,
                               env=env).stdout)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, check=True, env=env).stdout
    if dirty:
        raise SystemExit(f"the work tree differs from HEAD after the import: {dirty[:300]!r}")
    return {"store": str(store), "candidates": str(candidates), "synthetic_goldens": files, "commits": count,
            "import_s": made}


# ---------------------------------------------------------------- one measurement per process

def _peak_mb() -> float:
    """This process's peak resident memory (VmHWM: getrusage's maxrss would report the parent's at fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(what: str, store: Path, candidates: Path, out: Path | None) -> dict:
    from bench_bulk import candidate_pairs

    from goldens.workflow.bulk import judge_bulk, publish_bulk
    from tests.oracle import megatron_oracle, megatron_verdict

    if what == "megatron":
        with megatron_oracle(UTILS) as m:
            todo = list(candidate_pairs(store, candidates))
            start, cpu = time.perf_counter(), _cpu()
            verdicts = {f"{case}|{target}": megatron_verdict(m, config, golden, path, second)
                        for case, target, config, golden, path, second in todo}
            return {"seconds": time.perf_counter() - start, "cpu": _cpu() - cpu, "peak_mb": _peak_mb(),
                    "verdicts": verdicts}
    import reports.html
    import reports.markdown  # noqa: F401
    start, cpu = time.perf_counter(), _cpu()
    bulk = judge_bulk([candidates], store_root=store, policy="megatron", stage=False)
    if what == "reports":
        publish_bulk(bulk, out, store_root=store)
    return {"seconds": time.perf_counter() - start, "cpu": _cpu() - cpu, "peak_mb": _peak_mb(),
            "findings": [f.to_json() for f in bulk.findings],
            "verdicts": {f"{j.case}|{j.env}_{j.platform}": j.passed for j in bulk.judgements}}


def _cpu() -> float:
    """CPU seconds of this process and of the git processes it waited for: on a machine shared with
    other work, wall time measures the neighbours as much as the code."""
    own, children = os.times()[:2], os.times()[2:4]
    return sum(own) + sum(children)


def _child(what: str, info: dict, out: Path | None = None) -> dict:
    command = [sys.executable, __file__, "--child", what, "--store", info["store"], "--candidates", info["candidates"]]
    if out is not None:
        command += ["--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{what} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--commits", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--child")
    parser.add_argument("--store")
    parser.add_argument("--candidates")
    parser.add_argument("--out")
    parser.add_argument("--keep", action="store_true", help="keep the built repository (printed)")
    parser.add_argument("--reuse", help="a folder --keep printed: measure again without rebuilding it")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, Path(args.store), Path(args.candidates),
                                 Path(args.out) if args.out else None)))
        return
    if not UTILS.is_dir():
        raise SystemExit(f"{UTILS} is absent: the baseline is Megatron's own code (../shared)")
    root = Path(args.reuse) if args.reuse else Path(tempfile.mkdtemp(prefix="bench_tree_"))
    keep = args.keep or bool(args.reuse)
    try:
        info = json.loads((root / "info.json").read_text()) if args.reuse else build(root, args.cases, args.commits)
        (root / "info.json").write_text(json.dumps(info))
        best: dict[str, dict] = {}
        for _ in range(args.repeat):  # interleaved, the best of each kept: load from neighbours comes and goes
            for what in ("megatron", "verdicts", "reports"):
                out = root / "out" if what == "reports" else None
                got = _child(what, info, out)
                if what not in best or got["cpu"] < best[what]["cpu"]:
                    best[what] = got
        theirs, ours, full = best["megatron"], best["verdicts"], best["reports"]
        agree = sum(theirs["verdicts"].get(k) == v for k, v in ours["verdicts"].items())
        same = theirs["verdicts"] == ours["verdicts"] == full["verdicts"]
        failing = sum(not v for v in theirs["verdicts"].values())
        sizes = {name: (root / "out" / name).stat().st_size / 1e6 for name in
                 ("report.json", "report.html", "report.md", "junit.xml") if (root / "out" / name).exists()}
        n = len(theirs["verdicts"])
        print(f"repository: {info['commits']} commits (fast-import {info['import_s']:.1f} s); store: "
              f"{len(list(Path(info['store']).rglob('golden_values_*.json')))} golden files "
              f"({info['synthetic_goldens']} synthetic, the rest ../shared's real sample); {n} candidates "
              f"({failing} failing by Megatron's verdict); findings of ours: {len(ours['findings'])}")
        for label, got in (("Megatron's test functions in one process", theirs), ("golden judge (verdicts only)", ours),
                           ("golden judge + all reports", full)):
            print(f"{label + ':':42s} {got['cpu']:7.2f} s CPU ({got['seconds']:.2f} s wall), "
                  f"peak {got['peak_mb']:.0f} MB")
        print(f"ratio Megatron / golden judge (CPU): {theirs['cpu'] / ours['cpu']:.2f}× (target >= 1: "
              f"{'OK' if ours['cpu'] <= theirs['cpu'] else 'SLOWER'}); judge + reports / verdicts: "
              f"{full['cpu'] / ours['cpu']:.2f}× (target <= 3: {'OK' if full['cpu'] <= 3 * ours['cpu'] else 'OVER'}); "
              f"peak < 300 MB: {'OK' if max(ours['peak_mb'], full['peak_mb']) < 300 else 'OVER'}")
        print("report sizes: " + ", ".join(f"{k} {v:.2f} MB" for k, v in sizes.items()))
        print(f"verdicts identical: {same} ({agree} of {n} equal)")
        if keep:
            print(f"kept: {root}")
        if not same:
            raise SystemExit(1)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
