"""The rules of the hostile-store suite, held by the git backend too: its own files (the journal,
``.golden-store``, ``.approvals``, golden files, ``.pending``) damaged or forged never make a command
write, delete or follow anything outside the store; fsck reports them; in CI nothing is written."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from goldens.core.model import GoldenKey
from goldens.store.git_history import JOURNAL_SCHEMA
from tests.builders import (
    LOSS,
    ZEROS,
    commit_all,
    fsck_problems,
    git_repo,
    invoke,
    make_store,
    one_line_refusal,
    seed,
    shifted,
    tree_state,
    write_run,
)

KEY = GoldenKey("tiny", "dev", "cpu", 1)


class Sandbox:
    """A git work tree holding the store (``repo/cases``), and a sentinel tree beside it."""

    def __init__(self, tmp_path: Path):
        self.repo = git_repo(tmp_path / "repo")
        store = make_store(self.repo / "cases", ("tiny", "other"))
        seed(store, "tiny", {"lm loss": LOSS, "num-zeros": ZEROS})
        commit_all(self.repo, "seed tiny")
        assert store.backend_name == "git"
        self.root = store.root
        self.s = str(store.root)
        self.case_dir = store.root / "tiny"
        self.outside = tmp_path / "outside"
        (self.outside / "deep").mkdir(parents=True)
        (self.outside / "x.json").write_text('{"mine": true}')
        (self.outside / "dev_cpu.json").write_text("someone else's file")
        (self.outside / ".golden_values_dev_cpu.json.abcdefgh.tmp").write_text("someone else's temp file")
        (self.outside / ".journal.json.abcdefgh.tmp").write_text("someone else's temp file")
        (self.outside / "deep" / "tiny").mkdir()
        (self.outside / "deep" / "tiny" / "dev_cpu.json").write_text('{"not": "yours"}')
        self.runs = tmp_path / "runs"

    def run(self, run_id: str = "r1", factor: float = 1.1) -> str:
        return str(write_run(self.runs, "tiny", run_id, {"lm loss": shifted(LOSS, factor), "num-zeros": ZEROS}))

    def approve(self, **env: str):
        return invoke("approve", self.run(), "--store", self.s, "--reason", "r", "--approver", "ada", env=env)


@pytest.fixture
def box(tmp_path) -> Sandbox:
    return Sandbox(tmp_path)


def fsck_kinds(box: Sandbox, *args: str, env: dict | None = None) -> tuple[int, list[str]]:
    code, problems = fsck_problems(box.s, *args, env=env)
    return code, [p["kind"] for p in problems]


@pytest.mark.parametrize("link", [".approvals", "golden file", ".golden-store", ".pending"])
def test_a_store_path_linked_outside_is_refused_reported_and_never_followed(box, link):
    if link == ".approvals":
        target = box.case_dir / ".approvals"
        os.rename(target, box.outside / "records")
        target.symlink_to(box.outside / "records")
    elif link == "golden file":
        target = box.case_dir / KEY.filename()
        os.rename(target, box.outside / KEY.filename())
        target.symlink_to(box.outside / KEY.filename())
    elif link == ".golden-store":
        shutil.rmtree(box.root / ".golden-store")
        (box.root / ".golden-store").symlink_to(box.outside / "deep", target_is_directory=True)
    else:
        (box.root / ".pending").symlink_to(box.outside / "deep", target_is_directory=True)
    outside, store = tree_state(box.outside), tree_state(box.root)
    one_line_refusal(box.approve(), "symlink")
    code, kinds = fsck_kinds(box)
    assert code == 1 and "unsafe-path" in kinds
    pruned = invoke("prune", "--store", box.s)
    assert pruned.exit_code in (0, 1, 2)
    assert tree_state(box.outside) == outside
    if link != ".pending":
        assert tree_state(box.root) == store  # refused: nothing written in the store either


@pytest.mark.parametrize("named", ["../../outside/x.json", "/tmp/x.json", "tiny/../../../outside/x.json",
                                   "tiny/.approvals/../../../outside/x.json"])
def test_a_forged_journal_naming_a_path_outside_touches_nothing(box, named):
    store_dir = box.root / ".golden-store"
    store_dir.mkdir(exist_ok=True)
    (store_dir / "journal.json").write_text(json.dumps(
        {"schema": JOURNAL_SCHEMA, "files": {named: None, "tiny/golden_values_dev_cpu.json": "{}"}}))
    outside, golden = tree_state(box.outside), (box.case_dir / KEY.filename()).read_bytes()
    one_line_refusal(box.approve(), "journal")
    code, kinds = fsck_kinds(box)
    assert code == 1 and "unreadable-journal" in kinds
    assert tree_state(box.outside) == outside
    assert (box.case_dir / KEY.filename()).read_bytes() == golden  # the forged journal was not applied
    assert (store_dir / "journal.json").exists()  # nor deleted: a person looks at it


def test_only_our_own_temp_files_are_removed(box):
    mine = box.case_dir / ".golden_values_dev_cpu.json.k2j4h5g6.tmp"
    mine.write_text("a temp file an interrupted write of ours left")
    look_alikes = [box.case_dir / ".golden_values_dev_cpu.json.tmp", box.case_dir / ".golden_values_notes.tmp",
                   box.case_dir / ".approvals" / ".README.tmp"]
    for path in look_alikes:
        path.write_text("someone else's")
    code, kinds = fsck_kinds(box)
    assert code == 0 and kinds == ["stale-temp-file"]
    assert not mine.exists() and all(p.read_text() == "someone else's" for p in look_alikes)


def test_with_ci_set_no_command_writes_to_a_git_store(box):
    store_dir = box.root / ".golden-store"
    invoke("approve", box.run("r0"), "--store", box.s, "--reason", "r", "--approver", "ada")
    commit_all(box.repo, "approved r0")
    (box.case_dir / KEY.filename()).write_text((box.case_dir / KEY.filename()).read_text())  # same bytes
    (box.case_dir / ".golden_values_dev_cpu.json.k2j4h5g6.tmp").write_text("ours, left by a crash")
    (store_dir / "journal.json").write_text(json.dumps({"schema": JOURNAL_SCHEMA, "files": {}}))
    before = tree_state(box.root)
    ci = {"CI": "true"}
    one_line_refusal(box.approve(**ci), "CI")
    one_line_refusal(invoke("adopt", "--all", "--store", box.s, env=ci), "CI")
    one_line_refusal(invoke("rollback", "tiny", "--to", "HEAD~1", "--store", box.s, "--reason", "r", env=ci), "CI")
    one_line_refusal(invoke("migrate", "--store", box.s, env=ci), "CI")
    checked = invoke("fsck", "--store", box.s, env=ci)
    assert checked.exit_code in (0, 1) and "reporting only" in checked.stderr
    assert "temp file of an interrupted write" in checked.stdout and "0 repaired" in checked.stdout
    assert invoke("prune", "--store", box.s, env=ci).exit_code in (0, 1)
    diffed = invoke("diff", box.run("r2", 1.3), "--store", box.s, env=ci)
    assert diffed.exit_code == 1  # a real difference, and in CI no candidate is staged
    assert tree_state(box.root) == before
