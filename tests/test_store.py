"""The golden store: discovery, reads, versions, the ledger, recovery and the integrity check."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from goldens.core.errors import StoreError
from goldens.core.model import GoldenKey, GoldenSet, MetricSeries
from goldens.files.formats.golden import dumps_golden, read_golden
from goldens.store import (
    IMPORTED,
    GoldenStore,
    VersionConflict,
    entry_hash_of,
    ledger_number,
    metric_change,
    parse_case_ref,
    sha256_hex,
)
from goldens.store import ledger as store_module
from tests.builders import golden_set, make_store, tree_bytes

CASE = "bert_tiny"
KEY = GoldenKey(CASE, "dev", "cpu", 1)
KEY2 = GoldenKey(CASE, "dev", "cpu", 2)
nan = float("nan")


@pytest.fixture
def root(tmp_path) -> Path:
    """The store's folder: case bert_tiny (a case.yaml), no golden yet."""
    return make_store(tmp_path / "cases", (CASE,), case_yaml="name: {case}\n").root


@pytest.fixture
def empty_store(root) -> GoldenStore:
    """The store at ``root`` (unlike conftest's ``store``, nothing written yet)."""
    return GoldenStore(root)


def write(store: GoldenStore, goldens: dict, **kw):
    kw.setdefault("approver", "ada")
    kw.setdefault("reason", "because")
    return store.write(CASE, goldens, **kw)


# ---------------------------------------------------------------- discovery

def test_cases_found_flat_and_nested_megatron_style(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "case.yaml").write_text("{}")
    (tmp_path / "bert" / "b").mkdir(parents=True)
    (tmp_path / "bert" / "b" / "model_config.yaml").write_text("{}")
    (tmp_path / "gpt" / "c").mkdir(parents=True)
    (tmp_path / "gpt" / "c" / "golden_values_dev_cpu.json").write_text("{}")
    (tmp_path / "gpt" / "notes").mkdir()
    (tmp_path / ".pending" / "x").mkdir(parents=True)
    (tmp_path / ".pending" / "x" / "case.yaml").write_text("{}")
    store = GoldenStore(tmp_path)
    assert store.cases() == ["a", "bert/b", "gpt/c"]  # a case is its path under the store
    assert store.case_dir("b") == store.case_dir("bert/b") == tmp_path / "bert" / "b"  # a unique bare name works
    assert store.keys("c")[0].case == "gpt/c"


def test_folder_with_an_unusable_name_is_skipped_and_reported(tmp_path):
    for name in ("good", "my case"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "case.yaml").write_text("{}")
    store = GoldenStore(tmp_path)
    assert store.cases() == ["good"]
    (problem,) = store.fsck()
    assert (problem.kind, problem.severity, problem.case) == ("bad-case-name", "warning", "my case")


def test_a_name_two_folders_share_is_two_cases_by_path_and_ambiguous_bare(tmp_path):
    for model in ("bert", "gpt"):
        (tmp_path / model / "same").mkdir(parents=True)
        (tmp_path / model / "same" / "case.yaml").write_text("{}")
    store = GoldenStore(tmp_path)
    assert store.cases() == ["bert/same", "gpt/same"]
    assert store.case_dir("gpt/same") == tmp_path / "gpt" / "same"
    with pytest.raises(StoreError, match=r"'same' is ambiguous.*bert/same, gpt/same"):
        store.case_dir("same")
    duplicates = [(p.kind, p.case) for p in store.findings() if p.kind == "duplicate-name"]
    assert duplicates == [("duplicate-name", "bert/same"), ("duplicate-name", "gpt/same")]


def test_unknown_and_hostile_case_names(empty_store):
    with pytest.raises(StoreError, match=r"unknown case 'bert_tiy'.*did you mean 'bert_tiny'"):
        empty_store.case_dir("bert_tiy")
    for hostile in ("../etc", "a/../b", "/abs", "a//b", "a/", "", ".hidden", "x\n", "a/" * 9 + "b", "a" * 401):
        with pytest.raises(StoreError, match="invalid case name"):
            empty_store.case_dir(hostile)
    with pytest.raises(StoreError, match="unknown case 'bert/bert_tiny'"):
        empty_store.case_dir("bert/bert_tiny")  # a path is the folder's path, not a guess


def test_missing_store_root(tmp_path):
    with pytest.raises(StoreError, match="no golden store at"):
        GoldenStore(tmp_path / "nope").cases()


def test_default_root_prefers_env_then_cwd(tmp_path, monkeypatch):
    monkeypatch.setenv("GOLDEN_STORE", str(tmp_path / "elsewhere"))
    assert GoldenStore().root == tmp_path / "elsewhere"
    monkeypatch.delenv("GOLDEN_STORE")
    (tmp_path / "cases").mkdir()
    monkeypatch.chdir(tmp_path)
    assert GoldenStore().root == tmp_path / "cases"


@pytest.mark.parametrize("ref, expected", [("c", ("c", None)), ("c@v3", ("c", "v3")), ("c@12", ("c", "12")),
                                          ("gpt/c@HEAD~1", ("gpt/c", "HEAD~1"))])
def test_case_refs(ref, expected):
    assert parse_case_ref(ref) == expected


@pytest.mark.parametrize("ref", ["c@", "../c@v1", "c@-x", "c@a\nb"])
def test_bad_case_refs(ref):
    with pytest.raises(StoreError):
        parse_case_ref(ref)


@pytest.mark.parametrize("ref, number", [("v3", 3), ("V3", 3), ("12", 12)])
def test_ledger_versions(ref, number):
    assert ledger_number(ref) == number


@pytest.mark.parametrize("ref", ["v0", "vx", "HEAD", "v-1"])
def test_bad_ledger_versions(ref):
    with pytest.raises(StoreError, match="use CASE@vN"):
        ledger_number(ref)


# ---------------------------------------------------------------- reading

def test_keys_and_read_the_plain_files(empty_store, root):
    (root / CASE / KEY2.filename()).write_text(dumps_golden(golden_set({"lm loss": [nan, 2.0]})))
    (root / CASE / KEY.filename()).write_text(dumps_golden(golden_set({"lm loss": [1.0, 2.0]})))
    (root / CASE / "golden_values_dev.json").write_text("{}")  # not addressable: no platform
    assert empty_store.keys(CASE) == [KEY, KEY2]
    got = empty_store.read(KEY)
    assert got == golden_set({"lm loss": [1.0, 2.0]}) and got.key == KEY
    with pytest.raises(StoreError, match=r"has no golden_values_lts_cpu\.json"):
        empty_store.read(GoldenKey(CASE, "lts", "cpu"))
    with pytest.raises(StoreError, match="invalid env name"):
        empty_store.read(GoldenKey(CASE, "../..", "cpu"))


# ---------------------------------------------------------------- writing and versions

def test_first_write_creates_version_1_blob_ledger_and_plain_file(empty_store, root):
    new = golden_set({"lm loss": [10.0, 9.5]})
    entry = write(empty_store, {KEY: new}, source_run_id="run-1", fingerprint="fp-1", provenance={"host": "h"})
    data = dumps_golden(new).encode()
    assert entry.number == 1 and entry.ref == "v1" and entry.action == "approve"
    assert entry.time.endswith("Z") and entry.approver == "ada" and entry.reason == "because"
    record = entry.files[KEY.filename()]
    assert record.hash == sha256_hex(data) and record.previous_hash is None
    assert (root / CASE / KEY.filename()).read_bytes() == data
    assert (root / CASE / ".golden" / "objects" / f"{record.hash}.json").read_bytes() == data
    lines = (root / CASE / ".golden" / "ledger.jsonl").read_bytes().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["prev_entry_hash"] is None
    assert entry_hash_of(json.loads(lines[0])) == json.loads(lines[0])["entry_hash"]
    assert empty_store.history(CASE) == [entry] and empty_store.current_entry(CASE) == entry
    assert empty_store.fingerprint_of(KEY) == "fp-1"


def test_summary_against_the_previous_version_computed_by_hand(empty_store):
    write(empty_store, {KEY: golden_set({"lm loss": [10.0, 20.0, 30.0], "num-zeros": [5.0, 6.0, 7.0]})})
    entry = write(empty_store, {KEY: golden_set({"lm loss": [10.0, 22.0, 33.0, 40.0]})})
    summary = entry.files[KEY.filename()].summary
    loss = summary["lm loss"]
    assert (loss.steps_added, loss.steps_removed, loss.changed_steps) == (1, 0, 2)
    assert loss.max_abs_rel_diff == pytest.approx(0.1, rel=1e-12)  # 3/30 and 2/20
    assert loss.mean_rel_diff == pytest.approx((0 + 0.1 + 0.1) / 3, rel=1e-12)
    zeros = summary["num-zeros"]
    assert (zeros.steps_added, zeros.steps_removed, zeros.changed_steps, zeros.max_abs_rel_diff) == (0, 3, 0, None)


def test_metric_change_counts_nan_transitions_and_skips_zero_denominators():
    old = MetricSeries("m", np.array([1, 2, 3]), np.array([nan, 0.0, 4.0]))
    new = MetricSeries("m", np.array([1, 2, 3]), np.array([1.0, 5.0, 3.0]))
    change = metric_change(old, new)
    assert change.changed_steps == 3 and change.max_abs_rel_diff == 0.25 and change.mean_rel_diff == -0.25
    assert metric_change(old, old).changed_steps == 0


def test_resume_pair_in_one_version_and_versions_are_per_case(empty_store, root):
    v1 = write(empty_store, {KEY: golden_set({"lm loss": [1.0, 2.0]}), KEY2: golden_set({"lm loss": [nan, 2.0]})})
    assert sorted(v1.files) == [KEY.filename(), KEY2.filename()]
    v2 = write(empty_store, {KEY: golden_set({"lm loss": [1.0, 2.5]})}, fingerprint="fp-2")
    assert v2.number == 2 and list(v2.files) == [KEY.filename()]
    first, second = map(json.loads, (root / CASE / ".golden" / "ledger.jsonl").read_bytes().splitlines())
    assert second["prev_entry_hash"] == first["entry_hash"]
    at1, at2 = empty_store.read_version(CASE, 1), empty_store.read_version(CASE, 2)
    assert at1[KEY] == golden_set({"lm loss": [1.0, 2.0]}) and at2[KEY] == golden_set({"lm loss": [1.0, 2.5]})
    assert at1[KEY2] == at2[KEY2] == golden_set({"lm loss": [nan, 2.0]})
    assert empty_store.fingerprint_of(KEY) == "fp-2" and empty_store.fingerprint_of(KEY2) is None
    with pytest.raises(StoreError, match="no version v3"):
        empty_store.read_version(CASE, 3)


def test_none_removes_a_file_and_history_keeps_it(empty_store, root):
    write(empty_store, {KEY: golden_set({"lm loss": [1.0]}), KEY2: golden_set({"lm loss": [nan]})}, fingerprint="fp")
    entry = write(empty_store, {KEY2: None}, action="rollback")
    assert entry.files[KEY2.filename()].hash is None
    assert not (root / CASE / KEY2.filename()).exists()
    assert list(empty_store.read_version(CASE, 2)) == [KEY] and KEY2 in empty_store.read_version(CASE, 1)
    assert empty_store.fingerprint_of(KEY2) is None and empty_store.fingerprint_of(KEY) == "fp"
    assert empty_store.fsck(repair=False) == []


def test_expected_version_is_an_optimistic_check(empty_store, root):
    with pytest.raises(VersionConflict, match="no history yet"):
        write(empty_store, {KEY: golden_set({"lm loss": [1.0]})}, expected_version=1)
    assert not (root / CASE / ".golden").exists()
    write(empty_store, {KEY: golden_set({"lm loss": [1.0]})}, expected_version=0)
    before = tree_bytes(root, folders=True)
    with pytest.raises(VersionConflict, match="expected v0 but the ledger head is v1"):
        write(empty_store, {KEY: golden_set({"lm loss": [2.0]})}, expected_version=0)
    assert tree_bytes(root, folders=True) == before
    assert write(empty_store, {KEY: golden_set({"lm loss": [2.0]})}, expected_version=1).number == 2


def test_write_on_a_megatron_folder_first_records_the_existing_files(empty_store, root):
    original = (root / CASE / KEY.filename())
    original.write_text('{"lm loss": {"start_step": 1, "end_step": 1, "step_interval": 1, "values": {"1": 10.49226}}}')
    shipped = original.read_bytes()
    entry = write(empty_store, {KEY: golden_set({"lm loss": [10.5]})}, expected_version=0)
    imported, approved = empty_store.history(CASE)
    assert imported.action == IMPORTED and imported.files[KEY.filename()].hash == sha256_hex(shipped)
    assert approved == entry and entry.number == 2
    assert entry.files[KEY.filename()].previous_hash == sha256_hex(shipped)
    assert empty_store.read_version(CASE, 1)[KEY].metrics["lm loss"].values.tolist() == [10.49226]


# ---------------------------------------------------------------- adopt

def test_adopt_records_version_1_without_touching_the_files(empty_store, root):
    path = root / CASE / KEY.filename()
    path.write_text('{"lm loss": {"values": {"1": 1.0}}}\n')  # odd but readable: bytes kept exactly
    before = os.stat(path)
    entry = empty_store.adopt(CASE, approver="importer")
    after = os.stat(path)
    assert (after.st_ino, after.st_mtime_ns, after.st_mode) == (before.st_ino, before.st_mtime_ns, before.st_mode)
    assert entry.number == 1 and entry.action == IMPORTED and entry.approver == "importer"
    digest = entry.files[KEY.filename()].hash
    assert (root / CASE / ".golden" / "objects" / f"{digest}.json").read_bytes() == path.read_bytes()
    with pytest.raises(StoreError, match="nothing to adopt"):
        empty_store.adopt(CASE)
    path.write_text('{"lm loss": {"values": {"1": 2.0}}}')
    assert empty_store.adopt(CASE).number == 2
    assert empty_store.fsck(repair=False) == []


def test_adopt_keeps_an_unreadable_file_exactly(empty_store, root):
    (root / CASE / KEY.filename()).write_text('{"lm loss": ')
    entry = empty_store.adopt(CASE)
    assert entry.files[KEY.filename()].summary is None
    with pytest.raises(Exception, match="truncated JSON"):
        empty_store.read_version(CASE, 1)


def test_adopt_without_golden_files_refuses_and_writes_nothing(empty_store, root):
    before = tree_bytes(root, folders=True)
    with pytest.raises(StoreError, match="no golden_values"):
        empty_store.adopt(CASE)
    assert tree_bytes(root, folders=True) == before


# ---------------------------------------------------------------- bad input writes nothing

@pytest.mark.parametrize("goldens, kw, message", [
    ({KEY: golden_set({"lm loss": [1.0, float("inf")]})}, {}, "infinite value at step 2"),
    ({GoldenKey("other", "dev", "cpu"): golden_set({"lm loss": [1.0]})}, {}, "golden of case 'other' into case"),
    ({GoldenKey(CASE, "../x", "cpu"): golden_set({"lm loss": [1.0]})}, {}, "invalid env name"),
    ({GoldenKey(CASE, "dev", "a/b"): golden_set({"lm loss": [1.0]})}, {}, "invalid platform name"),
    ({GoldenKey(CASE, "dev_x", "cpu"): golden_set({"lm loss": [1.0]})}, {}, "do not make a golden file name"),
    ({GoldenKey(CASE, "dev", "cpu_2nd", 1): golden_set({"lm loss": [1.0]})}, {}, "do not make a golden file name"),
    ({GoldenKey(CASE, "dev", "cpu", 3): golden_set({"lm loss": [1.0]})}, {}, "do not make a golden file name"),
    ({KEY: GoldenSet({})}, {}, "no metrics"),
    ({}, {}, "nothing to write"),
    ({KEY: golden_set({"lm loss": [1.0]})}, {"approver": " "}, "non-empty approver"),
    ({KEY: golden_set({"lm loss": [1.0]})}, {"reason": ""}, "non-empty reason"),
    ({KEY: golden_set({"lm loss": [1.0]})}, {"action": "imported"}, "reserved"),
    ({KEY: golden_set({"lm loss": [1.0]})}, {"action": "Drop Table"}, "invalid action"),
    ({KEY: golden_set({"lm loss": [1.0]})}, {"provenance": {"x": nan}}, "provenance is not plain JSON"),
    ({KEY: golden_set({"lm loss": [1.0]})}, {"provenance": {"x": object()}}, "provenance is not plain JSON"),
    ({KEY: golden_set({"lm loss": [1.0]})}, {"expected_version": -1}, "expected_version"),
])
def test_bad_input_is_refused_before_anything_is_written(empty_store, root, goldens, kw, message):
    before = tree_bytes(root, folders=True)
    with pytest.raises(StoreError) as info:
        write(empty_store, goldens, **kw)
    assert message in str(info.value)
    assert tree_bytes(root, folders=True) == before  # no blob, no ledger, no .golden folder, no plain file


def test_bad_input_on_a_case_with_history_changes_nothing(empty_store, root):
    write(empty_store, {KEY: golden_set({"lm loss": [1.0, 2.0]})})
    before = tree_bytes(root, folders=True)
    with pytest.raises(StoreError):
        write(empty_store, {KEY: golden_set({"lm loss": [1.0, float("inf"), 3.0]})})
    assert tree_bytes(root, folders=True) == before


def test_unknown_and_hostile_case_in_write(empty_store, root):
    before = tree_bytes(root, folders=True)
    for case in ("nope", "../cases"):
        with pytest.raises(StoreError):
            empty_store.write(case, {GoldenKey(case, "dev", "cpu"): golden_set({"lm loss": [1.0]})},
                              approver="a", reason="r")
    assert tree_bytes(root, folders=True) == before


# ---------------------------------------------------------------- the lock

def test_a_held_lock_times_out_with_a_store_error(root):
    from filelock import FileLock

    store = GoldenStore(root, lock_timeout=0.2)
    write(store, {KEY: golden_set({"lm loss": [1.0]})})
    holder = FileLock(str(root / CASE / ".golden" / "lock"))
    with holder:
        # another open file description: flock treats it as another writer
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(1) as pool:
            message = pool.apply(_try_write, (str(root),))
    assert "another writer holds the lock" in message
    assert store.current_entry(CASE).number == 1


def _try_write(root: str) -> str:
    try:
        GoldenStore(root, lock_timeout=0.2).write(CASE, {KEY: golden_set({"lm loss": [2.0]})}, approver="b", reason="r")
    except StoreError as exc:
        return str(exc)
    return "written"


# ---------------------------------------------------------------- recovery

def test_crash_after_the_commit_is_rolled_forward(empty_store, root, monkeypatch):
    write(empty_store, {KEY: golden_set({"lm loss": [1.0]}), KEY2: golden_set({"lm loss": [nan]})})
    old = {k: (root / CASE / k.filename()).read_bytes() for k in (KEY, KEY2)}
    real = store_module.install

    def crash_on_second_plain_file(tmp, target):
        if Path(target).name == KEY2.filename():
            raise KeyboardInterrupt("killed")  # the process dies between the two plain files
        real(tmp, target)

    monkeypatch.setattr(store_module, "install", crash_on_second_plain_file)
    new = {KEY: golden_set({"lm loss": [2.0]}), KEY2: golden_set({"lm loss": [3.0]})}
    with pytest.raises(KeyboardInterrupt):
        write(empty_store, new)
    monkeypatch.setattr(store_module, "install", real)
    assert empty_store.current_entry(CASE).number == 2  # committed
    assert (root / CASE / KEY2.filename()).read_bytes() == old[KEY2]  # but not yet in place
    report = empty_store.fsck(repair=False)
    assert [(p.kind, p.repaired) for p in report] == [("interrupted-write", False)]
    assert (root / CASE / KEY2.filename()).read_bytes() == old[KEY2]  # --no-repair changed nothing
    repaired = empty_store.fsck(repair=True)
    assert [(p.kind, p.repaired) for p in repaired] == [("interrupted-write", True)]
    assert empty_store.read(KEY2) == new[KEY2] and empty_store.read(KEY) == new[KEY]
    assert empty_store.fsck(repair=False) == []


def test_the_next_write_recovers_first(empty_store, root, monkeypatch):
    write(empty_store, {KEY: golden_set({"lm loss": [1.0]})})
    with monkeypatch.context() as patched:
        patched.setattr(store_module, "install", lambda tmp, target: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            write(empty_store, {KEY: golden_set({"lm loss": [2.0]})})
    entry = write(empty_store, {GoldenKey(CASE, "lts", "cpu"): golden_set({"lm loss": [5.0]})})
    assert entry.number == 3 and empty_store.read(KEY) == golden_set({"lm loss": [2.0]})
    assert [e.action for e in empty_store.history(CASE)] == ["approve"] * 3  # no spurious import


def test_crash_before_the_commit_leaves_the_old_version(empty_store, root, monkeypatch):
    write(empty_store, {KEY: golden_set({"lm loss": [1.0]})})
    before_plain = (root / CASE / KEY.filename()).read_bytes()
    with monkeypatch.context() as patched:
        patched.setattr(store_module, "append_line", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            write(empty_store, {KEY: golden_set({"lm loss": [2.0]})})
    assert empty_store.current_entry(CASE).number == 1
    assert (root / CASE / KEY.filename()).read_bytes() == before_plain
    problems = empty_store.fsck(repair=True)
    assert [(p.kind, p.repaired) for p in problems] == [("orphan-blob", True)]
    assert empty_store.fsck(repair=False) == []


def test_torn_trailing_ledger_line_was_never_committed(empty_store, root):
    write(empty_store, {KEY: golden_set({"lm loss": [1.0]})})
    ledger = root / CASE / ".golden" / "ledger.jsonl"
    committed = ledger.read_bytes()
    with open(ledger, "ab") as fh:
        fh.write(committed[: len(committed) // 2])  # a write cut short: no newline
    assert len(empty_store.history(CASE)) == 1
    assert [(p.kind, p.repaired) for p in empty_store.fsck(repair=False)] == [("torn-ledger-line", False)]
    assert [(p.kind, p.repaired) for p in empty_store.fsck(repair=True)] == [("torn-ledger-line", True)]
    assert ledger.read_bytes() == committed
    assert write(empty_store, {KEY: golden_set({"lm loss": [2.0]})}).number == 2


def test_stale_temp_files_are_cleaned_under_the_lock_and_look_alikes_are_kept(empty_store, root):
    from goldens.files.atomic import write_temp

    write(empty_store, {KEY: golden_set({"lm loss": [1.0]})})
    objects = root / CASE / ".golden" / "objects"
    ours = [write_temp(root / CASE / KEY.filename(), b"half"), write_temp(objects / f"{'0' * 64}.json", b"half")]
    (root / CASE / ".golden_values_dev_cpu.json.abc123.tmp").write_text("not ours: not our temp name")
    (objects / ".deadbeef.json.x.tmp").write_text("not ours: not our temp name")
    problems = empty_store.fsck(repair=True)
    assert sorted((p.kind, p.repaired) for p in problems) == [("quarantined", False), ("stale-temp-file", True),
                                                               ("stale-temp-file", True)]
    assert not any(p.exists() for p in ours)
    assert (root / CASE / ".golden_values_dev_cpu.json.abc123.tmp").exists()  # the case folder's, not the store's
    kept = [p.name for p in (root / CASE / ".golden" / "quarantine").rglob("*.tmp")]
    assert [name.split("-", 1)[1] for name in kept] == [".deadbeef.json.x.tmp"]


# ---------------------------------------------------------------- integrity check

def _ledger_lines(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / CASE / ".golden" / "ledger.jsonl").read_bytes().splitlines()]


def _rewrite_ledger(root: Path, entries: list[dict]) -> None:
    text = "".join(json.dumps(e, sort_keys=True, separators=(",", ":")) + "\n" for e in entries)
    (root / CASE / ".golden" / "ledger.jsonl").write_text(text)


@pytest.fixture
def two_versions(empty_store, root):
    write(empty_store, {KEY: golden_set({"lm loss": [1.0]})})
    write(empty_store, {KEY: golden_set({"lm loss": [2.0]})})
    return empty_store


def test_clean_store_passes_and_entry_hashes_chain(two_versions, root):
    assert two_versions.fsck() == []
    first, second = _ledger_lines(root)
    assert entry_hash_of(first) == first["entry_hash"] and second["prev_entry_hash"] == first["entry_hash"]


def test_an_entry_hashes_to_itself_whatever_the_spacing_of_its_line(two_versions, root):
    from goldens.store.ledger import hashes_to_itself
    from goldens.store.records import canonical_json

    first, _ = _ledger_lines(root)
    first["provenance"] = {"entry_hash": "0" * 64, "z": [1, {"entry_hash": "1" * 64}]}  # a look-alike inside
    first["entry_hash"] = entry_hash_of(first)
    line = canonical_json(first)
    assert hashes_to_itself(line, json.loads(line))
    spaced = json.dumps(first, indent=1).encode()
    assert hashes_to_itself(spaced, json.loads(spaced))  # not our writer's bytes: re-encoded, same hash
    edited = line.replace(b'"reason":"because"', b'"reason":"becausE"')
    assert not hashes_to_itself(edited, json.loads(edited))


def test_fsck_finds_an_altered_entry(two_versions, root):
    entries = _ledger_lines(root)
    entries[0]["reason"] = "rewritten history"
    _rewrite_ledger(root, entries)
    assert [(p.kind, "entry_hash does not match" in p.message) for p in two_versions.fsck()] == [("ledger-chain", True)]


def test_fsck_finds_a_broken_chain(two_versions, root):
    entries = _ledger_lines(root)
    entries[1]["prev_entry_hash"] = "0" * 64
    entries[1]["entry_hash"] = entry_hash_of(entries[1])
    _rewrite_ledger(root, entries)
    assert ["prev_entry_hash does not match" in p.message for p in two_versions.fsck()] == [True]


def test_fsck_finds_missing_and_corrupt_blobs(two_versions, root):
    first, second = _ledger_lines(root)
    objects = root / CASE / ".golden" / "objects"
    (objects / f"{first['files'][KEY.filename()]['hash']}.json").unlink()
    (objects / f"{second['files'][KEY.filename()]['hash']}.json").write_text("tampered")
    kinds = sorted(p.kind for p in two_versions.fsck())
    assert kinds == ["blob-hash-mismatch", "missing-blob"]
    with pytest.raises(StoreError, match="is missing"):
        two_versions.read_version(CASE, 1)
    with pytest.raises(StoreError, match="is corrupt"):
        two_versions.read_version(CASE, 2)


def test_fsck_finds_a_plain_file_changed_outside_the_store(two_versions, root):
    (root / CASE / KEY.filename()).write_text(dumps_golden(golden_set({"lm loss": [9.0]})))
    (root / CASE / "golden_values_lts_cpu.json").write_text(dumps_golden(golden_set({"lm loss": [9.0]})))
    problems = two_versions.fsck(repair=True)
    assert sorted((p.kind, p.severity, p.repaired) for p in problems) == [
        ("plain-file-differs", "error", False), ("untracked-file", "warning", False)]
    assert read_golden(root / CASE / KEY.filename()) == golden_set({"lm loss": [9.0]})  # never clobbered
    assert two_versions.adopt(CASE).number == 3 and two_versions.fsck() == []


def test_unreadable_ledger_line_is_reported_and_blocks_writes(two_versions, root):
    ledger = root / CASE / ".golden" / "ledger.jsonl"
    lines = ledger.read_bytes().splitlines(keepends=True)
    ledger.write_bytes(lines[0] + b"{not json\n" + lines[1])
    problems = two_versions.fsck()
    assert "unreadable-ledger-line" in [p.kind for p in problems]
    with pytest.raises(StoreError, match="ledger line 2 is unreadable"):
        two_versions.history(CASE)
    before = tree_bytes(root, folders=True)
    with pytest.raises(StoreError, match="ledger line 2 is unreadable"):
        write(two_versions, {KEY: golden_set({"lm loss": [3.0]})})
    assert tree_bytes(root, folders=True) == before


def test_fsck_only_named_cases(two_versions):
    assert two_versions.fsck(cases=[CASE]) == []
    with pytest.raises(StoreError):
        two_versions.fsck(cases=["nope"])


# ---------------------------------------------------------------- a Megatron checkout as a store

def test_megatron_test_cases_work_as_a_store_as_they_are(megatron_fixtures):
    store = GoldenStore(megatron_fixtures / "test_cases" / "bert")
    cases = store.cases()
    assert len(cases) == 10 and "bert_mcore_tp2_pp2_resume_torch_dist_local_spec" in cases
    keys = store.keys("bert_mcore_tp2_pp2_resume_torch_dist_local_spec")
    assert [k.filename() for k in keys] == ["golden_values_dev_dgx_a100.json", "golden_values_dev_dgx_h100.json",
                                            "golden_values_dev_dgx_h100_2nd.json", "golden_values_lts_dgx_a100.json"]
    for case in cases:
        for key in store.keys(case):
            assert store.read(key).metrics["lm loss"].values.size > 0
        assert store.history(case) == [] and store.current_entry(case) is None
    assert store.fsck(repair=False) == []
