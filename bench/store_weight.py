"""Weight of the store's own files beside the goldens they describe, git backend vs the ledger.

Copies a Megatron ``test_cases`` tree (default: ../shared/fixtures/megatron/test_cases) twice: into a
fresh git repository (git backend) and into a plain folder (ledger backend). In each it approves the
same few goldens (a run per case at full precision, written in Megatron's dialect), and in the ledger
copy it first adopts every case (what it takes for the ledger to know the tree). Then it prints the
bytes of the golden files, the bytes of the store's own files (git: ``.approvals/`` records and
``.golden-store/``; ledger: ``.golden/`` folders), and their ratio — the baseline being the ledger
measured in the same run — plus how long history, fsck and validate take on the git copy.

    python bench/store_weight.py [--tree PATH] [--approvals 3]
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

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_TREE = REPO.parent / "shared" / "fixtures" / "megatron" / "test_cases"


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=b@b", *args], check=True,
                   capture_output=True)


def golden(*args: str) -> float:
    """Run one ``golden`` command in this process; seconds it took (exit 0 or 1 expected)."""
    from typer.testing import CliRunner

    from goldens.cli import app

    started = time.perf_counter()
    out = CliRunner().invoke(app, list(args), env={"CI": ""})
    if out.exit_code not in (0, 1):
        raise RuntimeError(f"golden {' '.join(args)}: exit {out.exit_code}: {out.output[-500:]}")
    return time.perf_counter() - started


def targets(tree: Path, count: int) -> list[tuple[str, Path]]:
    """The first ``count`` cases (one golden each, different cases) whose goldens read as training goldens."""
    from goldens.files.formats.golden import read_golden
    from goldens.store import GoldenStore

    store = GoldenStore(tree, backend="ledger")
    found = []
    for case in store.cases():
        for key in store.keys(case):
            if key.phase != 1:
                continue
            try:
                golden_set = read_golden(store.case_dir(case) / key.filename())
            except Exception:
                continue
            if "lm loss" in golden_set.metrics and not golden_set.scalars:
                found.append((case, store.case_dir(case) / key.filename()))
                break
        if len(found) == count:
            break
    return found


def write_runs(runs: Path, tree: Path, chosen: list[tuple[str, Path]]) -> list[Path]:
    """A run per chosen golden: its metrics at full precision, 1 % off (so each approval writes)."""
    from goldens.core.model import Artifact, MetricSeries, Phase
    from goldens.files.formats.artifact import dumps_artifact
    from goldens.files.formats.golden import parse_golden_filename, read_golden

    made = []
    for number, (case, path) in enumerate(chosen):
        env, platform, _ = parse_golden_filename(path.name)
        golden_set = read_golden(path)
        metrics = {n: MetricSeries(n, s.steps, s.values * 1.01 + 1.234567e-7, s.start_step, s.end_step,
                                   s.step_interval).present() for n, s in golden_set.metrics.items()}
        steps = [int(s.steps[0]) for s in metrics.values()] + [int(s.steps[-1]) for s in metrics.values()]
        artifact = Artifact(case=case, run_id=f"bench-{number}", status="complete",
                            provenance={"env": env, "platform": platform, "fingerprint": f"fp-{number}"},
                            phases={1: Phase(1, metrics, min(steps), max(steps))})
        target = runs / artifact.run_id / "artifact.json"
        target.parent.mkdir(parents=True)
        target.write_text(dumps_artifact(artifact))
        made.append(target)
    return made


def weigh(tree: Path, own: tuple[str, ...]) -> tuple[int, int, int]:
    """(bytes of golden files, bytes of the store's own files, how many own files)."""
    goldens = sum(p.stat().st_size for p in tree.rglob("golden_values*.json") if not set(p.parts) & set(own))
    files = [p for p in tree.rglob("*") if p.is_file() and set(p.relative_to(tree).parts) & set(own)]
    return goldens, sum(p.stat().st_size for p in files), len(files)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=DEFAULT_TREE)
    parser.add_argument("--approvals", type=int, default=3)
    args = parser.parse_args()
    if not args.tree.is_dir():
        print(f"no tree at {args.tree}", file=sys.stderr)
        return 2
    os.environ.pop("CI", None)
    with tempfile.TemporaryDirectory(prefix="golden-weight-") as tmp:
        work = Path(tmp)
        repo, plain = work / "repo", work / "plain" / "test_cases"
        shutil.copytree(args.tree, repo / "test_cases")
        shutil.copytree(args.tree, plain)
        git(repo, "init", "-q")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "test_cases")
        chosen = targets(plain, args.approvals)
        runs = write_runs(work / "runs", plain, chosen)
        for run in runs:
            golden("approve", str(run), "--store", str(repo / "test_cases"), "--reason", "bench", "--approver", "b")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "approvals")
        golden("adopt", "--all", "--store", str(plain), "--approver", "b")
        for run in runs:
            golden("approve", str(run), "--store", str(plain), "--reason", "bench", "--approver", "b")
        git_goldens, git_own, git_files = weigh(repo / "test_cases", (".approvals", ".golden-store"))
        ledger_goldens, ledger_own, ledger_files = weigh(plain, (".golden",))
        records = sorted(p.stat().st_size for p in (repo / "test_cases").rglob(".approvals/*.json"))
        timings = {
            "history (one case)": golden("history", chosen[0][0], "--store", str(repo / "test_cases")),
            "fsck (whole tree)": golden("fsck", "--store", str(repo / "test_cases"), "--no-repair"),
            "validate --store": golden("validate", "--store", str(repo / "test_cases")),
        }
    print(f"tree: {args.tree} ({len(list(args.tree.rglob('golden_values*.json')))} golden files); "
          f"{len(chosen)} approvals: {', '.join(c for c, _ in chosen)}")
    print(f"git backend:    goldens {git_goldens} B, store's own files {git_own} B in {git_files} files "
          f"= {100 * git_own / git_goldens:.3f} % (records: {records} B)")
    print(f"ledger backend: goldens {ledger_goldens} B, store's own files {ledger_own} B in {ledger_files} files "
          f"= {100 * ledger_own / ledger_goldens:.3f} % (after adopt --all, the same approvals)")
    print(f"git / ledger weight: {git_own / ledger_own:.4f}")
    print("timings on the git copy: " + json.dumps({k: round(v, 3) for k, v in timings.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
