"""Git is the history where there is git: versions are commits, each golden's approval record is
committed beside it, a golden another tool changed is an unattributed version, branches approving
different goldens merge cleanly, and a ledger moves into git without losing its provenance."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from goldens.core.errors import StoreError
from goldens.core.model import GoldenKey
from goldens.store import GoldenStore
from tests.builders import (
    LOSS,
    ZEROS,
    commit_all,
    git,
    git_repo,
    golden_set,
    invoke,
    make_store,
    megatron_artifact,
    odd_tree,
    seed,
    shifted,
    write_run,
)

KEY = GoldenKey("tiny", "dev", "cpu", 1)


@pytest.fixture
def repo(tmp_path) -> Path:
    return git_repo(tmp_path / "repo")


@pytest.fixture
def store(repo) -> GoldenStore:
    """Our store inside a git work tree: tiny (a golden, committed) and other (none yet)."""
    made = make_store(repo / "cases", ("tiny", "other"))
    seed(made, "tiny", {"lm loss": LOSS, "num-zeros": ZEROS})
    commit_all(repo, "seed tiny")
    return GoldenStore(made.root)


def status(repo: Path) -> list[str]:
    """The paths git sees changed or new in the work tree."""
    listing = git(repo, "status", "--porcelain", "--untracked-files=all")
    return sorted(line.split(maxsplit=1)[1] for line in listing.splitlines())


# ---------------------------------------------------------------- the backend is chosen automatically

def test_the_backend_follows_the_tree_and_fsck_says_which(store, tmp_path, monkeypatch):
    assert store.backend_name == "git" and "inside the git work tree" in store.describe()["backend_why"]
    outside = make_store(tmp_path / "plain", ("tiny",))
    assert outside.backend_name == "ledger" and outside.describe()["backend_why"] == "not inside a git work tree"
    (store.root.parent / ".gitignore").write_text("ignored/\n")
    assert make_store(store.root.parent / "ignored", ("x",)).backend_name == "ledger"  # git keeps no history there
    monkeypatch.setenv("GOLDEN_BACKEND", "ledger")
    assert GoldenStore(store.root).backend_name == "ledger"
    monkeypatch.delenv("GOLDEN_BACKEND")
    out = invoke("fsck", "--store", str(store.root))
    assert out.exit_code == 0 and "git history (inside the git work tree" in out.stdout, out.output
    with pytest.raises(StoreError, match="needs a git work tree"):
        _ = GoldenStore(outside.root, backend="git").backend


def test_the_seed_commit_is_an_attributed_version_and_the_store_adds_no_second_copy(store, repo):
    (version,) = store.history("tiny")
    assert version.commit and version.attributed and version.approver == "seed" and version.fingerprint == "fp-seed"
    assert version.files[KEY.filename()].summary["lm loss"].steps_added == 20
    tracked = git(repo, "ls-files").splitlines()
    assert sorted(tracked) == ["cases/other/case.yaml", "cases/tiny/.approvals/dev_cpu.json", "cases/tiny/case.yaml",
                               "cases/tiny/golden_values_dev_cpu.json"]   # no ledger, no blobs, no lock
    record = json.loads((store.root / "tiny" / ".approvals" / "dev_cpu.json").read_text())
    assert record["hash"] == version.files[KEY.filename()].hash and record["reason"] == "first golden"


# ---------------------------------------------------------------- approving, then committing

def test_an_approval_lands_in_the_work_tree_as_golden_plus_record(store, repo, tmp_path):
    run = write_run(tmp_path / "runs", "tiny", "r1", {"lm loss": shifted(LOSS, 1.1), "num-zeros": ZEROS})
    out = invoke("approve", str(run), "--store", str(store.root), "--reason", "new init", "--approver", "ada")
    assert out.exit_code == 0, out.output
    assert "approved tiny dev/cpu in the work tree" in out.stdout and "git history" in out.stderr
    assert status(repo) == ["cases/tiny/.approvals/dev_cpu.json", "cases/tiny/golden_values_dev_cpu.json"]
    versions = GoldenStore(store.root).history("tiny")
    assert [v.label for v in versions][-1] == "uncommitted" and versions[-1].approver == "ada"
    commit_all(repo, "approve the new init")
    fresh = GoldenStore(store.root)
    approved = fresh.history("tiny")[-1]
    assert approved.commit == git(repo, "rev-parse", "HEAD") and approved.reason == "new init"
    assert approved.source_run_id == "r1" and fresh.fingerprint_of(KEY) == "fp-1"
    assert approved.files[KEY.filename()].summary["lm loss"].changed_steps == 20
    assert list(fresh.fsck(repair=False)) == []


def test_a_pair_whose_2nd_file_stays_the_same_gets_no_no_op_record_for_it(tmp_path):
    repo = git_repo(tmp_path / "repo")
    made = make_store(repo / "cases", ("tiny",))
    late = {s: v for s, v in LOSS.items() if s > 10}
    seed(made, "tiny", {"lm loss": LOSS}, phase2={"lm loss": late})
    commit_all(repo, "seed the pair")
    record_before = (made.root / "tiny" / ".approvals" / "dev_cpu_2nd.json").read_bytes()
    store = GoldenStore(made.root)
    store.write("tiny", {KEY: golden_set({"lm loss": shifted(LOSS, 1.1)}),
                         replace(KEY, phase=2): golden_set({"lm loss": late})},
                approver="ada", reason="new init", ci=False)
    # the 1st file changed: it and its record; the _2nd's bytes did not: its record still describes them
    assert status(repo) == ["cases/tiny/.approvals/dev_cpu.json", "cases/tiny/golden_values_dev_cpu.json"]
    assert (made.root / "tiny" / ".approvals" / "dev_cpu_2nd.json").read_bytes() == record_before
    commit_all(repo, "approve")
    fresh = GoldenStore(made.root)
    assert fresh.writer_of(replace(KEY, phase=2)).reason == "first golden"
    assert fresh.writer_of(KEY).reason == "new init" and fresh.fsck(repair=False) == []
    # re-approving bytes that do not change at all still records the new reason (nothing else would)
    fresh.write("tiny", {KEY: golden_set({"lm loss": shifted(LOSS, 1.1)})}, approver="ada", reason="again", ci=False)
    assert status(repo) == ["cases/tiny/.approvals/dev_cpu.json"]


def test_records_hold_repository_relative_paths_never_absolute_local_ones(store, repo):
    import sys

    config = repo / "cases" / "tiny" / "model_config.yaml"
    store.write("tiny", {KEY: golden_set({"lm loss": shifted(LOSS, 1.1)})}, approver="ada", reason="r", ci=False,
                provenance={"command": f"{sys.executable} -m goldens check {repo / 'cases' / 'tiny'} --out /tmp/x",
                            "megatron_case": {"source": str(config), "entries": {"a": {"target": "data/cache / b"}}},
                            "dirs": [str(repo)]})
    text = (store.root / "tiny" / ".approvals" / "dev_cpu.json").read_text()
    assert str(repo) not in text and str(Path(sys.executable).parent) not in text and "/tmp/x" not in text
    provenance = json.loads(text)["provenance"]
    assert provenance["megatron_case"]["source"] == "cases/tiny/model_config.yaml"
    assert provenance["command"] == f"{Path(sys.executable).name} -m goldens check cases/tiny --out x"
    assert provenance["megatron_case"]["entries"]["a"]["target"] == "data/cache / b"  # not a path: untouched
    assert provenance["dirs"] == ["."]


def test_a_golden_copied_in_and_committed_is_an_unattributed_version(store, repo):
    path = store.root / "tiny" / KEY.filename()
    doc = json.loads(path.read_text())
    doc["lm loss"]["values"]["1"] = 42.0
    path.write_text(json.dumps(doc, indent=4))        # Megatron's download script, or a plain cp
    commit_all(repo, "refresh goldens from pipeline 123")
    versions = GoldenStore(store.root).history("tiny")
    last = versions[-1]
    assert not last.attributed and last.action == "unattributed" and last.author == "t"
    assert last.subject == "refresh goldens from pipeline 123"
    assert last.files[KEY.filename()].summary["lm loss"].changed_steps == 1
    out = invoke("history", "tiny", "--store", str(store.root))
    assert "unattributed: changed outside the golden tool" in out.stdout and out.exit_code == 0
    problems = GoldenStore(store.root).fsck(repair=False)
    assert [p.severity for p in problems] == ["note"]          # a note, not a problem
    assert invoke("fsck", "--store", str(store.root)).exit_code == 0
    validated = invoke("validate", "--store", str(store.root))
    assert validated.exit_code == 0 and "unattributed" not in validated.stdout
    assert f"OK       {path}" in validated.stdout
    assert GoldenStore(store.root).fingerprint_of(KEY) is None   # no record describes these bytes


# ---------------------------------------------------------------- versions are commits

def test_show_diff_and_rollback_by_revision(store, repo, tmp_path):
    first = git(repo, "rev-parse", "HEAD")
    run = write_run(tmp_path / "runs", "tiny", "r1", {"lm loss": shifted(LOSS, 1.1), "num-zeros": ZEROS})
    assert invoke("approve", str(run), "--store", str(store.root), "--reason", "r", "--approver", "ada").exit_code == 0
    second = commit_all(repo, "approve r1")
    s = str(store.root)
    shown = invoke("show", f"tiny@{first[:8]}", "--store", s, "--metric", "lm loss")
    assert shown.exit_code == 0 and f"tiny@{first[:8]}"[5:] in shown.stdout and "by seed" in shown.stdout
    assert repr(LOSS[3]) in shown.stdout
    assert invoke("diff", f"tiny@{first[:8]}", "tiny@HEAD", "--store", s).exit_code == 1  # loss +10 %
    assert invoke("diff", f"tiny@{first}", f"tiny@{first}", "--store", s).exit_code == 0
    refused = invoke("show", "tiny@v1", "--store", s)
    assert refused.exit_code == 2 and "versions are commits" in refused.stderr
    seed_bytes = git(repo, "show", f"{first}:cases/tiny/golden_values_dev_cpu.json").encode()
    out = invoke("rollback", "tiny", "--to", first[:10], "--store", s, "--reason", "r1 came from a bad node",
                 "--approver", "bob")
    assert out.exit_code == 0, out.output
    assert (store.root / "tiny" / KEY.filename()).read_bytes().rstrip(b"\n") == seed_bytes.rstrip(b"\n")
    record = json.loads((store.root / "tiny" / ".approvals" / "dev_cpu.json").read_text())
    assert (record["action"], record["approver"], record["source_run_id"], record["fingerprint"]) == (
        "rollback", "bob", "seed-run", "fp-seed")
    assert record["provenance"]["rollback_to"] == first
    commit_all(repo, "rollback")
    assert [v.action for v in GoldenStore(store.root).history("tiny")] == ["approve", "approve", "rollback"]
    again = invoke("rollback", "tiny", "--to", second, "--store", s, "--reason", "x", "--approver", "bob")
    assert again.exit_code == 0 and GoldenStore(store.root).fingerprint_of(KEY) == "fp-1"


def test_the_change_report_reads_git_and_skips_an_unreadable_file(tmp_path):
    repo = git_repo(tmp_path / "repo")
    tree = odd_tree(repo / "test_cases")
    commit_all(repo, "the tree, {} and empty files included")
    store = GoldenStore(tree)
    run = megatron_artifact(tmp_path / "runs", "gpt/resume", "r1", factor=1.01)
    assert invoke("approve", str(run), "--store", str(tree), "--reason", "r", "--approver", "ada").exit_code == 0
    commit_all(repo, "approve")
    out = invoke("report", "--changes", "HEAD^..HEAD", "--store", str(tree))
    assert out.exit_code == 0, out.output
    assert "gpt/resume/golden\\_values\\_dev\\_dgx\\_h100.json" in out.stdout
    assert "unreadable" in out.stdout                  # the {} and empty files are notes, not an exit 2
    case_changes = invoke("report", "--changes", "gpt/resume@HEAD^..HEAD", "--store", str(tree))
    assert case_changes.exit_code == 0 and "golden\\_values\\_dev\\_dgx\\_h100.json" in case_changes.stdout
    assert store.backend_name == "git"


# ---------------------------------------------------------------- branches merge cleanly

@pytest.mark.parametrize("second_target", [("other", "dev", "cpu"), ("tiny", "dev", "gpu")],
                         ids=["different cases", "one case, two platforms"])
def test_two_branches_approving_different_goldens_merge_cleanly(store, repo, tmp_path, second_target):
    git(repo, "checkout", "-q", "-b", "branch-a")
    run_a = write_run(tmp_path / "runs", "tiny", "ra", {"lm loss": shifted(LOSS, 1.1)})
    assert invoke("approve", str(run_a), "--store", str(store.root), "--reason", "a",
                  "--approver", "ada").exit_code == 0
    commit_all(repo, "approve tiny dev/cpu")
    git(repo, "checkout", "-q", "master")
    git(repo, "checkout", "-q", "-b", "branch-b")
    case, env, platform = second_target
    run_b = write_run(tmp_path / "runs", case, "rb", {"lm loss": shifted(LOSS, 0.9)}, env=env, platform=platform)
    assert invoke("approve", str(run_b), "--store", str(store.root), "--reason", "b",
                  "--approver", "bob").exit_code == 0
    commit_all(repo, f"approve {case} {env}/{platform}")
    git(repo, "checkout", "-q", "branch-a")
    merged = subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "merge",
                             "--no-edit", "branch-b"], capture_output=True, text=True)
    assert merged.returncode == 0, merged.stdout + merged.stderr          # no conflict
    fresh = GoldenStore(store.root)
    assert fresh.fsck(repair=False) == [] and invoke("fsck", "--store", str(store.root)).exit_code == 0
    assert fresh.writer_of(KEY).source_run_id == "ra"
    assert fresh.writer_of(GoldenKey(case, env, platform)).source_run_id == "rb"
    runs = {v.source_run_id for v in fresh.history(case)}
    assert "rb" in runs and ("ra" in runs) == (case == "tiny")


# ---------------------------------------------------------------- every guard of the ledger holds here too

def test_ci_never_writes_and_links_are_never_followed(store, tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "1")
    with pytest.raises(StoreError, match="CI never writes"):
        store.adopt("tiny")
    with pytest.raises(StoreError, match="CI never writes"):
        store.write("tiny", {KEY: store.read(KEY)}, approver="a", reason="r")
    monkeypatch.delenv("CI")
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text((store.root / "tiny" / KEY.filename()).read_text())
    (store.root / "tiny" / KEY.filename()).unlink()
    os.symlink(elsewhere, store.root / "tiny" / KEY.filename())
    run = write_run(tmp_path / "runs", "tiny", "r1", {"lm loss": shifted(LOSS, 1.1)})
    before = elsewhere.read_bytes()
    out = invoke("approve", str(run), "--store", str(store.root), "--reason", "r", "--approver", "ada")
    assert out.exit_code == 2 and "symlink" in out.stderr
    assert elsewhere.read_bytes() == before


def test_a_write_interrupted_after_its_journal_is_finished_by_fsck(store):
    journal = store.root / ".golden-store" / "journal.json"
    journal.parent.mkdir(exist_ok=True)
    new = (store.root / "tiny" / KEY.filename()).read_text().replace("1003.0", "1003.5")
    journal.write_text(json.dumps({"schema": "golden.journal/1", "files": {f"tiny/{KEY.filename()}": new}}))
    problems = store.fsck(repair=False)
    assert [p.kind for p in problems if p.severity != "note"] == ["interrupted-write"]
    assert [(p.kind, p.repaired) for p in store.fsck(repair=True) if p.severity != "note"] == [
        ("interrupted-write", True)]
    assert (store.root / "tiny" / KEY.filename()).read_text() == new and not journal.exists()
    journal.write_text(json.dumps({"schema": "golden.journal/1", "files": {"../../etc/passwd": "x"}}))
    (forged,) = [p for p in store.fsck(repair=True) if p.severity != "note"]
    assert forged.kind == "unreadable-journal" and "invalid case name" in forged.message and not forged.repaired
    assert journal.exists()  # neither applied nor deleted: a person looks at it


def test_adopt_writes_records_only_and_all_at_once(tmp_path):
    repo = git_repo(tmp_path / "repo")
    tree = odd_tree(repo / "test_cases")
    commit_all(repo, "tree")
    before = {p: p.read_bytes() for p in tree.rglob("golden_values*")}
    out = invoke("adopt", "--all", "--store", str(tree), "--reason", "pipeline 123", "--approver", "ada")
    assert out.exit_code == 0, out.output
    assert "bert/nogoldens: skipped" in out.stdout
    assert {p: p.read_bytes() for p in tree.rglob("golden_values*")} == before
    added = status(repo)
    assert added and all("/.approvals/" in path for path in added)
    assert GoldenStore(tree).writer_of(GoldenKey("moe/dup", "dev", "dgx_h100")).action == "imported"
    again = invoke("adopt", "gpt/resume", "--store", str(tree))
    assert again.exit_code == 2 and "nothing to adopt" in again.stderr


# ---------------------------------------------------------------- the ledger moves into git

def test_migrate_moves_the_ledger_into_records_and_keeps_its_provenance(tmp_path):
    repo = git_repo(tmp_path / "repo")
    ledger_store = make_store(repo / "cases", ("tiny",))
    ledger_store = GoldenStore(ledger_store.root, backend="ledger")
    seed(ledger_store, "tiny", {"lm loss": LOSS}, fingerprint="fp-seed", approver="runner")
    old_commit = commit_all(repo, "cases: goldens approved through the ledger")
    seed(ledger_store, "tiny", {"lm loss": shifted(LOSS, 1.01)}, fingerprint="fp-2", approver="ada",
         reason="second")
    commit_all(repo, "second approval")
    auto = GoldenStore(ledger_store.root)
    assert auto.backend_name == "ledger" and "golden migrate" in auto.describe()["backend_why"]
    out = invoke("migrate", "--store", str(ledger_store.root))
    assert out.exit_code == 0, out.output
    assert "golden_values_dev_cpu.json (from ledger v2)" in out.stdout
    assert not (ledger_store.root / "tiny" / ".golden").exists()
    migrated = GoldenStore(ledger_store.root)
    assert migrated.backend_name == "git" and migrated.fingerprint_of(KEY) == "fp-2"
    record = json.loads((ledger_store.root / "tiny" / ".approvals" / "dev_cpu.json").read_text())
    assert (record["approver"], record["reason"], record["source_run_id"]) == ("ada", "second", "seed-run")
    commit_all(repo, "migrate the ledger into git")
    history = GoldenStore(ledger_store.root).history("tiny")
    assert next((v.commit, v.approver) for v in history) == (old_commit, "runner")  # attributed from the ledger
    assert all(v.attributed for v in history) and GoldenStore(ledger_store.root).fsck(repair=False) == []


def test_this_repository_s_cases_are_a_git_store_with_their_provenance():
    store = GoldenStore(Path(__file__).resolve().parents[1] / "cases")
    if store.backend_name != "git":
        pytest.skip("the repository is not a git work tree here (an exported copy)")
    key = GoldenKey("bert_mcore_tp2_pp2_resume_torch_dist_local_spec", "dev", "cpu", 1)
    writer = store.writer_of(key)
    assert writer is not None and writer.approver == "runner (issue 14)"  # the goldens re-recorded for issue 14
    assert writer.fingerprint.startswith("sha256:") and writer.provenance["fingerprint"] == writer.fingerprint
    assert not list(store.root.rglob(".golden"))
    assert [p for p in store.fsck(repair=False) if p.severity != "note"] == []


# ---------------------------------------------------------------- weight of the store's own files

def test_the_store_s_own_files_weigh_at_most_2_percent_of_the_goldens(megatron_fixtures, tmp_path):
    repo = git_repo(tmp_path / "repo")
    tree = repo / "test_cases"
    shutil.copytree(megatron_fixtures / "test_cases", tree)
    commit_all(repo, "Megatron's test_cases")
    for case, platform in (("bert/bert_mcore_tp2_pp2", "dgx_h100"),
                           ("moe/gpt3_mcore_te_tp2_pp2_ep4_etp1_memory_speed", "dgx_h100"),
                           ("t5/t5_mcore_tp4_pp1_resume_torch_dist", "dgx_a100")):
        golden_file = tree / case / f"golden_values_dev_{platform}.json"
        doc = json.loads(golden_file.read_text())
        steps = [int(s) for s in doc["lm loss"]["values"]]
        run = megatron_artifact(tmp_path / "runs", case, case.replace("/", "-"), steps=steps, platform=platform)
        out = invoke("approve", str(run), "--store", str(tree), "--reason", "refresh", "--approver", "ada")
        assert out.exit_code == 0, out.output
    commit_all(repo, "three approvals")
    own = [p for p in tree.rglob("*") if p.is_file() and (".approvals" in p.parts or ".golden-store" in p.parts)]
    goldens = list(tree.rglob("golden_values*.json"))
    weight = sum(p.stat().st_size for p in own) / sum(p.stat().st_size for p in goldens)
    assert len([p for p in own if ".approvals" in p.parts]) == 3
    assert weight <= 0.02, weight
