"""The approval workflow as a library: candidates, accept/reject, guardrails, rollback, prune, review."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from goldens import approve
from goldens.approve import ApprovalRefused, Operation, Selection, operations
from goldens.core.compare import compare, side_from_artifact, side_from_goldens
from goldens.core.errors import FormatError, GoldenError
from goldens.core.model import GoldenKey
from goldens.core.policy import preset
from goldens.files.formats.artifact import read_artifact
from goldens.files.formats.golden import read_golden
from goldens.store import GoldenStore
from tests.builders import LOSS, ZEROS, ScriptedIO, seed, shifted, tree_bytes, write_run

KEY = GoldenKey("tiny", "dev", "cpu", 1)


def diff_result(store, artifact_path):
    """What golden diff computes for a run against the current golden (default policies)."""
    artifact = read_artifact(artifact_path)
    reference = side_from_goldens({1: store.read(KEY)}, "golden", fingerprint=store.fingerprint_of(KEY),
                                  platform="cpu")
    return compare(reference, side_from_artifact(artifact), preset("default"), case="tiny", env="dev",
                   platform="cpu")


def accept(store, candidates, **kw):
    kw.setdefault("reason", "loss moved after the optimizer fix")
    kw.setdefault("approver", "ada")
    return approve.apply(Operation.ACCEPT, store, candidates, **kw)


def golden_values(store, key=KEY):
    return {name: s.as_dict() for name, s in store.read(key).metrics.items()}


# ---------------------------------------------------------------- staging

def test_stage_writes_a_candidate_that_reads_back(store, runs):
    run = write_run(runs, "tiny", "r1", {"lm loss": shifted(LOSS, 1.1), "num-zeros": ZEROS})
    result = diff_result(store, run)
    staged = approve.stage_candidate(store, run, "dev", "cpu", result)
    assert staged.path == store.root / ".pending" / "tiny" / "dev_cpu.json"
    again = approve.read_candidate(staged.path)
    assert again == staged
    assert (again.run_id, again.base_version, again.fingerprint, again.verdict) == ("r1", 1, "fp-1", "fail")
    assert again.artifact == str(run.resolve())
    assert again.failing() == {1: {"lm loss"}}
    assert approve.list_pending(store) == [staged]


def test_stage_in_ci_writes_nothing(store, runs, monkeypatch):
    run = write_run(runs, "tiny", "r1", {"lm loss": LOSS})
    before = tree_bytes(store.root)
    monkeypatch.setenv("CI", "true")
    assert approve.stage_candidate(store, run, "dev", "cpu") is None
    assert tree_bytes(store.root) == before


def test_a_newer_run_replaces_the_candidate_of_the_same_target(store, runs):
    approve.stage_candidate(store, write_run(runs, "tiny", "r1", {"lm loss": LOSS}), "dev", "cpu")
    approve.stage_candidate(store, write_run(runs, "tiny", "r2", {"lm loss": LOSS}), "dev", "cpu")
    approve.stage_candidate(store, write_run(runs, "tiny", "r3", {"lm loss": LOSS}, env="lts"), "lts", "cpu")
    assert [(c.run_id, c.env) for c in approve.list_pending(store)] == [("r2", "dev"), ("r3", "lts")]
    assert [c.run_id for c in approve.list_pending(store, env="lts")] == ["r3"]


def test_a_corrupt_candidate_is_a_one_line_error(store):
    path = store.root / ".pending" / "tiny" / "dev_cpu.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"schema": "golden.pending/1", "case": "tiny"}')
    with pytest.raises(FormatError, match="missing field 'env'"):
        approve.list_pending(store)


def test_hostile_names_in_a_candidate_are_refused(store):
    path = store.root / ".pending" / "tiny" / "dev_cpu.json"
    path.parent.mkdir(parents=True)
    doc = {"schema": "golden.pending/1", "case": "../../etc", "env": "dev", "platform": "cpu",
           "run_id": "r", "artifact": "/x", "base_version": 1}
    path.write_text(json.dumps(doc))
    with pytest.raises(FormatError, match="invalid case name"):
        approve.list_pending(store)


# ---------------------------------------------------------------- accept

def test_accept_makes_the_run_the_golden_with_a_ledger_entry(store, runs):
    new_loss = shifted(LOSS, 1.1)
    run = write_run(runs, "tiny", "r1", {"lm loss": new_loss, "num-zeros": ZEROS})
    staged = approve.stage_candidate(store, run, "dev", "cpu", diff_result(store, run))
    [outcome] = accept(store, [staged])
    entry = outcome.entry
    assert (entry.number, entry.approver, entry.reason, entry.action) == (
        2, "ada", "loss moved after the optimizer fix", "approve")
    assert (entry.source_run_id, entry.fingerprint) == ("r1", "fp-1")
    assert entry.provenance["device"] == "cpu"
    assert entry.provenance["selection"]["partial"] is False
    summary = entry.files["golden_values_dev_cpu.json"].summary
    assert summary["lm loss"].changed_steps == 20 and summary["num-zeros"].changed_steps == 0
    assert golden_values(store) == {"lm loss": new_loss, "num-zeros": ZEROS}  # bit-exact floats
    assert approve.list_pending(store) == []
    assert store.fingerprint_of(KEY) == "fp-1"
    assert diff_result(store, run).passed


def test_selective_accept_keeps_the_other_metrics_and_the_ledger_says_so(store, runs):
    run = write_run(runs, "tiny", "r1", {"lm loss": shifted(LOSS, 1.1), "num-zeros": shifted(ZEROS, 2)})
    [_outcome] = accept(store, approve.candidates_for_run(store, run), selection=Selection(metrics=("num-zeros",)))
    assert golden_values(store) == {"lm loss": LOSS, "num-zeros": shifted(ZEROS, 2)}
    selection = store.current_entry("tiny").provenance["selection"]
    assert selection == {"partial": True, "metrics": ["num-zeros"], "only_failing": False,
                         "files": [{"file": "golden_values_dev_cpu.json", "replaced": ["num-zeros"],
                                    "added": [], "kept": ["lm loss"]}]}
    assert list(store.read(KEY).metrics) == ["lm loss", "num-zeros"]  # the file's order is kept


def test_only_failing_takes_just_the_failing_metrics(store, runs):
    tiny_change = {s: v + 1.0 for s, v in ZEROS.items()}   # within num-zeros' approx tolerance
    run = write_run(runs, "tiny", "r1", {"lm loss": shifted(LOSS, 1.5), "num-zeros": tiny_change})
    result = diff_result(store, run)
    assert {m.metric: m.passed for m in result.metric_verdicts()} == {"lm loss": False, "num-zeros": True}
    staged = approve.stage_candidate(store, run, "dev", "cpu", result)
    accept(store, [staged], selection=Selection(only_failing=True))
    assert golden_values(store) == {"lm loss": shifted(LOSS, 1.5), "num-zeros": ZEROS}
    record = store.current_entry("tiny").provenance["selection"]["files"][0]
    assert (record["replaced"], record["kept"]) == (["lm loss"], ["num-zeros"])


def test_a_new_metric_is_added_and_scalars_are_kept(store, runs, tmp_path):
    golden_file = store.case_dir("other") / "golden_values_dev_cpu.json"
    golden_file.write_text(json.dumps({"lm loss": {"start_step": 1, "end_step": 20, "step_interval": 1,
                                                   "values": {str(s): v for s, v in LOSS.items()}},
                                       "iteration_timing_avg": 0.61}, indent=4))
    run = write_run(runs, "other", "r1", {"lm loss": LOSS, "mem-allocated-bytes": ZEROS})
    [outcome] = accept(store, approve.candidates_for_run(store, run))
    assert [c.to_json() for c in outcome.plan.changes] == [
        {"file": "golden_values_dev_cpu.json", "replaced": ["lm loss"], "added": ["mem-allocated-bytes"],
         "kept": ["iteration_timing_avg"]}]
    golden = read_golden(golden_file)
    assert golden.scalars == {"iteration_timing_avg": 0.61}
    assert list(golden.metrics) == ["lm loss", "mem-allocated-bytes"]
    # the hand-written file was first recorded as an import, then the approval
    assert [e.action for e in store.history("other")] == ["imported", "approve"]


def test_a_resume_run_writes_the_2nd_file_padded_like_megatron(store, runs):
    first = {s: LOSS[s] for s in range(1, 21)}
    second = {s: LOSS[s] * 1.0001 for s in range(11, 21)}
    run = write_run(runs, "tiny", "r1", {"lm loss": first}, phase2={"lm loss": second}, resumed_from=10)
    accept(store, approve.candidates_for_run(store, run))
    phase2 = store.read(GoldenKey("tiny", "dev", "cpu", 2)).metrics["lm loss"]
    assert phase2.steps.tolist() == list(range(1, 21))
    assert np.isnan(phase2.values[:10]).all()
    assert phase2.values[10:].tolist() == [second[s] for s in range(11, 21)]
    assert sorted(store.current_entry("tiny").files) == ["golden_values_dev_cpu.json",
                                                          "golden_values_dev_cpu_2nd.json"]


def test_a_direct_run_needs_a_target_when_it_declares_none(store, runs):
    run = write_run(runs, "tiny", "r1", {"lm loss": LOSS}, env=None, platform=None)
    with pytest.raises(ApprovalRefused, match="give --env and --platform"):
        approve.candidates_for_run(store, run)
    runner_like = write_run(runs, "tiny", "r2", {"lm loss": LOSS}, env=None)   # the runner names no env
    with pytest.raises(ApprovalRefused, match=r"targets: give --env$"):
        approve.candidates_for_run(store, runner_like)
    [candidate] = approve.candidates_for_run(store, run, env="lts", platform="cpu")
    assert (candidate.env, candidate.platform, candidate.base_version) == ("lts", "cpu", None)


def test_a_run_can_be_named_by_directory_or_id(store, runs):
    run = write_run(runs, "tiny", "r1", {"lm loss": LOSS})
    assert approve.resolve_run(run.parent) == run.resolve()
    assert approve.resolve_run("r1", runs) == run.resolve()
    with pytest.raises(GoldenError, match="no run 'nope'"):
        approve.resolve_run("nope", runs)


def test_an_unknown_metric_is_refused(store, runs):
    run = write_run(runs, "tiny", "r1", {"lm loss": LOSS})
    with pytest.raises(ApprovalRefused, match="has no metric 'lm-loss'"):
        accept(store, approve.candidates_for_run(store, run), selection=Selection(metrics=("lm-loss",)))


# ---------------------------------------------------------------- guardrails: refused, nothing written

def _stage(store, runs, **run_kw):
    metrics = run_kw.pop("metrics", {"lm loss": shifted(LOSS, 1.1), "num-zeros": ZEROS})
    run = write_run(runs, "tiny", "r1", metrics, **run_kw)
    return approve.stage_candidate(store, run, "dev", "cpu")


def _inf_at_3():
    zeros = dict(ZEROS)
    zeros[3] = math.inf
    return {"lm loss": LOSS, "num-zeros": zeros}


GUARDRAILS = {
    "no reason": ({}, {"reason": None}, "a reason is required"),
    "blank reason": ({}, {"reason": "  \t"}, "a reason is required"),
    "incomplete run": ({"status": "incomplete"}, {}, r"is incomplete \(rank 3 died\): only a complete run"),
    "failed run": ({"status": "failed"}, {}, r"is failed \(rank 3 died\)"),
    "inf": ({"metrics": _inf_at_3()}, {}, "'num-zeros' .* is infinite at step 3"),
    "env differs": ({"env": "lts"}, {}, "ran with env 'lts' but the target golden is dev/cpu"),
    "platform differs": ({"platform": "dgx_h100"}, {}, "ran with platform 'dgx_h100'"),
    "CI": ({}, {"ci": True}, "CI never writes goldens"),
}


@pytest.mark.parametrize("name", list(GUARDRAILS))
def test_guardrail_refuses_and_writes_nothing(name, store, runs, tmp_path):
    run_kw, apply_kw, message = GUARDRAILS[name]
    staged = _stage(store, runs, **run_kw)
    before, ledger = tree_bytes(tmp_path), store.history("tiny")
    with pytest.raises(ApprovalRefused, match=message):
        accept(store, [staged], **apply_kw)
    assert tree_bytes(tmp_path) == before
    assert store.history("tiny") == ledger


def test_ci_can_be_overridden_deliberately(store, runs):
    staged = _stage(store, runs)
    [outcome] = accept(store, [staged], ci=True, allow_ci=True)
    assert outcome.entry.number == 2


def test_a_candidate_made_against_an_older_version_is_refused(store, runs, tmp_path):
    staged = _stage(store, runs)
    other = write_run(runs, "tiny", "r2", {"lm loss": shifted(LOSS, 0.9), "num-zeros": ZEROS})
    accept(store, approve.candidates_for_run(store, other), approver="bob")   # v2 lands in between
    before = tree_bytes(tmp_path)
    with pytest.raises(ApprovalRefused, match=r"made against v1, but v2 \(approve by bob\) changed it since"):
        accept(store, [staged])
    assert tree_bytes(tmp_path) == before
    assert golden_values(store)["lm loss"] == shifted(LOSS, 0.9)


def test_one_refused_candidate_stops_the_whole_batch_before_any_write(store, runs, tmp_path):
    good = approve.stage_candidate(store, write_run(runs, "tiny", "r1", {"lm loss": LOSS}), "dev", "cpu")
    bad_run = write_run(runs, "other", "r2", {"lm loss": LOSS}, status="incomplete")
    bad = approve.stage_candidate(store, bad_run, "dev", "cpu")
    before = tree_bytes(tmp_path)
    with pytest.raises(ApprovalRefused, match="r2' is incomplete"):
        accept(store, [good, bad])
    assert tree_bytes(tmp_path) == before


def test_the_stores_own_validation_is_a_preflight_too(store, runs, tmp_path):
    loss = {s: (math.inf if s == 5 else v) for s, v in LOSS.items()}   # an infinity: no golden may hold it
    good = approve.stage_candidate(store, write_run(runs, "tiny", "r1", {"lm loss": LOSS}), "dev", "cpu")
    bad = approve.stage_candidate(store, write_run(runs, "other", "r2", {"lm loss": loss}), "dev", "cpu")
    before = tree_bytes(tmp_path)
    with pytest.raises(ApprovalRefused, match="infinite at step 5"):
        accept(store, [good, bad])
    assert tree_bytes(tmp_path) == before


def test_a_nan_mid_series_is_approved_as_megatron_reads_it(store, runs):
    # Megatron's CI writes "nan" for a step it did not log; its reader and comparator accept the file.
    loss = {s: (math.nan if s == 5 else v) for s, v in LOSS.items()}
    staged = approve.stage_candidate(store, write_run(runs, "tiny", "r1", {"lm loss": loss}), "dev", "cpu")
    accept(store, [staged])
    written = store.read(KEY).metrics["lm loss"]
    assert math.isnan(written.as_dict()[5]) and written.as_dict()[1] == LOSS[1]


# ---------------------------------------------------------------- reject

def test_reject_discards_the_candidate_and_leaves_goldens_alone(store, runs):
    staged = _stage(store, runs)
    goldens_before = {k: v for k, v in tree_bytes(store.root).items() if not k.startswith(".pending")}
    [outcome] = approve.apply(Operation.REJECT, store, [staged])
    assert outcome.operation is Operation.REJECT
    assert approve.list_pending(store) == []
    assert {k: v for k, v in tree_bytes(store.root).items() if not k.startswith(".pending")} == goldens_before


def test_reject_of_an_unstaged_run_is_refused(store, runs):
    run = write_run(runs, "tiny", "r1", {"lm loss": LOSS})
    with pytest.raises(ApprovalRefused, match="has no pending candidate"):
        approve.apply(Operation.REJECT, store, approve.candidates_for_run(store, run))


def test_accepting_keeps_a_newer_candidate_staged_meanwhile(store, runs):
    staged = _stage(store, runs)
    newer = approve.stage_candidate(store, write_run(runs, "tiny", "r9", {"lm loss": LOSS}), "dev", "cpu")
    approve.discard(staged)
    assert approve.list_pending(store) == [newer]


# ---------------------------------------------------------------- rollback

def test_rollback_writes_a_new_version_equal_to_the_old_one(store, runs):
    run = write_run(runs, "tiny", "r1", {"lm loss": shifted(LOSS, 1.1)}, phase2={"lm loss": LOSS},
                    resumed_from=10)
    accept(store, approve.candidates_for_run(store, run))
    assert len(store.keys("tiny")) == 2
    entry = approve.rollback(store, "tiny", 1, reason="v2 came from a broken node", approver="ada")
    assert (entry.number, entry.action, entry.source_run_id, entry.fingerprint) == (3, "rollback", "seed-run",
                                                                                    "fp-seed")
    assert entry.provenance["rollback_to"] == 1
    assert store.read_version("tiny", 3) == store.read_version("tiny", 1)
    assert store.keys("tiny") == [KEY]            # the _2nd file v1 never had is gone
    assert golden_values(store) == {"lm loss": LOSS, "num-zeros": ZEROS}
    assert store.fingerprint_of(KEY) == "fp-seed"


@pytest.mark.parametrize("version, reason, message", [
    (1, None, "a reason is required"),
    (7, "why", r"has no version v7 \(versions v1 … v1\)"),
    (1, "why", "the golden files already hold the content of v1"),
])
def test_rollback_guardrails_write_nothing(store, tmp_path, version, reason, message):
    before = tree_bytes(tmp_path)
    with pytest.raises(ApprovalRefused, match=message):
        approve.rollback(store, "tiny", version, reason=reason, approver="ada")
    assert tree_bytes(tmp_path) == before


def test_rollback_in_ci_is_refused(store, runs, tmp_path, monkeypatch):
    accept(store, approve.candidates_for_run(store, write_run(runs, "tiny", "r1", {"lm loss": LOSS})))
    before = tree_bytes(tmp_path)
    monkeypatch.setenv("CI", "1")
    with pytest.raises(ApprovalRefused, match="CI never writes"):
        approve.rollback(store, "tiny", 1, reason="why", approver="ada")
    assert tree_bytes(tmp_path) == before


# ---------------------------------------------------------------- prune

def test_prune_finds_orphan_goldens_and_candidates_without_a_run(store, runs):
    orphan_dir = store.root / "retired"
    orphan_dir.mkdir()
    (orphan_dir / "golden_values_dev_cpu.json").write_text((store.case_dir("tiny") / KEY.filename()).read_text())
    kept = _stage(store, runs)
    gone_run = write_run(runs, "other", "r2", {"lm loss": LOSS})
    gone = approve.stage_candidate(store, gone_run, "dev", "cpu")
    gone_run.unlink()
    fresh = GoldenStore(store.root)
    report = approve.prune_check(fresh)
    assert report.orphan_goldens == (orphan_dir / "golden_values_dev_cpu.json",)
    assert [(p, why.split(" (")[0]) for p, why in report.stale_candidates] == [(gone.path, "run 'r2' is gone")]
    approve.prune(fresh)
    assert approve.list_pending(fresh) == [kept]
    assert (orphan_dir / "golden_values_dev_cpu.json").exists()     # goldens are never pruned


# ---------------------------------------------------------------- review

def _three_candidates(store, runs):
    store_cases = ("tiny", "other")
    seed(store, "other", {"lm loss": LOSS})
    out = [approve.stage_candidate(store, write_run(runs, case, f"r-{case}", {"lm loss": shifted(LOSS, 1.2)}),
                                   "dev", "cpu") for case in store_cases]
    out.append(approve.stage_candidate(store, write_run(runs, "tiny", "r-lts", {"lm loss": LOSS}, env="lts"),
                                       "lts", "cpu"))
    return approve.list_pending(store)


def test_review_accept_reject_skip(store, runs):
    candidates = _three_candidates(store, runs)
    assert [c.target for c in candidates] == ["other dev/cpu", "tiny dev/cpu", "tiny lts/cpu"]
    io = ScriptedIO(["x", "a", "r", "s"])
    summary = approve.review(store, candidates, io, approver="ada")
    assert [t for t, *_ in io.shown] == ["other dev/cpu", "tiny dev/cpu", "tiny lts/cpu"]
    assert io.notes and "a accept" in io.notes[0]          # the unknown key 'x' shows the keys
    assert [o.candidate.target for o in summary.accepted] == ["other dev/cpu"]
    assert [c.target for c in summary.rejected] == ["tiny dev/cpu"]
    assert [c.target for c in summary.skipped] == ["tiny lts/cpu"]
    assert io.reasons_asked == 1 and store.current_entry("other").reason == "scripted reason"
    assert [c.target for c in approve.list_pending(store)] == ["tiny lts/cpu"]
    assert store.current_entry("tiny").number == 1


def test_review_accept_all_remaining_asks_for_the_reason_once(store, runs):
    candidates = _three_candidates(store, runs)
    io = ScriptedIO(["s", "A"])
    summary = approve.review(store, candidates, io, approver="ada")
    assert len(io.shown) == 2 and io.reasons_asked == 1
    assert [o.candidate.target for o in summary.accepted] == ["tiny dev/cpu", "tiny lts/cpu"]
    assert [e.number for e in store.history("tiny")] == [1, 2, 3]


def test_review_reject_all_and_end_of_keys(store, runs):
    candidates = _three_candidates(store, runs)
    summary = approve.review(store, candidates, ScriptedIO(["R"]), approver="ada")
    assert len(summary.rejected) == 3 and approve.list_pending(store) == []
    candidates = _three_candidates(store, runs)
    summary = approve.review(store, candidates, ScriptedIO([]), approver="ada")   # keys ran out: quit
    assert len(summary.skipped) == 3 and len(approve.list_pending(store)) == 3


def test_review_shows_a_refusal_and_goes_on(store, runs):
    bad = approve.stage_candidate(store, write_run(runs, "other", "r0", {"lm loss": LOSS}, status="failed"),
                                  "dev", "cpu")
    good = _stage(store, runs)
    io = ScriptedIO(["a", "a"])
    summary = approve.review(store, [bad, good], io, reason="ok", approver="ada")
    assert "is failed" in io.shown[0][3].problem
    assert [c.target for c, _ in summary.refused] == ["other dev/cpu"]
    assert [o.candidate.target for o in summary.accepted] == ["tiny dev/cpu"]
    assert io.reasons_asked == 0


def test_review_without_a_reason_refuses(store, runs):
    staged = _stage(store, runs)
    summary = approve.review(store, [staged], ScriptedIO(["a"], reasons=[""]), approver="ada")
    assert "a reason is required" in summary.refused[0][1]
    assert store.current_entry("tiny").number == 1


def test_candidate_view_aligns_golden_and_run(store, runs):
    run = write_run(runs, "tiny", "r1", {"lm loss": {s: LOSS[s] for s in range(5, 21)}, "num-zeros": ZEROS})
    view = approve.candidate_view(store, approve.candidates_for_run(store, run)[0], Selection(metrics=("lm loss",)))
    loss = next(m for m in view.metrics if m.metric == "lm loss")
    assert loss.steps.tolist() == list(range(1, 21))
    assert np.isnan(loss.run[:4]).all() and loss.run[4] == LOSS[5]
    assert loss.golden.tolist() == [LOSS[s] for s in range(1, 21)]
    assert [(m.metric, m.selected) for m in view.metrics] == [("lm loss", True), ("num-zeros", False)]


def test_sparkline_on_a_shared_scale():
    from goldens.cli.review_screen import finite_range, sparkline

    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7], 0, 7) == "▁▂▃▄▅▆▇█"
    assert sparkline([0, math.nan, 7], 0, 14) == "▁ ▅"
    assert len(sparkline(np.arange(1000.0), 0, 999, width=32)) == 32
    assert finite_range(np.array([1.0, math.nan]), np.array([-2.0, math.inf])) == (-2.0, 1.0)


# ---------------------------------------------------------------- approver

def test_approver_is_git_user_else_user(tmp_path, monkeypatch):
    from goldens.store.identity import default_approver

    config = tmp_path / "gitconfig"
    config.write_text("[user]\n\tname = Ada Lovelace\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    assert default_approver(tmp_path) == "Ada Lovelace"
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "absent"))
    monkeypatch.setenv("USER", "bob")
    assert default_approver(tmp_path) == "bob"


def test_candidate_equality_ignores_where_it_is_staged(store, runs):
    staged = _stage(store, runs)
    assert replace(staged, path=None) == staged


def test_a_candidate_left_staged_after_its_approval_is_pruned_and_refused(store, runs, monkeypatch, tmp_path):
    staged = _stage(store, runs)
    with monkeypatch.context() as m:
        m.setattr(operations, "discard", lambda candidate: None)   # as if killed right after the commit
        accept(store, [staged])
    assert approve.list_pending(store) == [staged]
    report = approve.prune_check(store)
    assert report.stale_candidates == ((staged.path, "run 'r1' was already approved as v2"),)
    before = tree_bytes(tmp_path)
    with pytest.raises(ApprovalRefused, match="made against v1, but v2"):
        accept(store, [staged])
    assert tree_bytes(tmp_path) == before


def test_a_merge_builds_on_the_ledger_head_not_on_lagging_plain_files(store, runs):
    """Another writer commits v2 and is about to replace the plain file (or died right there):
    a selective approval must keep v2's change, not resurrect v1's values from the plain file."""
    plain = store.case_dir("tiny") / KEY.filename()
    v1_bytes = plain.read_bytes()
    other = write_run(runs, "tiny", "r-zeros", {"lm loss": LOSS, "num-zeros": shifted(ZEROS, 2)})
    accept(store, approve.candidates_for_run(store, other), selection=Selection(metrics=("num-zeros",)))
    plain.write_bytes(v1_bytes)            # the plain file still lags behind the committed v2
    run = write_run(runs, "tiny", "r-loss", {"lm loss": shifted(LOSS, 1.1), "num-zeros": ZEROS})
    accept(store, approve.candidates_for_run(store, run), selection=Selection(metrics=("lm loss",)))
    assert golden_values(store) == {"lm loss": shifted(LOSS, 1.1), "num-zeros": shifted(ZEROS, 2)}
    assert [e.action for e in store.history("tiny")] == ["approve", "approve", "approve"]
    assert store.fsck(repair=False) == []


def _screen(view, **kwargs) -> list[str]:
    """What the review screen shows in a 100×30 terminal: the rule, the panel, the prompt."""
    import io

    from rich.console import Console

    from goldens.cli.review_screen import TerminalReviewIO

    out = io.StringIO()
    console = Console(file=out, width=100, height=30, color_system=None, legacy_windows=False)
    screen = TerminalReviewIO(console)
    screen.failing_only = kwargs.get("failing_only", False)
    screen.show(view, 0, 3)
    console.print("a/r/s/A/R/q/f ", end="")
    return out.getvalue().splitlines()


def test_the_review_screen_fits_100_by_30_with_the_failing_row_on_it_and_a_failing_only_view():
    from goldens.approve import Candidate, CandidateView, MetricView

    steps = np.arange(1, 101)
    long_why = "within rtol 0.05 of the golden at every step; largest relative difference 3.2e-3 at step 77 " * 2
    metrics = [MetricView(phase=phase, metric=f"metric-{phase}-{i}-with-a-rather-long-name", verdict="pass",
                          explanation=long_why, steps=steps, golden=steps * 1.0, run=steps * 1.0, selected=False)
               for phase in (1, 2) for i in range(14)]
    metrics.append(MetricView(phase=2, metric="lm loss", verdict="fail", explanation="12 of 100 steps beyond rtol 0.05",
                              steps=steps, golden=steps * 1.0, run=steps * 1.2, selected=True))
    view = CandidateView(candidate=Candidate(case="gpt/gpt3_mcore_te_tp2_pp2_resume_torch_dist", env="dev",
                                             platform="dgx_h100", run_id="r" * 40, artifact="/x", base_version=None,
                                             verdict="fail"),
                         metrics=tuple(metrics))
    lines = _screen(view)
    assert len(lines) <= 30 and max(len(line) for line in lines) <= 100
    assert any(" lm loss " in line and "fail" in line for line in lines)  # the failing row never scrolls off
    passing_rows = [line for line in lines if "metric-" in line]
    assert f"… {29 - 1 - len(passing_rows)} metric(s) not shown (a taller terminal shows more)" in "\n".join(lines)
    assert passing_rows and "metric-1-0-" in passing_rows[0]  # then passing rows, in order, as many as fit
    failing_only = _screen(view, failing_only=True)
    assert [line for line in failing_only if "fail" in line and "lm loss" in line]
    assert not [line for line in failing_only if "metric-" in line]
    assert "28 metric(s) not shown" in "\n".join(failing_only)
    assert "f every row" in "\n".join(failing_only) and "f failing only" in "\n".join(lines)


def test_the_f_key_toggles_the_failing_only_view_and_is_no_answer(monkeypatch):
    import io

    import typer
    from rich.console import Console

    from goldens.approve import Candidate, CandidateView, MetricView
    from goldens.cli.review_screen import TerminalReviewIO

    steps = np.arange(1, 5)
    metrics = tuple(MetricView(phase=1, metric=name, verdict=verdict, explanation="", steps=steps, golden=steps * 1.0,
                               run=steps * 1.0, selected=False) for name, verdict in (("num-zeros", "pass"),
                                                                                       ("lm loss", "fail")))
    view = CandidateView(candidate=Candidate(case="tiny", env="dev", platform="cpu", run_id="r1", artifact="/x",
                                             base_version=None, verdict="fail"), metrics=metrics)
    out = io.StringIO()
    screen = TerminalReviewIO(Console(file=out, width=100, height=30, color_system=None))
    keys = iter("fa")
    monkeypatch.setattr(typer, "getchar", lambda: next(keys))
    screen.show(view, 0, 1)
    assert screen.key() == "a" and screen.failing_only
    first, again = out.getvalue().split("a/r/s/A/R/q/f f")
    assert "num-zeros" in first and "num-zeros" not in again and "lm loss" in again
    assert "1 metric(s) not shown" in again
