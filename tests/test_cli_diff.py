"""``golden diff`` through the CLI: every operand kind, every format, policies, regimes, exit codes."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from goldens.cli import app
from goldens.core.model import GoldenKey
from goldens.core.result import ComparisonResult, Verdict
from goldens.files.formats.golden import dumps_golden
from goldens.store import GoldenStore
from tests.builders import golden_set, make_store, seed, series, write_run

STEPS = np.arange(1, 21)
LOSS = 10.0 - 0.25 * STEPS + 1e-9 * STEPS ** 2  # values with many significant digits
ZEROS = 1000.0 + 3 * STEPS


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv("GOLDEN_STORE", raising=False)
    monkeypatch.setenv("CI", "1")  # diff must not stage candidates in these tests


def golden(*args: str):
    return CliRunner().invoke(app, ["diff", *args])


def write_golden(path: Path, loss=LOSS, zeros=ZEROS) -> Path:
    """A golden file of lm loss and num-zeros over steps 1..20."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps_golden(golden_set({"lm loss": loss, "num-zeros": zeros})))
    return path


def write_loss_run(runs: Path, run_id: str, loss=LOSS, zeros=ZEROS, *, case="tiny", fingerprint="fp-1",
                   phase2=None, args=None) -> Path:
    """A dev/cpu run of lm loss and num-zeros over steps 1..20; ``phase2``: its lm loss resumed after step 10."""
    return write_run(runs, case, run_id, {"lm loss": loss, "num-zeros": zeros}, fingerprint=fingerprint,
                     phase2=None if phase2 is None else {"lm loss": series("lm loss", np.arange(11, 21), phase2,
                                                                           grid=True)},
                     resumed_from=None if phase2 is None else 10,
                     provenance={"created": None, **({} if args is None else {"model_args": args})})


@pytest.fixture
def fp1_store(tmp_path) -> GoldenStore:
    """Unlike conftest's ``store``: case tiny alone, its golden under fingerprint fp-1, the one
    ``write_loss_run`` gives a run by default (so the exact regime), and with model arguments."""
    made = make_store(tmp_path / "cases", ("tiny",), case_yaml="description: {case}\n")
    seed(made, "tiny", {"lm loss": LOSS, "num-zeros": ZEROS}, approver="t", reason="seed", source_run_id=None,
         fingerprint="fp-1", provenance={"fingerprint": "fp-1", "model_args": {"--hidden-size": 64}})
    return made


# ---------------------------------------------------------------- two golden files

def test_two_identical_golden_files_pass(tmp_path):
    a = write_golden(tmp_path / "a" / "golden_values_dev_cpu.json")
    b = write_golden(tmp_path / "b" / "golden_values_dev_cpu.json")
    out = golden(str(a), str(b))
    assert out.exit_code == 0, out.output
    assert "PASS" in out.stdout and "lm loss" in out.stdout


def test_reference_first_and_rtol_relative_to_it(tmp_path):
    # reference 10, candidate 10.52: |0.52| > 0.05*10 fails; reversed: 0.05*10.52 = 0.526 ≥ 0.52 passes.
    ref = write_golden(tmp_path / "r" / "golden_values_dev_cpu.json", loss=np.full(20, 10.0))
    cand = write_golden(tmp_path / "c" / "golden_values_dev_cpu.json", loss=np.full(20, 10.52))
    assert golden(str(ref), str(cand)).exit_code == 1
    assert golden(str(cand), str(ref)).exit_code == 0


def test_json_format_is_the_result_and_round_trips(tmp_path):
    a = write_golden(tmp_path / "a" / "golden_values_dev_cpu.json")
    b = write_golden(tmp_path / "b" / "golden_values_dev_cpu.json", loss=LOSS * 1.1)
    out = golden(str(a), str(b), "--format", "json")
    assert out.exit_code == 1
    result = ComparisonResult.from_json(json.loads(out.stdout))
    loss = next(m for m in result.metric_verdicts() if m.metric == "lm loss")
    assert loss.verdict == Verdict.FAIL and loss.failing_steps == 20
    assert loss.steps.golden.tolist() == LOSS.tolist()  # full precision out


def test_csv_format_has_one_row_per_step_at_full_precision(tmp_path):
    a = write_golden(tmp_path / "a" / "golden_values_dev_cpu.json")
    b = write_golden(tmp_path / "b" / "golden_values_dev_cpu.json")
    out = golden(str(a), str(b), "--format", "csv")
    assert out.exit_code == 0
    frame = pd.read_csv(io.StringIO(out.stdout), engine="python")  # float() per cell: exact
    assert len(frame) == 40 and set(frame.metric) == {"lm loss", "num-zeros"}
    assert frame[frame.metric == "lm loss"].golden.tolist() == LOSS.tolist()


def test_md_format(tmp_path):
    a = write_golden(tmp_path / "a" / "golden_values_dev_cpu.json")
    b = write_golden(tmp_path / "b" / "golden_values_dev_cpu.json", zeros=ZEROS * 2)
    out = golden(str(a), str(b), "--format", "md")
    assert out.exit_code == 1 and "num-zeros" in out.stdout and "|" in out.stdout


# ---------------------------------------------------------------- a run against the store

def test_run_against_its_store_golden(tmp_path, fp1_store):
    run = write_loss_run(tmp_path / "runs", "r1")
    out = golden(str(run), "--store", str(fp1_store.root), "--format", "json")
    assert out.exit_code == 0, out.output
    result = ComparisonResult.from_json(json.loads(out.stdout))
    assert (result.case, result.env, result.platform) == ("tiny", "dev", "cpu")
    assert result.exact_applied and result.fingerprint.reason == "fingerprints equal"


def test_run_folder_and_run_id_and_newest_run(tmp_path, fp1_store, monkeypatch):
    write_loss_run(tmp_path / "runs", "r1")
    run2 = write_loss_run(tmp_path / "runs", "r2", loss=LOSS * 1.2)
    os.utime(run2, (2e9, 2e9))
    monkeypatch.chdir(tmp_path)
    assert golden(str(tmp_path / "runs" / "r1"), "--store", str(fp1_store.root)).exit_code == 0
    assert golden("r1", "--store", str(fp1_store.root)).exit_code == 0
    assert golden("--store", str(fp1_store.root)).exit_code == 1  # newest: r2, 20 % off


def test_exact_regime_by_fingerprint_and_forced(tmp_path, fp1_store):
    ulp = LOSS.copy()
    ulp[3] = np.nextafter(ulp[3], 100.0)
    same = write_loss_run(tmp_path / "runs", "same", loss=ulp, fingerprint="fp-1")
    other = write_loss_run(tmp_path / "runs", "other", loss=ulp, fingerprint="fp-2")
    s = str(fp1_store.root)
    assert golden(str(same), "--store", s).exit_code == 1       # equal fingerprints: bit-exact
    assert golden(str(same), "--store", s, "--approx").exit_code == 0
    assert golden(str(other), "--store", s).exit_code == 0      # different fingerprints: 5 %
    assert golden(str(other), "--store", s, "--exact").exit_code == 1


def test_resume_divergence_fails_with_its_own_verdict(tmp_path, fp1_store):
    bad = LOSS[10:].copy()
    bad[4] += 1e-6
    run = write_loss_run(tmp_path / "runs", "resumed", phase2=bad, fingerprint="fp-2")
    out = golden(str(run), "--store", str(fp1_store.root), "--format", "json")
    assert out.exit_code == 1
    result = ComparisonResult.from_json(json.loads(out.stdout))
    assert all(p.verdict == Verdict.PASS for p in result.phases)
    assert result.resume.verdict == Verdict.FAIL and result.resume.metrics[0].worst_step == 15
    table = golden(str(run), "--store", str(fp1_store.root))
    assert "resume check: fail" in table.stdout


def test_model_argument_drift_is_shown(tmp_path, fp1_store):
    run = write_loss_run(tmp_path / "runs", "wider", args={"--hidden-size": 128})
    out = golden(str(run), "--store", str(fp1_store.root))
    assert out.exit_code == 0
    assert "argument --hidden-size changed: 64 → 128" in " ".join(out.stdout.split())


def test_env_platform_the_store_lacks_is_exit_2(tmp_path, fp1_store):
    run = write_loss_run(tmp_path / "runs", "r1")
    out = golden(str(run), "--store", str(fp1_store.root), "--env", "lts")
    assert out.exit_code == 1  # no golden for that target yet: a difference, not an input error
    out = golden(str(run), "--store", str(fp1_store.root), "--case", "nope")
    assert out.exit_code == 2 and "unknown case 'nope'" in out.stderr


# ---------------------------------------------------------------- versions

def test_two_versions_of_a_case(tmp_path, fp1_store):
    fp1_store.write("tiny", {GoldenKey("tiny", "dev", "cpu", 1): golden_set({"lm loss": LOSS * 1.5,
                                                                             "num-zeros": ZEROS})},
                    approver="t", reason="new", fingerprint="fp-9", provenance={"fingerprint": "fp-9"}, ci=False)
    s = str(fp1_store.root)
    out = golden("tiny@v1", "tiny@v2", "--store", s, "--format", "json")
    assert out.exit_code == 1
    result = ComparisonResult.from_json(json.loads(out.stdout))
    assert (result.reference, result.candidate) == ("tiny@v1", "tiny@v2")
    assert result.fingerprint.reference == "fp-1" and result.fingerprint.candidate == "fp-9"
    assert golden("tiny@v1", "tiny@v1", "--store", s).exit_code == 0
    bad = golden("tiny@v1", "tiny@v7", "--store", s)
    assert bad.exit_code == 2 and "no version v7" in bad.stderr



def test_two_git_revisions_of_a_case_suggest_no_approve_command_that_approve_refuses(tmp_path, monkeypatch):
    from tests.builders import git_store, megatron_doc

    name = "gpt/tiny/golden_values_dev_dgx_h100.json"
    store = git_store(tmp_path, {name: megatron_doc(range(1, 11), 10.0)}, {name: megatron_doc(range(1, 11), 12.0)})
    monkeypatch.chdir(store.parent)
    out = golden("gpt/tiny@HEAD~1", "gpt/tiny@HEAD", "--store", "cases")
    assert out.exit_code == 1 and "FAIL" in out.stdout
    assert "golden approve" not in out.stdout  # a version is no candidate approve takes
    refused = CliRunner().invoke(app, ["approve", "gpt/tiny@HEAD", "--case", "gpt/tiny", "--env", "dev",
                                       "--platform", "dgx_h100", "--store", "cases", "--reason", "x"])
    assert refused.exit_code == 2  # what the suggestion would have run


def test_two_golden_versions_of_a_resume_case_are_not_held_to_the_resume_check(tmp_path, fp1_store):
    # Megatron's _2nd golden comes from another job than phase 1: at the shared steps 11..20 it
    # differs in the last digits. That is no regression between two golden versions.
    second = np.where(STEPS > 10, LOSS * (1 + 1e-6), np.nan)
    pair = {GoldenKey("tiny", "dev", "cpu", 1): golden_set({"lm loss": LOSS}),
            GoldenKey("tiny", "dev", "cpu", 2): golden_set({"lm loss": second})}
    fp1_store.write("tiny", pair, approver="t", reason="resume goldens", fingerprint="fp-1", provenance={}, ci=False)
    fp1_store.write("tiny", pair, approver="t", reason="same again", fingerprint="fp-1", provenance={}, ci=False)
    out = golden("tiny@v2", "tiny@v3", "--store", str(fp1_store.root), "--format", "json")
    result = ComparisonResult.from_json(json.loads(out.stdout))
    assert out.exit_code == 0 and result.resume is None
    assert "resume check not run: the candidate is a golden, not a run" in result.warnings
    # a run with the same phases is still checked (test_resume_divergence_fails_with_its_own_verdict)



def test_saved_copies_with_a_prefix_keep_env_platform_and_phase(tmp_path):
    # A maintainer saves two revisions side by side: git show REV:path > REV_golden_values_….json
    time = 1.0 + 0.0 * STEPS
    slower = 1.5 + 0.0 * STEPS  # +50 %: out of the step-time rule
    old = tmp_path / "ad2ab2ca12_golden_values_dev_dgx_h100.json"
    new = tmp_path / "f5b2ec0130_golden_values_dev_dgx_h100.json"
    old.write_text(dumps_golden(golden_set({"lm loss": LOSS, "iteration-time": time})))
    new.write_text(dumps_golden(golden_set({"lm loss": LOSS, "iteration-time": slower})))
    out = golden(str(old), str(new), "--format", "json")
    result = ComparisonResult.from_json(json.loads(out.stdout))
    assert (result.env, result.platform) == ("dev", "dgx_h100")
    timing = result.phases[0].metrics[1]
    assert timing.verdict == Verdict.FAIL and out.exit_code == 1  # same platform: judged, not "unknown"
    second = tmp_path / "f5b2ec0130_golden_values_dev_dgx_h100_2nd.json"
    second.write_text(dumps_golden(golden_set({"lm loss": LOSS})))
    both_second = ComparisonResult.from_json(json.loads(golden(str(second), str(second), "--format", "json").stdout))
    assert [p.phase for p in both_second.phases] == [2]



def test_loose_golden_files_sharing_a_case_name_do_not_take_that_cases_tolerances(tmp_path, fp1_store):
    # Megatron's own files of a case the store also holds (its own, much looser, case.yaml):
    # +10 % loss fails under the default 5 %, passes under the store case's 20 %.
    (fp1_store.root / "tiny" / "case.yaml").write_text("metrics:\n  lm loss: {mode: approx, rtol: 0.2}\n")
    ref = write_golden(tmp_path / "megatron" / "tiny" / "golden_values_dev_dgx_h100.json")
    cand = write_golden(tmp_path / "megatron2" / "tiny" / "golden_values_dev_dgx_h100.json", loss=LOSS * 1.1)
    s = str(fp1_store.root)
    loose = golden(str(ref), str(cand), "--store", s, "--format", "json")
    assert loose.exit_code == 1
    warnings = ComparisonResult.from_json(json.loads(loose.stdout)).warnings
    assert any("case.yaml not applied" in w and "--case tiny" in w for w in warnings)
    assert golden(str(ref), str(cand), "--store", s, "--case", "tiny").exit_code == 0  # asked for: applied
    inside = write_golden(fp1_store.root / "tiny" / "golden_values_dev_dgx_h100.json", loss=LOSS * 1.1)
    assert golden(str(ref), str(inside), "--store", s).exit_code == 0  # a store file: its case applies


# ---------------------------------------------------------------- policies

def test_policy_preset_megatron_allows_one_failing_step_default_none(tmp_path):
    loss = LOSS.copy()
    loss[5] *= 1.5
    a = write_golden(tmp_path / "a" / "golden_values_dev_cpu.json")
    b = write_golden(tmp_path / "b" / "golden_values_dev_cpu.json", loss=loss)
    assert golden(str(a), str(b)).exit_code == 1
    assert golden(str(a), str(b), "--policy", "default").exit_code == 1
    assert golden(str(a), str(b), "--policy", "megatron").exit_code == 0  # min(max(20 // 100, 1), 50) = 1


def test_policy_file_and_its_errors(tmp_path):
    a = write_golden(tmp_path / "a" / "golden_values_dev_cpu.json")
    b = write_golden(tmp_path / "b" / "golden_values_dev_cpu.json", loss=LOSS * 1.1)
    loose = tmp_path / "loose.yaml"
    loose.write_text("metrics:\n  lm loss: {rtol: 0.2}\n")
    assert golden(str(a), str(b), "--policy", str(loose)).exit_code == 0
    typo = tmp_path / "typo.yaml"
    typo.write_text("metrics:\n  lm loss: {rtoll: 0.2}\n")
    out = golden(str(a), str(b), "--policy", str(typo))
    assert out.exit_code == 2 and "unknown key 'rtoll'" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.output
    broken = tmp_path / "broken.yaml"
    broken.write_text("metrics: [\n")
    out = golden(str(a), str(b), "--policy", str(broken))
    assert out.exit_code == 2 and "invalid YAML" in out.stderr
    out = golden(str(a), str(b), "--policy", "nvidia")
    assert out.exit_code == 2 and "neither a preset" in out.stderr


def test_policy_exponent_without_a_dot_says_how_to_write_it(tmp_path):
    a = write_golden(tmp_path / "a" / "golden_values_dev_cpu.json")
    policy = tmp_path / "p.yaml"
    policy.write_text("metrics:\n  lm loss: {rtol: 1e-5}\n")  # YAML 1.1: the string '1e-5'
    out = golden(str(a), str(a), "--policy", str(policy))
    assert out.exit_code == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "got the text '1e-5'" in out.stderr and "write 1.0e-5" in out.stderr
    policy.write_text("metrics:\n  lm loss: {rtol: fast}\n")
    out = golden(str(a), str(a), "--policy", str(policy))
    assert out.exit_code == 2 and out.stderr.endswith("key 'rtol': Input should be a valid number\n")


def test_case_yaml_metrics_section_applies_and_bad_one_is_exit_2(tmp_path, fp1_store):
    run = write_loss_run(tmp_path / "runs", "r1", loss=LOSS * 1.1, fingerprint="fp-2")
    s = str(fp1_store.root)
    assert golden(str(run), "--store", s).exit_code == 1
    (fp1_store.root / "tiny" / "case.yaml").write_text("metrics:\n  lm loss: {rtol: 0.2}\n")
    assert golden(str(run), "--store", s).exit_code == 0
    (fp1_store.root / "tiny" / "case.yaml").write_text("metrics:\n  lm loss: {direction: up}\n")
    out = golden(str(run), "--store", s)
    assert out.exit_code == 2 and "key 'direction'" in out.stderr and "case.yaml" in out.stderr


# ---------------------------------------------------------------- bad input: one line, exit 2

@pytest.mark.parametrize("content, needle", [
    ("{", "JSON"), ("", "empty file"), ('{"lm loss": {"values": {"1": "x"}}}', "expected a number"),
    ("[1, 2]", "expected a JSON object"),
])
def test_malformed_operands_are_one_line_exit_2(tmp_path, content, needle):
    good = write_golden(tmp_path / "a" / "golden_values_dev_cpu.json")
    bad = tmp_path / "b" / "golden_values_dev_cpu.json"
    bad.parent.mkdir()
    bad.write_text(content)
    out = golden(str(good), str(bad))
    assert out.exit_code == 2 and needle in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.output


def test_usage_errors_are_exit_2(tmp_path):
    a = write_golden(tmp_path / "a" / "golden_values_dev_cpu.json")
    assert golden(str(a), str(a), str(a)).exit_code == 2
    assert golden(str(a), str(a), "--format", "xml").exit_code == 2
    assert golden(str(tmp_path / "nope.json"), str(a)).exit_code == 2
    out = golden("a@v1", "--store", str(tmp_path))
    assert out.exit_code == 2 and "a version is a golden, not a run" in out.stderr
    out = golden("../etc@v1", str(a), "--store", str(tmp_path))
    assert out.exit_code == 2


def test_no_golden_yet_stages_the_run_outside_ci(tmp_path, fp1_store, monkeypatch):
    monkeypatch.delenv("CI")
    run = write_loss_run(tmp_path / "runs", "r1", loss=LOSS * 1.3, fingerprint="fp-2")
    out = golden(str(run), "--store", str(fp1_store.root))
    assert out.exit_code == 1 and "staged tiny dev/cpu" in out.stderr
    assert (fp1_store.root / ".pending" / "tiny" / "dev_cpu.json").is_file()


def test_module_imports_only_typer():
    code = ("import sys, goldens.cli.compare; "
            "print(sorted(m for m in ('numpy', 'pandas', 'rich', 'yaml', 'deepdiff', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"


def test_two_artifacts_compare_with_their_fingerprints(tmp_path):
    a = write_loss_run(tmp_path / "runs", "a", fingerprint="fp-x")
    b = write_loss_run(tmp_path / "runs", "b", fingerprint="fp-x")
    out = golden(str(a), str(b), "--format", "json")
    assert out.exit_code == 0
    result = ComparisonResult.from_json(json.loads(out.stdout))
    assert result.exact_applied and result.case == "tiny"


def test_a_failed_run_is_compared_and_says_so(tmp_path, fp1_store):
    path = write_loss_run(tmp_path / "runs", "died")
    doc = json.loads(path.read_text())
    doc["status"], doc["error"] = "failed", "rank 3 died"
    for m in doc["phases"]["1"]["metrics"].values():
        m["values"] = {k: v for k, v in m["values"].items() if int(k) <= 10}
    path.write_text(json.dumps(doc))
    out = golden(str(path), "--store", str(fp1_store.root), "--format", "json")
    assert out.exit_code == 1
    result = ComparisonResult.from_json(json.loads(out.stdout))
    assert "candidate: the run's status is 'failed': rank 3 died" in result.warnings
    loss = next(m for m in result.metric_verdicts() if m.metric == "lm loss")
    assert loss.step_counts == {"pass": 10, "missing": 10}


# ---------------------------------------------------------------- the table in a log or a pipe

@pytest.mark.parametrize("columns", [None, "60"], ids=["no COLUMNS", "COLUMNS=60"])
def test_table_in_a_log_keeps_every_full_precision_number_on_one_line(tmp_path, monkeypatch, columns):
    # CliRunner's stdout is no terminal, as in CI or `golden diff … | cat`: rich used to wrap at 80
    # columns and break 17-digit values over several lines.
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    golden_loss = LOSS.copy()
    golden_loss[4] = 6.9530158042907715
    run_loss = golden_loss.copy()
    run_loss[4] = 7.300666594505317      # +5.000000000000093 %: the worst step, out of 5 %
    names = {"lm loss": "lm loss", "num-zeros": "a-rather-long-metric-name-for-the-table/num-zeros"}
    for side, loss in (("a", golden_loss), ("b", run_loss)):
        path = tmp_path / side / "golden_values_dev_cpu.json"
        path.parent.mkdir()
        path.write_text(dumps_golden(golden_set({names["lm loss"]: loss, names["num-zeros"]: ZEROS})))
    result = golden(str(tmp_path / "a" / "golden_values_dev_cpu.json"),
                    str(tmp_path / "b" / "golden_values_dev_cpu.json"))
    assert result.exit_code == 1, result.output
    table = result.output.split("why:")[0]
    for number in ("6.9530158042907715", "7.300666594505317"):
        assert number in table, table     # whole, on one line of the table
    assert names["num-zeros"] in table


def test_run_phase_without_metrics_is_a_difference_not_a_crash(tmp_path, fp1_store):
    run = write_loss_run(tmp_path / "runs", "empty")
    doc = json.loads(run.read_text())
    doc["phases"]["1"]["metrics"] = {}
    run.write_text(json.dumps(doc))
    out = golden(str(run), "--store", str(fp1_store.root), "--format", "json")
    assert out.exit_code == 1 and isinstance(out.exception, SystemExit)  # a crash is exit 1 too
    drift = json.loads(out.stdout)["drift"]
    assert drift["metrics_removed"] == ["lm loss", "num-zeros"] and drift["metrics_added"] == []


def test_a_pass_on_a_terminal_is_one_line_details_with_v_and_a_failure_keeps_them(tmp_path, fp1_store, monkeypatch):
    from goldens.cli import common

    run = write_loss_run(tmp_path / "runs", "r1")
    s = str(fp1_store.root)
    logged = golden(str(run), "--store", s)  # a log or a pipe: everything, as before
    assert logged.exit_code == 0 and "why:" in logged.stdout and len(logged.stdout.splitlines()) > 10
    monkeypatch.setattr(common, "writes_to_terminal", lambda stderr=False: True)
    monkeypatch.setenv("COLUMNS", "100")
    short = golden(str(run), "--store", s)
    assert short.exit_code == 0, short.output
    (line,) = short.stdout.splitlines()
    assert line.startswith("PASS tiny dev/cpu · 2 metric(s) passed · ") and line.endswith("· details: -v")
    assert f"{run} vs " in line and "(policy default)" in line
    detailed = golden(str(run), "--store", s, "-v")
    assert detailed.exit_code == 0 and "why:" in detailed.stdout and "rule:" in detailed.stdout
    failing = golden(str(write_loss_run(tmp_path / "runs", "r2", loss=LOSS * 1.5)), "--store", s)
    assert failing.exit_code == 1 and "why:" in failing.stdout and "rule:" in failing.stdout
    assert failing.stdout.splitlines()[-1].startswith("FAIL")


def test_a_table_too_wide_for_a_log_is_plain_rows_never_a_padded_box(tmp_path, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    long_name = "memory/" + "a-very-long-metric-name-" * 40  # one long name pads every row of a box
    paths = []
    for side, factor in (("a", 1.0), ("b", 1.5)):
        path = tmp_path / side / "golden_values_dev_cpu.json"
        path.parent.mkdir()
        path.write_text(dumps_golden(golden_set({"lm loss": LOSS * factor, long_name: ZEROS, "num-zeros": ZEROS})))
        paths.append(str(path))
    out = golden(*paths)
    assert out.exit_code == 1, out.output
    table = out.stdout.split("why:")[0].splitlines()
    assert not any(c in "\n".join(table) for c in "┃━│")  # no box
    header = table[1].split("\t")
    assert header[:3] == ["phase", "metric", "verdict"]
    rows = {line.split("\t")[1]: line for line in table[2:] if "\t" in line}
    assert set(rows) >= {"lm loss", long_name, "num-zeros"}
    assert len(rows["lm loss"]) < 200  # a short row stays short: nothing padded to the longest name
    assert "fail" in rows["lm loss"].split("\t")[2]
