"""``golden judge``: many candidates against the store in one process. Pairing is a pure function
(case path, else a unique folder name; env, platform and phase from the file names); unpaired or
broken files are findings, never a crash; --out writes results, findings and reports."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from goldens.cli import app
from goldens.core.pairing import ARTIFACT, GOLDEN, CandidateFile, pair_candidates, resolve_case
from goldens.core.result import ComparisonResult
from goldens.workflow.bulk import judge_bulk
from goldens.workflow.operands import diff
from tests.builders import artifact, inference_doc, training_doc, write_megatron_case, write_run

# ---------------------------------------------------------------- pairing (pure)


def golden_file(folder: str, env: str = "dev", platform: str = "dgx_h100", phase: int = 1, top: str = "cand"):
    name = f"golden_values_{env}_{platform}{'_2nd' if phase == 2 else ''}.json"
    return CandidateFile(f"{top}/{folder}/{name}", GOLDEN, env, platform, phase, folder, top)


@pytest.mark.parametrize("folder, cases, case", [
    ("gpt/gpt3_x", ["bert/a", "gpt/gpt3_x"], "gpt/gpt3_x"),       # a case path (a Megatron tree as the store)
    ("gpt/gpt3_x", ["a", "gpt3_x"], "gpt3_x"),                    # today's names: the folder's name
    ("gpt3_x", ["gpt/gpt3_x", "bert/a"], "gpt/gpt3_x"),           # a flat candidates folder, a tree store
    ("moe/x", ["gpt/x", "moe/x"], "moe/x"),
    ("other/x", ["gpt/x", "moe/x"], None),                        # ambiguous
    ("nowhere", ["gpt/x"], None),
])
def test_a_candidate_folder_resolves_to_its_case(folder, cases, case):
    assert resolve_case(folder, "cand", cases)[0] == case


def test_pairing_joins_phases_and_reports_what_it_cannot_pair():
    files = [
        golden_file("bert/a"), golden_file("bert/a", phase=2),        # a resume pair
        golden_file("bert/a", platform="dgx_a100"),                   # no golden for it in the store
        golden_file("bert/a", platform="dgx_gb200", phase=2),         # a _2nd without its run 1
        golden_file("x/unknown"),                                      # no case
        golden_file("b", top="other"),                                 # case b, dev/dgx_h100 ...
        golden_file("bert/b"),                                         # ... again: a duplicate
        CandidateFile("runs/r1/artifact.json", ARTIFACT, "dev", "cpu", case="c", folder="r1", top="runs"),
        CandidateFile("runs/r2/artifact.json", ARTIFACT, None, None, case="c", folder="r2", top="runs"),
    ]
    goldens = {"bert/a": {("dev", "dgx_h100")}, "bert/b": {("dev", "dgx_h100")}, "c": {("dev", "cpu")}}
    pairing = pair_candidates(files, ["bert/a", "bert/b", "c"], goldens)
    targets = {(t.case, t.env, t.platform): t for t in pairing.targets}
    assert set(targets) == {("bert/a", "dev", "dgx_h100"), ("bert/a", "dev", "dgx_a100"), ("bert/b", "dev", "dgx_h100"),
                            ("c", "dev", "cpu")}
    assert targets[("bert/a", "dev", "dgx_h100")].second == "cand/bert/a/golden_values_dev_dgx_h100_2nd.json"
    assert targets[("bert/b", "dev", "dgx_h100")].path == "other/b/golden_values_dev_dgx_h100.json"  # first wins
    kinds = sorted((f.kind, f.path) for f in pairing.findings)
    assert kinds == [("duplicate", "cand/bert/b/golden_values_dev_dgx_h100.json"),
                     ("no-case", "cand/x/unknown/golden_values_dev_dgx_h100.json"),
                     ("no-golden", "cand/bert/a/golden_values_dev_dgx_a100.json"),
                     ("unpaired", "cand/bert/a/golden_values_dev_dgx_gb200_2nd.json"),
                     ("unpaired", "runs/r2/artifact.json")]


# ---------------------------------------------------------------- the command

CONFIG = "ENV_VARS:\n  NVTE_ALLOW_NONDETERMINISTIC_ALGO: 1\nTEST_TYPE: {test_type}\nMODEL_ARGS:\n  --train-iters: 40\n"


@pytest.fixture
def tree(tmp_path) -> Path:
    """A Megatron-style store (gpt/ok, gpt/bad, moe/resume, moe/infer) and a candidates tree mirroring it,
    with one of each problem: a run 10 % off, a broken file, a _2nd alone, an unknown case."""
    store, cand = tmp_path / "store", tmp_path / "cand"
    golden = training_doc(range(1, 41))
    regular = CONFIG.format(test_type="regular")
    write_megatron_case(store / "gpt", "ok", regular, {"golden_values_dev_dgx_h100.json": golden})
    write_megatron_case(store / "gpt", "bad", regular, {"golden_values_dev_dgx_h100.json": golden})
    write_megatron_case(store / "moe", "resume", CONFIG.format(test_type="ckpt-resume"),
                        {"golden_values_dev_dgx_h100.json": golden})
    write_megatron_case(store / "moe", "infer",
                        "TEST_TYPE: frozen-start\nMODE: inference\nMETRICS: [generated_tokens]\n",
                        {"golden_values_dev_dgx_h100.json": inference_doc()})
    second = {name: {**m, "values": {k: v for k, v in m["values"].items() if int(k) > 20}}
              for name, m in golden.items()}
    worse = copy.deepcopy(golden)
    worse["lm loss"]["values"] = {k: v * 1.1 for k, v in worse["lm loss"]["values"].items()}
    for folder, files in {"gpt/ok": {"golden_values_dev_dgx_h100.json": golden},
                          "gpt/bad": {"golden_values_dev_dgx_h100.json": worse,
                                      "golden_values_lts_dgx_a100_2nd.json": second},
                          "moe/resume": {"golden_values_dev_dgx_h100.json": golden,
                                         "golden_values_dev_dgx_h100_2nd.json": second},
                          "moe/infer": {"golden_values_dev_dgx_h100.json": inference_doc()},
                          "moe/nothere": {"golden_values_dev_dgx_h100.json": golden}}.items():
        for name, doc in files.items():
            (cand / folder).mkdir(parents=True, exist_ok=True)
            (cand / folder / name).write_text(json.dumps(doc))
    (cand / "gpt" / "ok" / "golden_values_lts_dgx_a100.json").write_text('{"lm loss": {"values": ')  # broken
    return tmp_path


def golden(*args: str, ci: bool = False):
    return CliRunner().invoke(app, list(args), env={"CI": "true" if ci else "", "GITHUB_STEP_SUMMARY": ""})


def test_judge_a_tree_in_one_process(tree):
    out = golden("judge", str(tree / "cand"), "--store", str(tree / "store"), "--policy", "megatron",
                 "--format", "json", "--out", str(tree / "out"))
    assert out.exit_code == 1, out.output
    doc = json.loads(out.stdout)
    verdicts = {(r["case"], r["verdict"]) for r in doc["results"]}
    assert verdicts == {("gpt/ok", "pass"), ("gpt/bad", "fail"), ("moe/resume", "pass"), ("moe/infer", "pass")}
    assert sorted(f["kind"] for f in doc["findings"]) == ["broken", "no-case", "no-golden", "unpaired"]
    broken = next(f for f in doc["findings"] if f["kind"] == "broken")
    assert "truncated JSON" in broken["message"] and broken["case"] == "gpt/ok"
    assert doc["summary"] == {"targets": 4, "passed": 3, "failed": 1, "regressions": 1, "findings": 4,
                              "preexisting": {}}
    results = sorted((tree / "out" / "results").glob("*.json"))
    assert [p.name for p in results] == ["gpt--bad__dev__dgx_h100.json", "gpt--ok__dev__dgx_h100.json",
                                         "moe--infer__dev__dgx_h100.json", "moe--resume__dev__dgx_h100.json"]
    assert ComparisonResult.from_json(json.loads(results[0].read_text())).verdict.value == "fail"
    assert json.loads((tree / "out" / "findings.json").read_text())["schema"] == "golden.findings/1"
    for name in ("report.md", "report.html", "junit.xml", "report.json"):
        assert (tree / "out" / name).is_file()
    report = golden("report", str(results[0]), "--out", str(tree / "rep"))
    assert report.exit_code in (0, 1) and (tree / "rep" / "report.md").is_file(), report.output


def test_the_bulk_verdicts_are_the_single_verdicts(tree):
    bulk = judge_bulk([tree / "cand"], store_root=tree / "store", policy="megatron", stage=False)
    for judgement in bulk.judgements:
        path = tree / "cand" / judgement.case / "golden_values_dev_dgx_h100.json"
        single = diff([str(path)], store_root=tree / "store", policy="megatron")
        assert single.result.to_json() == judgement.result.to_json()


def test_failing_candidates_are_staged_outside_ci_only(tree):
    args = ("judge", str(tree / "cand" / "gpt"), "--store", str(tree / "store"), "--policy", "megatron")
    assert golden(*args, ci=True).exit_code == 1
    assert json.loads(golden("pending", "--store", str(tree / "store"), "--json").stdout) == []
    assert golden(*args, "--no-stage").exit_code == 1
    assert json.loads(golden("pending", "--store", str(tree / "store"), "--json").stdout) == []
    out = golden(*args)
    assert "staged gpt/bad dev/dgx_h100" in out.stderr
    [staged] = json.loads(golden("pending", "--store", str(tree / "store"), "--json").stdout)
    assert (staged["case"], staged["verdict"]) == ("gpt/bad", "fail")


def test_all_passing_is_exit_0_and_every_format_renders(tree):
    for fmt in ("table", "md", "json"):
        out = golden("judge", str(tree / "cand" / "gpt" / "ok" / "golden_values_dev_dgx_h100.json"),
                     "--store", str(tree / "store"), "--policy", "megatron", "--format", fmt)
        assert out.exit_code == 0, out.output
        assert ("1 passed, 0 failed, 0 finding(s)" in out.stdout) if fmt != "json" else json.loads(out.stdout)["passed"]


def test_run_artifacts_are_judged_by_the_case_they_declare(tmp_path, store, runs):
    write_run(runs, "tiny", "r1", {"lm loss": {s: 10.0 - 0.25 * s + 1e-9 * s * s for s in range(1, 21)},
                                   "num-zeros": {s: float(1000 + 3 * s) for s in range(1, 21)}})
    write_run(runs, "tiny", "r2", {"lm loss": dict.fromkeys(range(1, 21), 11.0)})
    bulk = judge_bulk([runs], store_root=store.root, stage=False)
    assert [f.kind for f in bulk.findings] == ["duplicate"]
    assert [j.case for j in bulk.judgements] == ["tiny"] and bulk.judgements[0].passed
    assert artifact  # the builder module's artifacts are what write_run writes


@pytest.mark.parametrize("args, message", [
    (["--format", "csv"], "--format must be one of table, json, md"),
    (["--policy", "nonsense"], "neither a preset"),
    (["--store", "/nonexistent/store"], "no golden store"),
])
def test_usage_errors_are_exit_2(tree, args, message):
    out = golden("judge", str(tree / "cand"), "--store", str(tree / "store"), *args)
    assert out.exit_code == 2 and message in out.stderr, out.output


def test_a_path_that_does_not_exist_is_a_usage_error_and_an_empty_folder_a_finding(tree):
    out = golden("judge", str(tree / "nope"), "--store", str(tree / "store"))
    assert out.exit_code == 2 and "no such file or folder" in out.stderr
    (tree / "empty").mkdir()
    out = golden("judge", str(tree / "empty"), "--store", str(tree / "store"), "--format", "json")
    assert out.exit_code == 1 and json.loads(out.stdout)["findings"][0]["kind"] == "empty"


# ---------------------------------------------------------------- findings in every report

REPORTS = ("report.md", "report.html", "junit.xml", "report.json")


def assert_reports_carry_findings(out_dir: Path, kinds: list[str]) -> None:
    """Every report names each finding, and none of them says passed."""
    import xml.etree.ElementTree as ET

    md = (out_dir / "report.md").read_text()
    headline = md.splitlines()[0]
    assert "passed" not in headline.replace("judged case(s) passed", "") and "failed" in headline, headline
    assert "✅" not in headline and "### Findings" in md
    junit = ET.parse(out_dir / "junit.xml").getroot()
    assert junit.get("errors") == str(len(kinds))
    assert sorted(e.get("type") for e in junit.iter("error")) == sorted(kinds)
    html = (out_dir / "report.html").read_text()
    assert "Findings:" in html and '<span class="badge pass">pass</span> Golden' not in html
    doc = json.loads((out_dir / "report.json").read_text())
    assert doc["verdict"] == "fail" and sorted(f["kind"] for f in doc["findings"]) == sorted(kinds)


def test_findings_alone_fail_every_report(tree):
    """Every judged target passes; one broken file beside them makes the exit 1 — and every report
    says so (before: each one headlined "passed", JUnit had errors="0")."""
    out = golden("judge", str(tree / "cand" / "gpt" / "ok"), "--store", str(tree / "store"), "--policy", "megatron",
                 "--out", str(tree / "out"), "--no-stage")
    assert out.exit_code == 1, out.output
    assert_reports_carry_findings(tree / "out", ["broken", "no-golden"])
    assert "all 1 judged case(s) passed · 2 finding(s)" in (tree / "out" / "report.md").read_text()
    again = golden("report", str(tree / "out" / "report.json"), "--out", str(tree / "again"))
    assert again.exit_code == 1, again.output  # the findings survive a re-render of report.json
    assert_reports_carry_findings(tree / "again", ["broken", "no-golden"])
    md = golden("judge", str(tree / "cand" / "gpt" / "ok"), "--store", str(tree / "store"), "--policy", "megatron",
                "--format", "md", "--no-stage")
    assert md.exit_code == 1 and "Golden check passed" not in md.stdout and "### Findings" in md.stdout


def test_all_broken_input_still_writes_every_report(tree):
    broken = tree / "broken" / "gpt" / "ok"
    broken.mkdir(parents=True)
    (broken / "golden_values_dev_dgx_h100.json").write_text("{}")
    (broken / "golden_values_lts_dgx_a100_2nd.json").write_text("")
    out = golden("judge", str(tree / "broken"), "--store", str(tree / "store"), "--policy", "megatron",
                 "--out", str(tree / "out"), "--no-stage")
    assert out.exit_code == 1, out.output
    assert all((tree / "out" / name).is_file() for name in REPORTS)
    assert_reports_carry_findings(tree / "out", ["broken", "unpaired"])
    assert "nothing judged · 2 finding(s)" in (tree / "out" / "report.md").read_text()


# ---------------------------------------------------------------- history read once

def git_calls(monkeypatch) -> list[str]:
    """The git subcommands the store runs, in order."""
    from goldens.files import gitrepo

    calls: list[str] = []
    real = gitrepo._run

    def counting(cwd, args, stdin=None):
        calls.append(args[0])
        return real(cwd, args, stdin)

    monkeypatch.setattr(gitrepo, "_run", counting)
    return calls


def test_a_tree_in_git_is_judged_with_one_history_pass_not_one_per_target(tree, monkeypatch):
    """Inside a git repository with history, judging every target reads the log once (for the whole
    store), and under rules that never use history (Megatron's) no version's bytes at all."""
    from tests.builders import commit_all, git_repo

    git_repo(tree)
    commit_all(tree, "the tree")
    golden_file = tree / "store" / "gpt" / "ok" / "golden_values_dev_dgx_h100.json"
    golden_file.write_text(golden_file.read_text().replace("10.", "10.0", 1))
    commit_all(tree, "a new golden")
    calls = git_calls(monkeypatch)
    bulk = judge_bulk([tree / "cand"], store_root=tree / "store", policy="megatron", stage=False)
    assert len(bulk.judgements) == 4
    assert calls.count("log") == 1, calls
    assert "cat-file" not in calls and "ls-tree" not in calls, calls
    assert len(calls) <= 6, calls  # finding the repository and its log, never a call per target


def test_history_rules_still_read_the_history_once(tree, monkeypatch):
    """The default policy judges step time against the approved history: the log is still read
    once for all targets (the versions' bytes per case that has them)."""
    from tests.builders import commit_all, git_repo

    git_repo(tree)
    commit_all(tree, "the tree")
    calls = git_calls(monkeypatch)
    judge_bulk([tree / "cand"], store_root=tree / "store", stage=False)
    assert calls.count("log") == 1, calls


def test_a_progress_bar_on_a_terminal_and_none_in_ci_or_a_log(monkeypatch):
    from goldens.cli import common

    monkeypatch.delenv("CI", raising=False)
    with common.progress_bar("judging") as advance:
        assert advance is None  # pytest's stderr is no terminal: a log stays quiet
    monkeypatch.setattr(common, "writes_to_terminal", lambda stderr=False: True)
    with common.progress_bar("judging") as advance:
        advance(1, 3)
        advance(3, 3)
    monkeypatch.setenv("CI", "true")
    with common.progress_bar("judging") as advance:
        assert advance is None


# ---------------------------------------------------------------- new versus pre-existing

def test_a_failure_the_committed_goldens_share_is_pre_existing_and_a_real_one_a_regression(tree):
    """moe/resume's committed _2nd file disagrees with its phase 1: the resume check fails on the
    committed goldens themselves. A candidate failing only that check fails (Megatron's verdict is
    kept) but is pre-existing; a candidate also off the golden is a regression."""
    case = tree / "store" / "moe" / "resume"
    golden_doc = json.loads((case / "golden_values_dev_dgx_h100.json").read_text())
    bad_second = {name: {**m, "values": {k: v * 2 for k, v in m["values"].items() if int(k) > 20}}
                  for name, m in golden_doc.items()}
    (case / "golden_values_dev_dgx_h100_2nd.json").write_text(json.dumps(bad_second))
    cand = tree / "cand" / "moe" / "resume"
    (cand / "golden_values_dev_dgx_h100_2nd.json").write_text(json.dumps(bad_second))
    bulk = judge_bulk([cand], store_root=tree / "store", policy="megatron", stage=False)
    [r] = bulk.results
    assert not r.passed and r.preexisting == ("resume check",) and not r.regression
    worse = {name: {**m, "values": {k: v * 1.5 for k, v in m["values"].items()}} for name, m in golden_doc.items()}
    (cand / "golden_values_dev_dgx_h100.json").write_text(json.dumps(worse))
    [r] = judge_bulk([cand], store_root=tree / "store", policy="megatron", stage=False).results
    assert r.regression and r.preexisting == ("resume check",)  # lm loss 50 % off is the candidate's own


def test_the_real_sample_judged_against_itself_shows_its_defects_apart_and_no_regression(megatron_fixtures, tmp_path):
    import shutil

    store = tmp_path / "test_cases"
    shutil.copytree(megatron_fixtures / "test_cases", store)
    for path in store.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    out = golden("judge", str(store), "--store", str(store), "--policy", "megatron", "--no-stage", "--format", "json")
    assert out.exit_code == 1, out.output  # Megatron's own verdict: its resume tests fail on these pairs
    summary = json.loads(out.stdout)["summary"]
    assert summary["failed"] > 0 and summary["regressions"] == 0
    assert summary["preexisting"] == {"resume check": summary["failed"]}
    table = golden("judge", str(store), "--store", str(store), "--policy", "megatron", "--no-stage")
    assert f"pre-existing in the committed goldens: resume check fails in {summary['failed']} target(s)" in table.stdout
    assert "(0 regression(s)" in table.stdout


def test_a_log_gets_plain_rows_failures_first_never_a_boxed_table(tree):
    out = golden("judge", str(tree / "cand"), "--store", str(tree / "store"), "--policy", "megatron", "--no-stage")
    lines = out.stdout.splitlines()
    assert lines[0] == "FAIL\tgpt/bad\tdev/dgx_h100\tfailing: lm loss"  # the failure leads
    assert not any(ch in out.stdout for ch in "┃│┏━") and max(map(len, lines)) < 400
    assert "PASS\tgpt/ok\tdev/dgx_h100" in lines


def test_validate_audit_lists_the_trees_own_defects_once_with_counts(tree):
    """The tree audit: each check the committed goldens fail on themselves, once per target, counted —
    warnings (Megatron's CI has them too), so plain validate still passes and --strict does not.
    moe/resume is a ckpt-resume case committed without its _2nd file: its resume check cannot pass."""
    import shutil

    store = tree / "store"
    shutil.copytree(store / "moe" / "resume", store / "moe" / "resume_copy")
    audited = golden("validate", "--store", str(store), "--audit")
    assert audited.exit_code == 0, audited.output
    assert "tree audit: resume check fails on the committed goldens themselves in 2 target(s)" in audited.output
    assert audited.output.count("WARNING  moe/resume dev/dgx_h100") == 1
    assert audited.output.count("WARNING  moe/resume_copy dev/dgx_h100") == 1
    assert golden("validate", "--store", str(store), "--audit", "--strict").exit_code == 1
    assert "tree audit" not in golden("validate", "--store", str(store)).output  # only when asked
    shutil.rmtree(store / "moe" / "resume")
    shutil.rmtree(store / "moe" / "resume_copy")
    clean = golden("validate", "--store", str(store), "--audit")
    assert "tree audit: no check fails on the committed goldens themselves" in clean.output, clean.output
