"""golden validate · show · history · fsck · adopt through the real typer app (and a subprocess)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from goldens.cli import app
from goldens.core.model import GoldenKey, GoldenSet
from goldens.files.formats.golden import dumps_golden, read_golden
from goldens.store import GoldenStore
from tests.builders import golden_set, make_store

VARIANTS = Path(__file__).parent / "fixtures" / "megatron_variants"
CASE = "tiny"
REPO = Path(__file__).resolve().parents[1]


def run(*args: str, env: dict | None = None):
    result = CliRunner().invoke(app, list(args), env=env)
    assert "Traceback" not in result.output
    return result


@pytest.fixture
def store_root(tmp_path) -> Path:
    """Case tiny with two versions: v1 by ada (a resume pair), v2 by bob (phase 1 only)."""
    store = make_store(tmp_path / "cases", (CASE,), case_yaml="name: {case}\n")
    key, key2 = GoldenKey(CASE, "dev", "cpu", 1), GoldenKey(CASE, "dev", "cpu", 2)
    store.write(CASE, {key: golden_set({"lm loss": [10.0, 9.5, 9.25]}),
                       key2: golden_set({"lm loss": [float("nan"), 9.5, 9.25]})},
                approver="ada", reason="first", source_run_id="run-1", fingerprint="fp-one")
    store.write(CASE, {key: golden_set({"lm loss": [10.0, 9.5, 0.1 + 0.2]})}, approver="bob", reason="second",
                fingerprint="fp-two")
    return store.root


# ---------------------------------------------------------------- validate

def test_validate_folder_table_and_exit_1_on_errors():
    result = run("validate", str(VARIANTS))
    assert result.exit_code == 1
    assert "WARNING  " + str(VARIANTS / "nan_inside" / "golden_values_dev_cpu.json") in result.output
    assert "'lm loss': \"nan\" at step 3 after values began at step 1" in result.output
    assert result.output.rstrip().endswith("27 files: 9 ok, 5 warning, 13 error")


def test_validate_ok_and_warning_exit_codes_and_strict():
    ok = run("validate", str(VARIANTS / "current_dict"))
    assert ok.exit_code == 0 and "2 files: 2 ok, 0 warning, 0 error" in ok.output
    warning = str(VARIANTS / "unknown_metric" / "golden_values_dev_cpu.json")
    assert run("validate", warning).exit_code == 0
    assert run("validate", "--strict", warning).exit_code == 1


def test_validate_nonexistent_path_is_exit_2_with_one_line(tmp_path):
    result = run("validate", str(VARIANTS), str(tmp_path / "nope"))
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [f"error: {tmp_path / 'nope'}: no such file or directory"]


def test_validate_json():
    result = run("validate", "--json", str(VARIANTS / "inference"), str(VARIANTS / "inf_value"))
    doc = json.loads(result.output)
    assert result.exit_code == 1 and doc["summary"] == {"ok": 0, "warning": 1, "error": 1}
    assert [f["status"] for f in doc["files"]] == ["warning", "error"]


def test_validate_with_store_checks_history_too(store_root):
    assert run("validate", "--store", str(store_root)).exit_code == 0
    ledger = store_root / CASE / ".golden" / "ledger.jsonl"
    ledger.write_bytes(ledger.read_bytes().replace(b'"reason":"first"', b'"reason":"forged"'))
    result = run("validate", "--store", str(store_root))
    assert result.exit_code == 1 and "entry_hash does not match its content" in result.output


def test_validate_defaults_to_the_store(store_root):
    result = run("validate", env={"GOLDEN_STORE": str(store_root)})
    assert result.exit_code == 0 and "3 files: 3 ok" in result.output


def test_validate_as_a_pre_commit_hook_entry_exists():
    hooks = (REPO / ".pre-commit-hooks.yaml").read_text()
    assert "entry: golden validate" in hooks and "id: golden-validate" in hooks


# ---------------------------------------------------------------- show

def test_show_current_prints_full_precision(store_root):
    result = run("show", CASE, "--store", str(store_root), "--phase", "1")
    assert result.exit_code == 0, result.output
    assert "tiny — current files (latest version v2)" in result.output
    assert "fingerprint fp-two" in result.output
    assert "0.30000000000000004" in result.output  # 0.1 + 0.2, not rounded
    assert "golden_values_dev_cpu_2nd.json" not in result.output


def test_show_a_version_from_history(store_root):
    result = run("show", f"{CASE}@v1", "--store", str(store_root), "--metric", "lm loss")
    assert result.exit_code == 0
    assert "v1: approve by ada" in result.output and "9.25" in result.output
    assert "0.30000000000000004" not in result.output
    assert "golden_values_dev_cpu_2nd.json" in result.output and "nan" in result.output


def test_show_json_round_trips_the_values(store_root):
    doc = json.loads(run("show", CASE, "--store", str(store_root), "--json", "--phase", "2").output)
    (entry,) = doc["goldens"]
    assert entry["file"] == "golden_values_dev_cpu_2nd.json" and entry["fingerprint"] == "fp-one"
    assert entry["metrics"]["lm loss"]["values"] == {"1": "nan", "2": 9.5, "3": 9.25}


@pytest.mark.parametrize("args, message", [
    (["nope"], "unknown case 'nope'"),
    ([f"{CASE}@v9"], "no version v9"),
    ([f"{CASE}@vx"], "invalid version"),
    (["../etc"], "invalid case name"),
    ([CASE, "--env", "lts"], "no golden matches the filters"),
    ([CASE, "--metric", "speed"], "no metric 'speed'"),
])
def test_show_input_errors_are_exit_2_one_line(store_root, args, message):
    result = run("show", *args, "--store", str(store_root))
    assert result.exit_code == 2 and message in result.output and len(result.output.strip().splitlines()) == 1


# ---------------------------------------------------------------- history / fsck / adopt

def test_history_table_and_json(store_root):
    result = run("history", CASE, "--store", str(store_root))
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].startswith("v1  ") and "approve  by ada  run run-1  fingerprint fp-one" in lines[0]
    assert "    reason: second" in result.output
    assert "lm loss: 1 changed, max |rel| 0.968, mean rel -0.323" in result.output  # 8.95/9.25, then /3 steps
    doc = json.loads(run("history", CASE, "--store", str(store_root), "--json").output)
    assert [v["ref"] for v in doc["versions"]] == ["v1", "v2"] and doc["backend"] == "ledger"


def test_history_of_a_case_without_history(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "golden_values_dev_cpu.json").write_text(dumps_golden(golden_set({"lm loss": [1.0]})))
    result = run("history", "c", "--store", str(tmp_path))
    assert result.exit_code == 0 and "no history yet" in result.output


def test_fsck_clean_then_damaged(store_root):
    assert run("fsck", "--store", str(store_root)).exit_code == 0
    plain = store_root / CASE / "golden_values_dev_cpu.json"
    plain.write_text(dumps_golden(golden_set({"lm loss": [1.0, 2.0, 3.0]})))
    result = run("fsck", "--store", str(store_root))
    assert result.exit_code == 1 and "golden_values_dev_cpu.json differs from v2" in result.output
    doc = json.loads(run("fsck", "--store", str(store_root), "--json", "--no-repair").output)
    assert doc["errors"] == 1 and doc["problems"][0]["kind"] == "plain-file-differs"


@pytest.mark.parametrize("where", [".golden/ledger.jsonl", "golden_values_dev_cpu.json", ".golden/objects"])
def test_a_folder_where_the_store_expects_a_file_is_reported_and_refused_in_one_line(store_root, where):
    target = store_root / CASE / where
    if where == ".golden/objects":
        target = next(target.glob("*.json"))  # one blob
    target.unlink()
    target.mkdir()
    relative = target.relative_to(store_root / CASE).as_posix()
    for args in (["fsck", "--no-repair"], ["fsck"], ["validate"]):
        result = run(*args, "--store", str(store_root))
        assert result.exit_code == 1, (args, result.output)
        assert f"{relative} is a folder, expected a regular file" in result.output
    if where.endswith(".jsonl"):
        result = run("history", CASE, "--store", str(store_root))
        assert result.exit_code == 2
        assert result.output == (f"error: cannot read {target}: it is a folder, expected a regular file; "
                                 "run golden fsck\n")
    assert target.is_dir()  # reported, never repaired away


def test_adopt_then_history(tmp_path):
    case = tmp_path / "bert" / "c"
    case.mkdir(parents=True)
    shutil.copy(VARIANTS / "list_values" / "golden_values_dev_cpu.json", case)
    result = run("adopt", "c", "--store", str(tmp_path), "--approver", "importer")
    assert result.exit_code == 0 and "c: recorded v1 (1 files)" in result.output
    assert run("adopt", "c", "--store", str(tmp_path)).exit_code == 2
    assert "imported  by importer" in run("history", "c", "--store", str(tmp_path)).output


def test_help_does_not_import_torch_or_pandas():
    code = ("import sys; sys.argv = ['golden', '--help']\n"
            "from goldens.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "heavy = sorted(m for m in ('torch', 'pandas', 'numpy', 'yaml') if m in sys.modules)\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "validate" in out.stdout and "fsck" in out.stdout
    heavy = out.stdout.strip().splitlines()[-1]
    assert "torch" not in heavy and "pandas" not in heavy


# ---------------------------------------------------------------- the real Megatron files (../shared)

def test_validate_shared_megatron_test_cases(megatron_fixtures):
    result = run("validate", str(megatron_fixtures / "test_cases" / "bert"))
    assert result.exit_code == 0  # bert_release* hold "nan" inside their series: warnings (Megatron reads them)
    assert "41 files: 36 ok, 5 warning, 0 error" in result.output
    doc = json.loads(run("validate", "--json", str(megatron_fixtures / "test_cases")).output)
    assert all(f["status"] in ("ok", "warning", "error") for f in doc["files"])
    assert all(f["findings"] for f in doc["files"] if f["status"] != "ok")


def test_every_megatron_history_revision_loads_and_shows(megatron_fixtures, tmp_path):
    history = megatron_fixtures / "history" / "bert_mcore_tp2_pp2_resume_torch_dist_local_spec"
    revisions = json.loads((history / "index.json").read_text())
    case_dir = tmp_path / "bert" / "resume"
    case_dir.mkdir(parents=True)
    store = GoldenStore(tmp_path)
    versions = {}  # version → the files as that revision left them
    for revision in revisions:
        for name in revision["files"]:
            source = history / name
            read_golden(source)  # every revision file loads on its own
            shutil.copy(source, case_dir / name.split("_", 1)[1])  # drop the commit prefix
        files = {p.name: p.read_bytes() for p in case_dir.glob("golden_values_*.json")}
        if versions and files == versions[max(versions)]:
            continue  # a commit that rewrote the files with the same bytes: nothing new to record
        versions[store.adopt("resume", reason=f"megatron {revision['commit'][:10]}").number] = files
    assert sorted(versions) == list(range(1, len(versions) + 1)) and len(versions) >= 8
    assert store.fsck(repair=False) == []
    for number, files in versions.items():
        at = store.read_version("resume", number)
        assert sorted(k.filename() for k in at) == sorted(files)
        for key, golden in at.items():
            assert golden == read_golden_bytes(files[key.filename()])
        result = run("show", f"resume@v{number}", "--store", str(tmp_path))
        assert result.exit_code == 0 and f"v{number}: imported" in result.output
        for data in files.values():
            assert repr(float(read_golden_bytes(data).metrics["lm loss"].values[-1])) in result.output


def read_golden_bytes(data: bytes) -> GoldenSet:
    from goldens.files.formats.golden import parse_golden
    from goldens.files.formats.jsontext import load_json_text

    return parse_golden(load_json_text(data.decode()))


def test_show_a_scalar_entry_only(tmp_path):
    shutil.copytree(VARIANTS / "list_values", tmp_path / "old")
    result = run("show", "old", "--store", str(tmp_path), "--metric", "iteration_timing_avg")
    assert result.exit_code == 0 and "  iteration_timing_avg = 0.61" in result.output
    assert "step" not in result.output.split("\n", 2)[2]  # no empty step table
