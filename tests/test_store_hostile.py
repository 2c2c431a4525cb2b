"""A damaged or hostile store: the store never destroys history and never touches anything outside
itself, whatever its own files say (issue 15).

Every test builds the same world — ``cases/tiny`` with three versions (seed, ada, bob), ``runs/``,
and ``outside/``, a sentinel tree beside the store that no command may change — damages the store
one way, runs the commands, and checks: no traceback, one line and exit 2 for a refusal, ``fsck``
reporting what it finds, nothing outside changed, no history lost. The fuzzer that builds thousands
of such stores is ``bench/fuzz_store.py`` (a short run is in ``tests/test_store_fuzz.py``).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from goldens.core.model import GoldenKey, MetricSeries
from goldens.files.formats.golden import dumps_golden
from goldens.store import GoldenStore, entry_hash_of, sha256_hex
from goldens.store import ledger as ledger_module
from goldens.store.records import canonical_json
from tests.builders import (
    LOSS,
    ZEROS,
    fsck_problems,
    golden_set,
    invoke,
    make_store,
    one_line_refusal,
    seed,
    shifted,
    tree_state,
    write_run,
)

CASE = "tiny"
KEY = GoldenKey(CASE, "dev", "cpu", 1)
REPO = Path(__file__).resolve().parents[1]


@dataclass
class World:
    store: GoldenStore
    runs: Path
    outside: Path

    @property
    def root(self) -> Path:
        return self.store.root

    @property
    def s(self) -> str:
        return str(self.store.root)

    @property
    def case_dir(self) -> Path:
        return self.root / CASE

    @property
    def ledger(self) -> Path:
        return self.case_dir / ".golden" / "ledger.jsonl"

    @property
    def objects(self) -> Path:
        return self.case_dir / ".golden" / "objects"

    def entries(self) -> list[dict]:
        return [json.loads(line) for line in self.ledger.read_bytes().splitlines()]

    def run(self, run_id: str = "r9", **kw) -> Path:
        return write_run(self.runs, CASE, run_id, {"lm loss": shifted(LOSS, 1.07), "num-zeros": ZEROS}, **kw)


@pytest.fixture
def world(tmp_path) -> World:
    """cases/tiny at v3 (v1 seed, v2 by ada, v3 by bob), runs/, and the sentinel tree outside/."""
    store = make_store(tmp_path / "cases", (CASE,))
    seed(store, CASE, {"lm loss": LOSS, "num-zeros": ZEROS})
    for version, who in ((2, "ada"), (3, "bob")):
        store.write(CASE, {KEY: golden_set({"lm loss": shifted(LOSS, 1 + version / 100), "num-zeros": ZEROS})},
                    approver=who, reason=f"v{version} by {who}", source_run_id=f"run-{version}")
    outside = tmp_path / "outside"
    (outside / "pending" / CASE).mkdir(parents=True)
    (outside / "victim.json").write_text(dumps_golden(golden_set({"lm loss": [1.0]})))
    (outside / "pending" / CASE / "dev_cpu.json").write_text('{"not": "yours"}')
    (outside / ".golden_values_dev_cpu.json.abcdefgh.tmp").write_text("someone else's temp file")
    (outside / ".0123.json.abcdefgh.tmp").write_text("someone else's temp file")
    return World(store, tmp_path / "runs", outside)


def rechain(world: World, entries: list[dict]) -> None:
    """Write ``entries`` as the ledger with a valid hash chain: a forgery, not damage."""
    previous = None
    lines = []
    for entry in entries:
        entry["prev_entry_hash"] = previous
        entry["entry_hash"] = entry_hash_of(entry)
        previous = entry["entry_hash"]
        lines.append(canonical_json(entry) + b"\n")
    world.ledger.write_bytes(b"".join(lines))


def fsck_json(world: World, *args: str, env: dict | None = None) -> tuple[int, list[dict]]:
    return fsck_problems(world.s, *args, env=env)


# ---------------------------------------------------------------- 1. a ledger steering writes and deletes

def _forge_head(world: World, files: dict) -> None:
    entries = world.entries()
    forged = dict(entries[-1], version=len(entries) + 1, reason="forged", files=files)
    rechain(world, [*entries, forged])


HOSTILE_ENTRIES = {
    "relative": lambda w, blob: {"../../outside/victim.json": {"hash": None, "previous_hash": sha256_hex(
                                     (w.outside / "victim.json").read_bytes()), "summary": None},
                                 "../../outside/created.json": {"hash": blob, "previous_hash": None, "summary": None}},
    "absolute": lambda w, blob: {str(w.outside / "victim.json"): {"hash": None, "previous_hash": sha256_hex(
                                     (w.outside / "victim.json").read_bytes()), "summary": None},
                                 str(w.outside / "created.json"): {"hash": blob, "previous_hash": None,
                                                                   "summary": None}},
    "blob name": lambda w, blob: {"golden_values_dev_cpu.json": {
        "hash": "../../../../outside/victim", "previous_hash": sha256_hex((w.case_dir / KEY.filename()).read_bytes()),
        "summary": None}},
}


@pytest.mark.parametrize("how", sorted(HOSTILE_ENTRIES))
def test_a_ledger_entry_naming_a_path_outside_the_store_is_never_used(world, how):
    blob = world.entries()[0]["files"][KEY.filename()]["hash"]
    _forge_head(world, HOSTILE_ENTRIES[how](world, blob))
    outside = tree_state(world.outside)
    code, problems = fsck_json(world)
    assert code == 1
    assert [p["kind"] for p in problems if p["severity"] == "error"] == ["unreadable-ledger-line"], problems
    assert "ledger line 4" in problems[0]["message"]
    one_line_refusal(invoke("approve", str(world.run()), "--store", world.s, "--reason", "r"), "golden fsck")
    one_line_refusal(invoke("rollback", CASE, "--to", "v1", "--store", world.s, "--reason", "r"), "golden fsck")
    assert tree_state(world.outside) == outside
    assert not (world.outside / "created.json").exists()


@pytest.mark.parametrize("summary", [
    {"steps_added": 0, "steps_removed": 0, "changed_steps": 1, "max_abs_rel_diff": 0.5},   # mean_rel_diff gone
    {"steps_added": 0, "steps_removed": 0, "changed_steps": 1, "max_abs_rel_diff": "0.5", "mean_rel_diff": 0.1},
    {"steps_added": -1, "steps_removed": 0, "changed_steps": 1, "max_abs_rel_diff": None, "mean_rel_diff": None},
])
def test_a_forged_change_summary_is_an_unreadable_line_not_a_traceback(world, summary):
    """Found by the fuzzer: a summary our writer never makes, in an entry whose chain holds."""
    entries = world.entries()
    entries[-1]["files"][KEY.filename()]["summary"] = {"lm loss": summary}
    rechain(world, entries)
    one_line_refusal(invoke("history", CASE, "--store", world.s), "ledger line 3 is unreadable")
    code, problems = fsck_json(world)
    assert code == 1 and "unreadable-ledger-line" in [p["kind"] for p in problems]


# ---------------------------------------------------------------- 2. fsck never deletes history

def test_a_missing_ledger_is_an_error_to_repair_and_every_blob_stays(world):
    world.ledger.unlink()
    objects = tree_state(world.objects)
    code, problems = fsck_json(world)
    assert code == 1 and "missing-ledger" in [p["kind"] for p in problems]
    assert tree_state(world.objects) == objects
    one_line_refusal(invoke("approve", str(world.run()), "--store", world.s, "--reason", "r"), "golden fsck")
    one_line_refusal(invoke("adopt", CASE, "--store", world.s), "golden fsck")
    assert tree_state(world.objects) == objects and not world.ledger.exists()


def test_an_empty_ledger_beside_blobs_is_a_missing_ledger(world):
    world.ledger.write_bytes(b"")
    objects = tree_state(world.objects)
    code, problems = fsck_json(world)
    assert code == 1 and "missing-ledger" in [p["kind"] for p in problems]
    assert tree_state(world.objects) == objects


def test_an_unreadable_ledger_line_keeps_its_version_and_restoring_the_byte_restores_it(world):
    data = world.ledger.read_bytes()
    broken = data.replace(b'"approver":"ada"', b'"approver":"ada', 1)
    world.ledger.write_bytes(broken)
    objects = tree_state(world.objects)
    code, problems = fsck_json(world)
    assert code == 1 and "unreadable-ledger-line" in [p["kind"] for p in problems]
    assert tree_state(world.objects) == objects  # v2's blob is still there
    world.ledger.write_bytes(data)
    shown = invoke("show", f"{CASE}@v2", "--store", world.s)
    assert shown.exit_code == 0, shown.output
    assert fsck_json(world) == (0, [])


def test_a_complete_last_line_without_its_newline_is_a_committed_entry(world):
    data = world.ledger.read_bytes()
    world.ledger.write_bytes(data[:-1])
    objects = tree_state(world.objects)
    history = json.loads(invoke("history", CASE, "--store", world.s, "--json").stdout)["versions"]
    assert [e["approver"] for e in history] == ["seed", "ada", "bob"]
    code, problems = fsck_json(world)
    assert code == 0 and [(p["kind"], p["repaired"]) for p in problems] == [("missing-newline", True)]
    assert world.ledger.read_bytes() == data and tree_state(world.objects) == objects
    assert invoke("approve", str(world.run()), "--store", world.s, "--reason", "next").exit_code == 0
    assert [e["action"] for e in world.entries()] == ["approve"] * 4  # nothing re-recorded as "imported"
    assert world.entries()[2]["approver"] == "bob"


def test_an_unreadable_last_line_without_its_newline_is_damage_not_a_missing_newline(world):
    """Found by the fuzzer: a byte flipped in the only line, then its newline cut."""
    last = world.ledger.read_bytes().splitlines()[-1]
    world.ledger.write_bytes(last.replace(b'"approver":"bob"', b'"approver":bob', 1))
    before = tree_state(world.root)
    code, problems = fsck_json(world)
    assert code == 1 and [p["kind"] for p in problems if p["severity"] == "error"] == ["unreadable-ledger-line"]
    assert tree_state(world.root) == before


def test_an_unreferenced_blob_nothing_accounts_for_goes_to_quarantine_not_away(world):
    stray = b'{"lm loss": {"values": {"1": 1.0}}}'
    (world.objects / f"{sha256_hex(stray)}.json").write_bytes(stray)
    result = invoke("fsck", "--store", world.s)
    assert result.exit_code == 1 and "quarantine" in result.stdout, result.output
    assert not (world.objects / f"{sha256_hex(stray)}.json").exists()
    kept = [p for p in (world.case_dir / ".golden" / "quarantine").rglob("*") if p.is_file()]
    assert stray in [p.read_bytes() for p in kept]
    assert any(sha256_hex(stray) in p.read_text() for p in kept if p.name.startswith("REPORT"))
    again = invoke("fsck", "--store", world.s)
    assert again.exit_code == 0 and "quarantine" in again.stdout


def test_no_blob_moves_while_the_ledger_is_damaged(world):
    stray = b'{"lm loss": {"values": {"1": 2.0}}}'
    (world.objects / f"{sha256_hex(stray)}.json").write_bytes(stray)
    world.ledger.write_bytes(world.ledger.read_bytes().replace(b'"approver":"bob"', b'"approver":bob', 1))
    objects = tree_state(world.objects)
    code, _ = fsck_json(world)
    assert code == 1 and tree_state(world.objects) == objects


# ---------------------------------------------------------------- 3. symlinks and wrong file types

def _candidate(world: World) -> bytes:
    run = world.run("staged")
    return json.dumps({"schema": "golden.pending/1", "case": CASE, "env": "dev", "platform": "cpu",
                       "run_id": "staged", "artifact": str(run), "base_version": 3, "verdict": "fail",
                       "metrics": []}).encode()


def _link(path: Path, target: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        import shutil

        shutil.copytree(path, target, symlinks=True, dirs_exist_ok=True)
        shutil.rmtree(path)
    elif path.exists():
        target.write_bytes(path.read_bytes())
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)


def _pending_dir(w):
    (w.outside / "pending" / CASE / "lts_cpu.json").write_bytes(_candidate(w))
    os.symlink(w.outside / "pending", w.root / ".pending")


def _pending_case(w):
    (w.root / ".pending").mkdir()
    (w.outside / "pending" / CASE / "lts_cpu.json").write_bytes(_candidate(w))
    os.symlink(w.outside / "pending" / CASE, w.root / ".pending" / CASE)


def _pending_file(w):
    (w.root / ".pending" / CASE).mkdir(parents=True)
    (w.outside / "candidate.json").write_bytes(_candidate(w))
    os.symlink(w.outside / "candidate.json", w.root / ".pending" / CASE / "dev_cpu.json")


def _ledger(w):
    _link(w.ledger, w.outside / "ledger.jsonl")
    with open(w.outside / "ledger.jsonl", "ab") as fh:
        fh.write(b'{"version": 4, "ti')  # a "torn tail" fsck would cut


def _objects(w):
    _link(w.objects, w.outside / "objects")
    (w.outside / "objects" / ".deadbeef.json.abcdefgh.tmp").write_text("not the store's")
    stray = b'{"stray": 1}'
    (w.outside / "objects" / f"{sha256_hex(stray)}.json").write_bytes(stray)


def _history(w):
    _link(w.case_dir / ".golden", w.outside / "golden")


def _lock(w):
    (w.case_dir / ".golden" / "lock").unlink(missing_ok=True)
    os.symlink(w.outside / "victim.json", w.case_dir / ".golden" / "lock")


def _plain(w):
    _link(w.case_dir / KEY.filename(), w.outside / "plain.json")


def _blob(w):
    first = w.entries()[0]["files"][KEY.filename()]["hash"]
    _link(w.objects / f"{first}.json", w.outside / "blob.json")


STORE_WRITES = ("approve", "adopt", "rollback")
PENDING_WRITES = ("approve", "approve --pending", "reject --pending", "prune", "pending")
LINKS = {  # name: (make the link, the commands that must refuse: exit 2, one line)
    ".pending": (_pending_dir, PENDING_WRITES),
    ".pending/CASE": (_pending_case, PENDING_WRITES),
    ".pending/CASE/FILE": (_pending_file, PENDING_WRITES),
    "ledger.jsonl": (_ledger, STORE_WRITES),
    ".golden/objects": (_objects, (*STORE_WRITES, "show v1")),
    ".golden": (_history, (*STORE_WRITES, "history", "show", "show v1")),
    ".golden/lock": (_lock, STORE_WRITES),
    "plain golden file": (_plain, STORE_WRITES),
    "a blob": (_blob, STORE_WRITES),
}


def _commands(world: World) -> dict[str, list[str]]:
    s = ["--store", world.s]
    return {
        "approve": ["approve", str(world.run()), *s, "--reason", "r"],
        "approve --pending": ["approve", "--pending", *s, "--reason", "r"],
        "reject --pending": ["reject", "--pending", *s],
        "adopt": ["adopt", CASE, *s],
        "rollback": ["rollback", CASE, "--to", "v1", *s, "--reason", "r"],
        "prune": ["prune", *s],
        "pending": ["pending", *s],
        "history": ["history", CASE, *s],
        "show": ["show", CASE, *s],
        "show v1": ["show", f"{CASE}@v1", *s],
        "validate": ["validate", *s],
        "diff": ["diff", str(world.run("d1")), *s],
        "fsck --no-repair": ["fsck", "--no-repair", *s],
        "fsck": ["fsck", *s],
    }


def _differ_for_adopt(world: World) -> None:
    """Give adopt something to record (a plain file changed outside the store), if it can."""
    plain = world.case_dir / KEY.filename()
    if plain.is_file() and not plain.is_symlink():
        plain.write_text(dumps_golden(golden_set({"lm loss": shifted(LOSS, 2.0)})))


@pytest.mark.parametrize("where", sorted(LINKS))
def test_a_symlink_at_a_store_path_is_never_followed(world, where):
    make, refusing = LINKS[where]
    make(world)
    outside = tree_state(world.outside)
    commands = _commands(world)
    for name, args in commands.items():
        if name == "adopt":
            _differ_for_adopt(world)
        result = invoke(*args)
        assert tree_state(world.outside) == outside, f"golden {name} changed something outside the store"
        if name in refusing:
            one_line_refusal(result, "symlink")
        elif name.startswith("fsck") or name == "validate":
            assert result.exit_code == 1 and "symlink" in result.stdout, (name, result.output)


def _history_file(w):
    import shutil

    shutil.rmtree(w.case_dir / ".golden")
    (w.case_dir / ".golden").write_text("not a folder")


def _pending_is_file(w):
    (w.root / ".pending").write_text("not a folder")


def _candidate_dir(w):
    """Found by the fuzzer: a folder where a candidate file belongs (prune then tried to unlink it)."""
    (w.root / ".pending" / CASE / "dev_cpu.json").mkdir(parents=True)


def _objects_file(w):
    import shutil

    shutil.rmtree(w.objects)
    w.objects.write_text("not a folder")


def _ledger_dir(w):
    w.ledger.unlink()
    w.ledger.mkdir()


def _plain_dir(w):
    (w.case_dir / KEY.filename()).unlink()
    (w.case_dir / KEY.filename()).mkdir()


WRONG_TYPES = {
    ".golden is a file": (_history_file, (*STORE_WRITES, "history", "show v1")),
    ".pending is a file": (_pending_is_file, PENDING_WRITES),
    "a candidate file is a folder": (_candidate_dir, PENDING_WRITES),
    "objects is a file": (_objects_file, (*STORE_WRITES, "show v1")),
    "ledger is a folder": (_ledger_dir, (*STORE_WRITES, "history")),
    "plain golden file is a folder": (_plain_dir, STORE_WRITES),
}


@pytest.mark.parametrize("what", sorted(WRONG_TYPES))
def test_a_wrong_file_type_at_a_store_path_is_one_line_and_leaves_no_orphan(world, what):
    make, refusing = WRONG_TYPES[what]
    make(world)
    for name, args in _commands(world).items():
        before = tree_state(world.root)
        if name == "adopt":
            _differ_for_adopt(world)
            before = tree_state(world.root)
        result = invoke(*args)
        if name in refusing:
            one_line_refusal(result)
            assert tree_state(world.root) == before, f"refused golden {name} still wrote into the store"
        elif name.startswith("fsck") or name == "validate":
            assert result.exit_code == 1 and "expected a" in result.stdout, (name, result.output)
            assert tree_state(world.root) == before, f"golden {name} changed the damaged store"


def test_a_fifo_where_the_ledger_or_a_golden_should_be_never_hangs_a_command(world):
    world.ledger.unlink()
    os.mkfifo(world.ledger)
    os.mkfifo(world.case_dir / "golden_values_lts_cpu.json")
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "GOLDEN_STORE")}
    for args in (["history", CASE], ["fsck"], ["fsck", "--no-repair"], ["validate"],
                 ["approve", str(world.run()), "--reason", "r"]):
        out = subprocess.run([sys.executable, "-m", "goldens", *args, "--store", world.s], capture_output=True,
                             text=True, cwd=REPO, env=env, timeout=60)
        assert "Traceback" not in out.stderr, out.stderr
        assert out.returncode in (1, 2), (args, out.returncode, out.stderr)


# ---------------------------------------------------------------- 4. names too long for a file name

def test_a_target_too_long_for_a_file_name_is_refused_before_anything_is_written(world):
    run = world.run("long", env="d" * 120, platform="p" * 120)
    before = tree_state(world.root)
    one_line_refusal(invoke("approve", str(run), "--store", world.s, "--reason", "r"), "too long")
    assert tree_state(world.root) == before
    diffed = invoke("diff", str(run), "--store", world.s)
    assert diffed.exit_code in (0, 1) and tree_state(world.root) == before
    assert fsck_json(world) == (0, [])


def test_the_longest_file_name_the_store_accepts_is_one_it_can_write(world):
    def key(platform_length: int, phase: int = 1) -> GoldenKey:
        return GoldenKey(CASE, "e" * 100, "p" * platform_length, phase)

    assert len(key(121).filename()) == 241  # + ".", ".XXXXXXXX.tmp": 255 bytes for its temp file
    metrics = golden_set({"lm loss": [1.0, 2.0]})
    entry = world.store.write(CASE, {key(121): metrics, key(117, 2): metrics}, approver="a", reason="r")
    assert entry.number == 4 and world.store.read(key(121)) == metrics
    before = tree_state(world.root)
    with pytest.raises(Exception, match="too long"):
        world.store.write(CASE, {key(122): metrics}, approver="a", reason="r")
    with pytest.raises(Exception, match="too long"):
        world.store.write(CASE, {key(118, 2): metrics}, approver="a", reason="r")
    assert tree_state(world.root) == before


# ---------------------------------------------------------------- 5. writes check the chain they append to

def _swap(lines):
    lines[0], lines[1] = lines[1], lines[0]


CHAIN_DAMAGE = {
    "reordered": _swap,
    "duplicated": lambda lines: lines.insert(2, lines[1]),
    "dropped": lambda lines: lines.pop(1),
    "edited": lambda lines: lines.__setitem__(0, lines[0].replace(b'"reason":"first golden"', b'"reason":"rewritten"')),
    "renumbered": lambda lines: lines.__setitem__(2, lines[2].replace(b'"version":3', b'"version":7')),
}


@pytest.mark.parametrize("damage", sorted(CHAIN_DAMAGE))
def test_writes_refuse_a_broken_chain_and_name_fsck(world, damage):
    lines = world.ledger.read_bytes().splitlines(keepends=True)
    CHAIN_DAMAGE[damage](lines)
    world.ledger.write_bytes(b"".join(lines))
    before = tree_state(world.root)
    one_line_refusal(invoke("approve", str(world.run()), "--store", world.s, "--reason", "r"), "golden fsck")
    one_line_refusal(invoke("rollback", CASE, "--to", "1", "--store", world.s, "--reason", "r"), "golden fsck")
    _differ_for_adopt(world)
    before = tree_state(world.root)
    one_line_refusal(invoke("adopt", CASE, "--store", world.s), "golden fsck")
    assert tree_state(world.root) == before
    code, problems = fsck_json(world, "--no-repair")
    assert code == 1 and "ledger-chain" in [p["kind"] for p in problems]


# ---------------------------------------------------------------- 6. CI never writes

@pytest.fixture
def needs_repair(world) -> World:
    """A store an interrupted write left behind: the head's file still holds v2, a blob and a temp
    file of a write that never committed, a torn ledger line."""
    v2 = world.entries()[1]["files"][KEY.filename()]["hash"]
    (world.case_dir / KEY.filename()).write_bytes((world.objects / f"{v2}.json").read_bytes())
    (world.case_dir / ".golden_values_dev_cpu.json.abcdefgh.tmp").write_text("half")
    with open(world.ledger, "ab") as fh:
        fh.write(b'{"version": 4, "ti')
    return world


def test_in_ci_fsck_reports_what_it_would_repair_and_writes_nothing(needs_repair):
    world = needs_repair
    before = tree_state(world.root)
    result = invoke("fsck", "--store", world.s, env={"CI": "true"})
    assert tree_state(world.root) == before
    assert "interrupted" in result.stdout and "torn" in result.stdout and "CI" in result.output
    assert invoke("fsck", "--store", world.s).exit_code == 0  # outside CI it repairs
    assert tree_state(world.root) != before


def test_in_ci_adopt_reject_and_prune_write_nothing(world):
    _differ_for_adopt(world)
    (world.root / ".pending" / CASE).mkdir(parents=True)
    (world.root / ".pending" / CASE / "dev_cpu.json").write_bytes(_candidate(world))
    (world.runs / "staged" / "artifact.json").unlink()  # the candidate's run is gone: prune would discard it
    before = tree_state(world.root)
    one_line_refusal(invoke("adopt", CASE, "--store", world.s, env={"CI": "true"}), "CI")
    one_line_refusal(invoke("reject", "--pending", "--store", world.s, env={"CI": "true"}), "CI")
    pruned = invoke("prune", "--store", world.s, env={"CI": "true"})
    assert "stale" in pruned.stdout and tree_state(world.root) == before


# ---------------------------------------------------------------- 7. a read-only check during a write

def test_a_read_only_check_waits_for_a_write_in_progress_instead_of_reporting_it(world, monkeypatch):
    committed, release = threading.Event(), threading.Event()
    real = ledger_module.append_line

    def pause_after_the_commit(path, line):
        real(path, line)
        committed.set()
        release.wait(20)

    monkeypatch.setattr(ledger_module, "append_line", pause_after_the_commit)
    writer = threading.Thread(target=world.store.write, args=(CASE, {KEY: golden_set({"lm loss": [5.0]})}),
                              kwargs={"approver": "w", "reason": "concurrent"})
    writer.start()
    assert committed.wait(20)
    found: list = []
    reader = threading.Thread(target=lambda: found.append(GoldenStore(world.root).fsck(repair=False)))
    reader.start()
    reader.join(0.5)
    still_waiting = reader.is_alive()
    release.set()
    writer.join(20)
    reader.join(20)
    assert still_waiting, f"the check did not wait for the writer and reported {found}"
    assert found == [[]]


# ---------------------------------------------------------------- 8. one line and exit 2, never a traceback

@pytest.mark.parametrize("to", ["²", "١", "v" + "9" * 5000])
def test_rollback_takes_only_ascii_digits(world, to):
    before = tree_state(world.root)
    one_line_refusal(invoke("rollback", CASE, "--to", to, "--store", world.s, "--reason", "r"))
    assert tree_state(world.root) == before


def _plain_json(world: World, doc: str) -> None:
    (world.case_dir / KEY.filename()).write_text(doc)


def shown_unreadable(result, why: str) -> None:
    """``show`` lists every golden of the case, an unreadable one as one line saying why (one bad
    file never hides the others, as in a Megatron tree with ``{}`` files)."""
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if "unreadable" in line]
    assert len(lines) == 1 and KEY.filename() in lines[0] and why in lines[0], result.stdout


def test_a_list_grid_overflowing_int64_is_a_finding_not_a_traceback(world):
    big = 2**53
    _plain_json(world, json.dumps({"lm loss": {"start_step": big, "step_interval": big, "values": [1.0] * 2048}}))
    checked = invoke("validate", str(world.case_dir / KEY.filename()))
    assert checked.exit_code == 1 and "lm loss" in checked.stdout
    shown_unreadable(invoke("show", CASE, "--store", world.s), "2**53")


def test_a_lone_surrogate_metric_name_is_one_line(world):
    doc = '{"\\ud800x": {"start_step": 1, "end_step": 1, "step_interval": 1, "values": {"1": 1.0}}}'
    _plain_json(world, doc)
    shown_unreadable(invoke("show", CASE, "--store", world.s), "lone surrogate")
    adopted = invoke("adopt", CASE, "--store", world.s)
    assert adopted.exit_code in (0, 2)
    megatron_file = world.runs / "m" / KEY.filename()
    megatron_file.parent.mkdir(parents=True)
    megatron_file.write_text(doc)
    before = tree_state(world.root)
    one_line_refusal(invoke("approve", str(megatron_file), "--store", world.s, "--reason", "r"))
    assert tree_state(world.root) == before  # no orphan blob


def test_a_grid_end_of_2_to_the_53_is_judged_without_allocating_it(world):
    big = 2**53
    _plain_json(world, json.dumps({"lm loss": {"start_step": 1, "end_step": big, "step_interval": 1,
                                               "values": {"1": 1.0, "2": 2.0}}}))
    checked = invoke("validate", str(world.case_dir / KEY.filename()))
    assert checked.exit_code == 0 and f"{big - 2} in all" in checked.stdout, checked.output


def test_an_artifact_ending_at_step_2_to_the_53_is_refused_before_anything_is_written(world):
    run = world.run("huge", phase2={"lm loss": {11: 1.0}}, resumed_from=10)
    doc = json.loads(run.read_text())
    doc["phases"]["2"]["steps"] = [11, 2**53]
    run.write_text(json.dumps(doc))
    before = tree_state(world.root)
    one_line_refusal(invoke("approve", str(run), "--store", world.s, "--reason", "r"))
    assert tree_state(world.root) == before


def test_grid_checks_count_absent_steps_arithmetically():
    from goldens.files.validate import check_grid

    series = MetricSeries("lm loss", np.array([1, 5, 10]), np.array([1.0, 2.0, 3.0]), 1, 2**53, 5)
    (absent,) = check_grid(series)
    assert absent.severity == "warning" and absent.step == 15
    assert f"{2**53 // 5 + 1 - 3} in all" in absent.message  # 1, then every multiple of 5 up to 2**53


def test_an_interrupted_write_blob_is_deleted_only_with_the_proof_the_write_left(world, monkeypatch):
    with monkeypatch.context() as patched:
        patched.setattr(ledger_module, "append_line", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            world.store.write(CASE, {KEY: golden_set({"lm loss": [9.0]})}, approver="a", reason="r")
    intent = world.case_dir / ".golden" / "intent.json"
    assert intent.is_file()
    code, problems = fsck_json(world)
    assert code == 0 and [p["kind"] for p in problems] == ["orphan-blob"]
    assert not intent.exists() and fsck_json(world) == (0, [])


def test_a_golden_set_with_a_huge_grid_is_refused_not_padded():
    from goldens.core.errors import FormatError
    from goldens.files.formats.numeric import megatron_grid

    with pytest.raises(FormatError, match="steps"):
        megatron_grid(1, 2**53, 1)
    assert megatron_grid(1, 20, 5).tolist() == [1, 5, 10, 15, 20]
