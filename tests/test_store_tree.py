"""Megatron's real test_cases tree as a store: a case is its path, a bare name works where it is unique,
and what is odd about the tree (a name two model folders share, an orphan folder, {} and empty files,
legacy names, a case without goldens) is a finding — it never stops another case or environment."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from goldens import approve
from goldens.core.model import GoldenKey
from goldens.store import GoldenStore
from tests.builders import (
    commit_all,
    git_repo,
    invoke,
    megatron_artifact,
    megatron_doc,
    odd_tree,
    tree_bytes,
    write_run,
)


@pytest.fixture(params=["ledger", "git"])
def tree(request, tmp_path) -> Path:
    """The odd tree, in a plain folder (ledger backend) or committed in a git work tree (git backend)."""
    if request.param == "ledger":
        return odd_tree(tmp_path / "test_cases")
    repo = git_repo(tmp_path / "repo")
    made = odd_tree(repo / "test_cases")
    commit_all(repo, "Megatron's test_cases")
    return made


def untouched(tree: Path, *changed: str) -> dict[str, bytes | None]:
    """The tree's golden files but ``changed`` (history and records aside)."""
    return {k: v for k, v in tree_bytes(tree).items()
            if k.rsplit("/", 1)[-1].startswith("golden_values") and k not in changed}


# ---------------------------------------------------------------- cases by path

def test_cases_are_paths_and_a_bare_name_works_where_it_is_unique(tree):
    store = GoldenStore(tree)
    assert store.cases() == ["bert/nogoldens", "bert/oneline", "gpt/dup", "gpt/resume", "moe/dup", "t5/empty"]
    assert store.resolve("resume") == "gpt/resume" and store.keys("resume")[0].case == "gpt/resume"
    for args in (["show", "dup"], ["history", "dup"], ["rollback", "dup", "--to", "v1", "--reason", "r"],
                 ["diff", "--case", "dup", str(tree / "moe" / "dup" / "golden_values_dev_dgx_h100.json")]):
        out = invoke(*args, "--store", str(tree))
        assert out.exit_code == 2, (args, out.output)
        assert "'dup' is ambiguous" in out.stderr and "gpt/dup, moe/dup" in out.stderr
        assert out.stderr.count("\n") == 1
    assert invoke("show", "moe/dup", "--store", str(tree)).exit_code == 0


def test_findings_are_reported_per_file_and_only_errors_fail(tree):
    out = invoke("validate", "--store", str(tree), "--json")
    assert out.exit_code == 1   # {} and empty goldens: Megatron's CI fails on them too
    files = json.loads(out.stdout)["files"]
    by_status = {f["status"] for f in files}
    assert by_status == {"ok", "warning", "error"}
    errors = sorted(Path(f["path"]).relative_to(tree).as_posix() for f in files if f["status"] == "error")
    assert errors == ["gpt/dup/golden_values_dev_dgxh100_dgxc.json", "gpt/resume/golden_values_lts_dgx_a100.json",
                      "t5/empty/golden_values_dev_dgx_h100.json"]
    messages = " ".join(m["message"] for f in files for m in f["findings"])
    for finding in ("case name 'dup' is used by gpt/dup, moe/dup", "no case.yaml or model_config.yaml",
                    "a case without golden files", "golden_values_lts.json does not follow"):
        assert finding in messages
    for broken in errors:
        (tree / broken).write_text(json.dumps(megatron_doc(range(1, 3), 1.0), indent=4))
    assert invoke("validate", "--store", str(tree)).exit_code == 0     # warnings only
    checked = invoke("prune", "--check", "--store", str(tree))
    assert checked.exit_code == 1 and "duplicate-name" in checked.stdout and "legacy-name" in checked.stdout


def test_prune_check_lists_the_tree_s_findings(tree):
    out = invoke("prune", "--check", "--store", str(tree))
    assert out.exit_code == 1, out.output
    lines = out.stdout.splitlines()
    assert any(line.startswith("orphan golden") and "gpt/dup" in line for line in lines)
    kinds = {line.split(":", 1)[0] for line in lines}
    assert {"duplicate-name", "no-goldens", "legacy-name", "unreadable-golden"} <= kinds


# ---------------------------------------------------------------- every command, one odd neighbour at a time

def test_every_command_works_on_the_odd_tree(tree, tmp_path):
    s = str(tree)
    git = (tree.parent / ".git").exists()
    assert invoke("fsck", "--store", s).exit_code == 0
    assert invoke("history", "gpt/resume", "--store", s).exit_code == 0
    shown = invoke("show", "gpt/resume", "--store", s, "--phase", "1")
    assert shown.exit_code == 0 and "golden_values_lts_dgx_a100.json: unreadable" in shown.stdout
    assert "golden_values_dev_dgx_h100.json  (env dev" in shown.stdout

    # a run of gpt/resume dev/dgx_h100: its lts/dgx_a100 neighbour is "{}", a legacy file lies beside it
    same = megatron_artifact(tmp_path / "runs", "gpt/resume", "same", resumed_from=10)
    assert invoke("diff", str(same), "--store", s).exit_code == 0
    before = untouched(tree, "gpt/resume/golden_values_dev_dgx_h100.json",
                       "gpt/resume/golden_values_dev_dgx_h100_2nd.json")
    moved = megatron_artifact(tmp_path / "runs", "gpt/resume", "moved", factor=1.2, resumed_from=10)
    assert invoke("diff", str(moved), "--store", s).exit_code == 1       # staged
    approved = invoke("approve", "--pending", "--store", s, "--reason", "new kernel", "--approver", "ada")
    assert approved.exit_code == 0, approved.output
    assert untouched(tree, "gpt/resume/golden_values_dev_dgx_h100.json",
                     "gpt/resume/golden_values_dev_dgx_h100_2nd.json") == before
    if git:
        commit_all(tree.parent, "approve gpt/resume")

    # a golden_values file as Megatron's CI writes it, downloaded into a tree of the same shape
    download = tmp_path / "download" / "moe" / "dup" / "golden_values_dev_dgx_h100.json"
    download.parent.mkdir(parents=True)
    download.write_text(json.dumps(megatron_doc(range(1, 21), 9.5), indent=4))
    assert invoke("diff", str(download), "--store", s).exit_code == 1     # found as moe/dup, not ambiguous
    assert [c.case for c in approve.list_pending(GoldenStore(tree))] == ["moe/dup"]
    assert invoke("pending", "--store", s, "--case", "moe/*").exit_code == 0
    assert invoke("approve", "--pending", "--case", "moe/*", "--store", s, "--reason", "refresh",
                  "--approver", "ada").exit_code == 0
    assert json.loads((tree / "moe" / "dup" / "golden_values_dev_dgx_h100.json").read_text()) == \
        json.loads(download.read_text())

    adopted = invoke("adopt", "--all", "--store", s, "--approver", "ada")
    assert adopted.exit_code == 0, adopted.output
    assert "bert/nogoldens: skipped" in adopted.stdout
    if git:
        commit_all(tree.parent, "approve moe/dup, adopt the rest")
    first = GoldenStore(tree).history("gpt/resume")[0].ref
    before = untouched(tree, "gpt/resume/golden_values_dev_dgx_h100.json",
                       "gpt/resume/golden_values_dev_dgx_h100_2nd.json")
    rolled = invoke("rollback", "gpt/resume", "--to", first, "--store", s, "--reason", "back", "--approver", "ada")
    assert rolled.exit_code == 0, rolled.output
    assert untouched(tree, "gpt/resume/golden_values_dev_dgx_h100.json",
                     "gpt/resume/golden_values_dev_dgx_h100_2nd.json") == before
    assert json.loads((tree / "gpt/resume/golden_values_dev_dgx_h100.json").read_text()) == \
        megatron_doc(range(1, 21), 10.0)
    assert invoke("fsck", "--store", s).exit_code == 0
    assert invoke("prune", "--store", s).exit_code == 0
    assert invoke("validate", "--store", s).exit_code == 1               # the {} and empty files remain


def test_a_broken_golden_of_one_env_never_blocks_another_env(tree, tmp_path):
    """The lts/dgx_a100 file of gpt/resume is "{}": the dev/dgx_h100 golden is judged, staged, approved
    and shown as if it were not there, in both backends (the ledger records the {} file first)."""
    store = GoldenStore(tree)
    run = megatron_artifact(tmp_path / "runs", "resume", "r1", factor=1.3)
    out = invoke("diff", str(run), "--store", str(tree))
    assert out.exit_code == 1 and "staged gpt/resume dev/dgx_h100" in out.stderr
    [candidate] = approve.list_pending(store)
    [outcome] = approve.apply(approve.Operation.ACCEPT, store, [candidate], reason="r", approver="ada", ci=False)
    assert outcome.entry is not None
    assert store.writer_of(GoldenKey("gpt/resume", "dev", "dgx_h100")).source_run_id == "r1"
    second = megatron_artifact(tmp_path / "runs", "resume", "r2", factor=1.31)
    assert invoke("approve", str(second), "--store", str(tree), "--reason", "again", "--approver", "ada").exit_code == 0
    assert (tree / "gpt" / "resume" / "golden_values_lts_dgx_a100.json").read_text() == "{}"


# ---------------------------------------------------------------- bulk

def test_adopt_all_writes_nothing_when_one_case_fails(tmp_path):
    tree = odd_tree(tmp_path / "test_cases")
    ledger = tree / "bert" / "oneline" / ".golden" / "ledger.jsonl"
    ledger.parent.mkdir()
    ledger.write_text("not json\n")
    before = tree_bytes(tree, folders=True)
    out = invoke("adopt", "--all", "--store", str(tree))
    assert out.exit_code == 2 and "ledger line 1 is unreadable" in out.stderr
    assert tree_bytes(tree, folders=True) == before
    ledger.parent.joinpath("ledger.jsonl").unlink()
    ledger.parent.rmdir()
    listed = invoke("adopt", "moe/dup", "bert/nogoldens", "--store", str(tree))
    assert listed.exit_code == 2 and "bert/nogoldens: no golden_values" in listed.stderr
    assert not (tree / "moe" / "dup" / ".golden").exists()


def test_approve_many_pending_with_one_reason_filtered_by_case_env_platform_and_metric(tree, tmp_path):
    store = GoldenStore(tree)
    runs = tmp_path / "runs"
    staged = [
        megatron_artifact(runs, "gpt/resume", "g1", factor=1.2),
        megatron_artifact(runs, "moe/dup", "m1", factor=1.2, start=9.0),
        megatron_artifact(runs, "bert/oneline", "b1", factor=1.2, platform="dgx_a100", start=8.0),
        megatron_artifact(runs, "bert/oneline", "b2", factor=1.2, platform="dgx_h100", start=8.5,
                          extra={"mem-allocated-bytes": 2.0e9}),
    ]
    for run in staged:
        assert invoke("diff", str(run), "--store", str(tree)).exit_code == 1
    assert len(approve.list_pending(store)) == 4
    out = invoke("approve", "--pending", "--case", "bert/*", "--metric", "mem-allocated-bytes", "--store", str(tree),
                 "--reason", "memory after the allocator change", "--approver", "ada")
    assert out.exit_code == 0, out.output
    assert out.stdout.splitlines() == ["approved bert/oneline dev/dgx_h100 "
                                       + ("in the work tree (commit it with its record)"
                                          if store.backend_name == "git" else "as v2")
                                       + " from run b2 (took mem-allocated-bytes; kept lm loss, num-zeros)"]
    out = invoke("approve", "--pending", "--case", "bert/*", "--platform", "dgx_a100", "--store", str(tree),
                 "--reason", "one reason for all", "--approver", "ada")
    assert out.exit_code == 0 and len(out.stdout.splitlines()) == 1
    out = invoke("approve", "--pending", "--case", "*", "--env", "dev", "--store", str(tree),
                 "--reason", "one reason for all", "--approver", "bob")
    assert out.exit_code == 0 and len(out.stdout.splitlines()) == 2, out.output
    assert approve.list_pending(store) == []
    for case, env_platform, run in (("gpt/resume", "dgx_h100", "g1"), ("moe/dup", "dgx_h100", "m1"),
                                    ("bert/oneline", "dgx_a100", "b1")):
        writer = store.writer_of(GoldenKey(case, "dev", env_platform))
        assert writer.source_run_id == run and writer.reason in ("one reason for all",)
    assert store.writer_of(GoldenKey("bert/oneline", "dev", "dgx_h100")).source_run_id == "b2"


def test_golden_run_finds_a_case_by_path_and_names_its_runs_without_slashes(tmp_path):
    from runner.config import resolve_run_config
    from runner.run_folder import new_run_id

    name = "bert_mcore_tp2_pp2_resume_torch_dist_local_spec"
    nested = tmp_path / "store" / "bert" / name
    nested.mkdir(parents=True)
    for kept in ("case.yaml", "model_config.yaml"):  # case.yaml takes the case from Megatron's file
        shutil.copy(Path(__file__).resolve().parents[1] / "cases" / name / kept, nested / kept)
    for ref in (name, f"bert/{name}"):
        cfg = resolve_run_config(ref, tmp_path / "store")
        assert cfg.case == f"bert/{name}"
    assert new_run_id(cfg.case, "p").startswith(f"bert-{name}-p-")


# ---------------------------------------------------------------- the real sample tree

def test_every_command_on_the_real_sample_tree(megatron_fixtures, tmp_path):
    """../shared's Megatron test_cases, committed in a git work tree: the shared name, the orphan folder
    with its empty file, the {} golden, the legacy names and the inference golden are findings; every
    case shows and has a history; a golden approved into it passes validate without a warning."""
    repo = git_repo(tmp_path / "repo")
    tree = repo / "test_cases"
    shutil.copytree(megatron_fixtures / "test_cases", tree)
    commit_all(repo, "Megatron's test_cases")
    s = str(tree)
    store = GoldenStore(tree)
    assert store.backend_name == "git" and store.dialect == "megatron"
    assert invoke("fsck", "--store", s).exit_code == 0
    assert invoke("validate", "--store", s).exit_code == 1           # real errors: {}, empty, NaN inside series
    assert invoke("prune", "--check", "--store", s).exit_code == 1
    for case in store.cases():
        assert invoke("show", case, "--store", s).exit_code == 0, case
        assert invoke("history", case, "--store", s).exit_code == 0, case
    ambiguous = invoke("show", "gpt3_mcore_te_tp2_pp2_ep4_etp1_memory_speed", "--store", s)
    assert ambiguous.exit_code == 2 and "gpt/gpt3_mcore_te_tp2_pp2_ep4_etp1_memory_speed, moe/" in ambiguous.stderr
    case = "gpt/gpt3_7b_tp1_pp4_memory_speed"
    path = tree / case / "golden_values_dev_dgx_h100.json"
    doc = json.loads(path.read_text())
    metrics = {name: {int(k): v * 1.01 + 1.2345e-7 for k, v in metric["values"].items() if not isinstance(v, str)}
               for name, metric in doc.items()}
    run = write_run(tmp_path / "runs", case, "r1", metrics, platform="dgx_h100")
    before = {p: p.read_bytes() for p in tree.rglob("golden_values*.json") if p != path}
    out = invoke("approve", str(run), "--store", s, "--reason", "refresh", "--approver", "ada")
    assert out.exit_code == 0, out.output
    assert {p: p.read_bytes() for p in tree.rglob("golden_values*.json") if p != path} == before
    checked = invoke("validate", "--strict", str(path))
    assert checked.exit_code == 0 and "1 files: 1 ok, 0 warning, 0 error" in checked.stdout, checked.stdout
    adopted = invoke("adopt", "--all", "--store", s, "--approver", "ada")
    assert adopted.exit_code == 0, adopted.output
    commit_all(repo, "approve and adopt")
    changes = invoke("report", "--changes", "HEAD^..HEAD", "--store", s)
    assert changes.exit_code == 0 and "1 changed" in changes.stdout, changes.output
    assert invoke("fsck", "--store", s).exit_code == 0
