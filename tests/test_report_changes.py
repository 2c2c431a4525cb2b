"""The golden-change report: per (file, metric) signed mean relative diff, per-metric spread, histogram.

Expected numbers are worked out by hand (own fixtures) or recomputed here with plain Python
from the raw JSON (Megatron's real history), independently of reports.changes.
"""
from __future__ import annotations

import itertools
import json
import math
import statistics
from pathlib import Path

import numpy as np
import pytest

from goldens.core.errors import StoreError
from goldens.files.formats.golden import parse_golden, read_golden
from reports.changes import BUCKETS, compare_revisions, decade_bucket
from reports.markdown import changes_markdown
from reports.revisions import parse_change_spec, read_git_revisions
from tests.builders import BASE, HEAD, git_store, make_store, parsed_goldens


def _row(changes, file: str, metric: str):
    match = changes.rows[(changes.rows["file"] == file) & (changes.rows["metric"] == metric)]
    assert len(match) == 1, (file, metric)
    return match.iloc[0]


def _check_hand_computed(changes) -> None:
    a, b = "caseA/golden_values_dev_cpu.json", "caseB/golden_values_dev_cpu.json"
    assert _row(changes, a, "lm loss")["mean_rel_diff"] == pytest.approx(-0.05, rel=1e-12)
    assert _row(changes, a, "lm loss")["n_steps"] == 3
    assert _row(changes, a, "num-zeros")["mean_rel_diff"] == pytest.approx(0.05, rel=1e-12)
    assert _row(changes, a, "num-zeros")["n_steps"] == 2
    assert _row(changes, a, "iteration_timing_avg")["mean_rel_diff"] == pytest.approx(0.2, rel=1e-12)
    assert _row(changes, b, "lm loss")["mean_rel_diff"] == pytest.approx(2.5e-6, rel=1e-9)
    assert _row(changes, b, "num-zeros")["mean_rel_diff"] == 0.0
    assert len(changes.rows) == 5
    assert changes.changed_files == (a, b)
    assert changes.unchanged == ("caseC/golden_values_dev_cpu.json",)
    assert changes.added == ("caseE/golden_values_dev_cpu.json",)
    assert changes.removed == ("caseD/golden_values_dev_cpu.json",)
    assert any("mem-allocated-bytes" in n and "added" in n for n in changes.notes)

    summary = changes.summary.set_index("metric")
    assert list(summary.index) == ["lm loss", "num-zeros", "iteration_timing_avg"]
    assert summary.loc["lm loss", "files"] == 2
    assert summary.loc["lm loss", "median_abs"] == pytest.approx((0.05 + 2.5e-6) / 2, rel=1e-9)
    assert summary.loc["lm loss", "max_abs"] == pytest.approx(0.05, rel=1e-12)
    assert summary.loc["num-zeros", "median_abs"] == pytest.approx(0.025, rel=1e-12)
    histogram = {m: [int(summary.loc[m, b]) for b in BUCKETS] for m in summary.index}
    assert histogram["lm loss"] == [0, 0, 1, 0, 0, 1, 0]   # 2.5e-6 → "< 1e-4"; 0.05 → "< 1e-1"
    assert histogram["num-zeros"] == [1, 0, 0, 0, 0, 1, 0]  # 0 → "== 0"; 0.05 → "< 1e-1"
    assert histogram["iteration_timing_avg"] == [0, 0, 0, 0, 0, 0, 1]  # 0.2 → "≥ 1e-1"


def test_hand_computed_changes_on_own_fixtures():
    changes = compare_revisions(parsed_goldens(BASE), parsed_goldens(HEAD), base_label="v1", head_label="v2")
    _check_hand_computed(changes)


def test_decade_buckets_put_each_edge_in_the_bucket_above():
    magnitudes = np.array([0.0, 5e-7, 1e-6, 9.99e-5, 1e-4, 5e-4, 1e-3, 1e-2, 0.05, 0.1, 3.0])
    assert decade_bucket(magnitudes).tolist() == [0, 1, 2, 2, 3, 3, 4, 5, 5, 6, 6]


def test_sign_follows_new_minus_old_over_abs_old():
    base = parsed_goldens({"f.json": {"lm loss": {"values": {"1": -2.0}, "start_step": 1, "step_interval": 1}}})
    head = parsed_goldens({"f.json": {"lm loss": {"values": {"1": -1.0}, "start_step": 1, "step_interval": 1}}})
    changes = compare_revisions(base, head, base_label="a", head_label="b")
    assert changes.rows["mean_rel_diff"].tolist() == [0.5]  # new is larger: (−1 − −2) / 2


def test_metric_without_usable_shared_step_is_a_note_not_a_row():
    base = parsed_goldens({"f.json": {"lm loss": {"values": {"1": 1.0, "2": "nan"},
                                                  "start_step": 1, "step_interval": 1}}})
    head = parsed_goldens({"f.json": {"lm loss": {"values": {"2": 3.0, "3": 1.0},
                                                  "start_step": 2, "step_interval": 1}}})
    changes = compare_revisions(base, head, base_label="a", head_label="b")
    assert changes.rows.empty
    assert changes.notes == ("f.json: metric 'lm loss' has no shared step with a usable value",
                             "f.json: metric 'lm loss' steps changed: step 1 dropped; step 3 added; "
                             "step 2 no longer nan; start_step 1 → 2")
    assert "No metric changed." in changes_markdown(changes)


def test_markdown_holds_the_summary_and_per_file_rows():
    changes = compare_revisions(parsed_goldens(BASE), parsed_goldens(HEAD), base_label="v1", head_label="v2")
    text = changes_markdown(changes)
    assert "| lm loss | 2 | 2.500e-02 | 5.000e-02 | 0 | 0 | 1 | 0 | 0 | 1 | 0 |" in text
    assert "| caseA/golden\\_values\\_dev\\_cpu.json | 3 | -5.000e-02 | +5.000e-02 | +2.000e-01 |" in text
    assert "| caseB/golden\\_values\\_dev\\_cpu.json | 2 | +2.500e-06 | 0 | — |" in text
    assert "caseE/golden\\_values\\_dev\\_cpu.json" in text.split("**Added:**")[1]


def test_markdown_drops_whole_file_rows_to_fit_and_says_so():
    base = {f"case{i:04d}/golden_values_dev_cpu.json":
            {"lm loss": {"values": {"1": 1.0, "2": 1.0}, "start_step": 1, "step_interval": 1}} for i in range(400)}
    head = {name: {"lm loss": {"values": {"1": 1.0 + i * 1e-4, "2": 1.0}, "start_step": 1, "step_interval": 1}}
            for i, name in enumerate(base)}
    changes = compare_revisions(parsed_goldens(base), parsed_goldens(head), base_label="a", head_label="b")
    text = changes_markdown(changes, limit=6000)
    assert len(text) <= 6000
    shown = [line for line in text.splitlines() if line.startswith("| case")]
    omitted = int(text.split(" file(s) with the smallest changes not shown")[0].rsplit("_", 1)[1])
    assert len(shown) + omitted == 399 and omitted > 0  # case0000 did not change
    assert "case0399" in text  # the biggest mover is kept
    assert text.rstrip().endswith("</details>")  # the table closed properly, nothing cut


# ---------------------------------------------------------------- git refs of a store

@pytest.fixture
def store_repo(tmp_path: Path) -> Path:
    inference = {"caseI/golden_values_dev_dgx_h100.json":
                 {"0": {"input_prompt": "hi", "generated_text": "there", "logprobs": [-0.1]}}}
    return git_store(tmp_path, {**BASE, **inference}, {**HEAD, **inference})


def test_git_refs_of_a_store_give_the_hand_computed_changes(store_repo: Path):
    base, head = read_git_revisions(store_repo, "HEAD~1", "HEAD")
    assert "caseI/golden_values_dev_dgx_h100.json at HEAD: not a training golden (skipped)" in head.skipped
    changes = compare_revisions(base.goldens, head.goldens, base_label=base.label, head_label=head.label)
    _check_hand_computed(changes)


def test_unknown_git_ref_is_a_store_error(store_repo: Path):
    with pytest.raises(StoreError, match="unknown git ref 'nope'"):
        read_git_revisions(store_repo, "nope", "HEAD")
    with pytest.raises(StoreError, match="invalid git ref"):
        read_git_revisions(store_repo, "--output=/tmp/x", "HEAD")


def test_store_versions_of_a_case(tmp_path: Path):
    from goldens.core.model import GoldenKey
    from reports.build import read_changes

    name = "caseA/golden_values_dev_cpu.json"
    store = make_store(tmp_path / "cases", ("caseA",), case_yaml="{}\n")
    key = GoldenKey("caseA", "dev", "cpu", 1)
    old = {"lm loss": {"start_step": 1, "end_step": 3, "step_interval": 1, "values": {"1": 10.0, "2": 8.0, "3": 4.0}}}
    new = {"lm loss": HEAD[name]["lm loss"]}  # (0 + 0.1 - 0.25) / 3 over steps 1..3
    for version, doc in enumerate((old, new), start=1):
        store.write("caseA", {key: parse_golden(doc)}, approver="t", reason=f"v{version}")
    changes = read_changes("caseA@v1..v2", tmp_path / "cases")
    assert (changes.base_label, changes.head_label) == ("caseA@v1", "caseA@v2")
    rows = {r.metric: (r.n_steps, r.mean_rel_diff) for r in changes.rows.itertuples()}
    assert rows["lm loss"][0] == 3 and rows["lm loss"][1] == pytest.approx(-0.05, rel=1e-12)
    assert set(changes.changed_files) == {"golden_values_dev_cpu.json"}
    with pytest.raises(StoreError, match="no version v3"):
        read_changes("caseA@v1..v3", tmp_path / "cases")


@pytest.mark.parametrize("text, expected", [
    ("main..HEAD", ("main", "HEAD", None)),
    ("v1.2..abc123", ("v1.2", "abc123", None)),
    ("bert_tp2@v3..v5", ("v3", "v5", "bert_tp2")),
    ("bert_tp2@3..5", ("3", "5", "bert_tp2")),
    ("gpt/bert_tp2@a1b2c3d..HEAD", ("a1b2c3d", "HEAD", "gpt/bert_tp2")),
    ("HEAD@{1}..HEAD", ("HEAD@{1}", "HEAD", None)),
])
def test_change_spec_parsing(text, expected):
    spec = parse_change_spec(text)
    assert (spec.base, spec.head, spec.case) == expected


@pytest.mark.parametrize("text", ["HEAD", "a...b", "..b", "a..", "a..b..c"])
def test_bad_change_spec_is_rejected(text):
    with pytest.raises(StoreError):
        parse_change_spec(text)


# ---------------------------------------------------------------- Megatron's real golden history

def _independent_file_diffs(old_doc: dict, new_doc: dict) -> dict[str, tuple[int, float]]:
    """Per metric (n, mean of (new-old)/|old|) with plain Python, straight from the JSON."""
    out = {}
    for metric, old_entry in old_doc.items():
        new_entry = new_doc.get(metric)
        if not (isinstance(old_entry, dict) and isinstance(new_entry, dict)):
            continue
        old_values = {int(s): float(v) for s, v in old_entry["values"].items()}
        new_values = {int(s): float(v) for s, v in new_entry["values"].items()}
        rels = [(new_values[s] - old_values[s]) / abs(old_values[s])
                for s in sorted(old_values.keys() & new_values.keys())
                if math.isfinite(old_values[s]) and math.isfinite(new_values[s]) and abs(old_values[s]) >= 1e-12]
        if rels:
            out[metric] = (len(rels), math.fsum(rels) / len(rels))
    return out


def _bucket(m: float) -> str:
    if m == 0:
        return "== 0"
    for edge, label in ((1e-6, "< 1e-6"), (1e-4, "< 1e-4"), (1e-3, "< 1e-3"), (1e-2, "< 1e-2"), (1e-1, "< 1e-1")):
        if m < edge:
            return label
    return "≥ 1e-1"


@pytest.mark.shared
def test_megatron_history_matches_an_independent_computation(megatron_fixtures: Path):
    compared_pairs = 0
    for case_dir in sorted((megatron_fixtures / "history").iterdir()):
        index = json.loads((case_dir / "index.json").read_text())
        revisions = [{f.split("_", 1)[1]: case_dir / f for f in entry["files"]} for entry in index]
        for old_rev, new_rev in itertools.pairwise(revisions):
            changes = compare_revisions({n: read_golden(p) for n, p in old_rev.items()},
                                        {n: read_golden(p) for n, p in new_rev.items()},
                                        base_label="old", head_label="new")
            expected_rows = {}
            for name in old_rev.keys() & new_rev.keys():
                old_doc, new_doc = (json.loads(p.read_text()) for p in (old_rev[name], new_rev[name]))
                if old_doc != new_doc:
                    for metric, (n, mean) in _independent_file_diffs(old_doc, new_doc).items():
                        expected_rows[(name, metric)] = (n, mean)
            got = {(r.file, r.metric): (r.n_steps, r.mean_rel_diff) for r in changes.rows.itertuples()}
            assert got.keys() == expected_rows.keys()
            for key, (n, mean) in expected_rows.items():
                assert got[key][0] == n, key
                assert got[key][1] == pytest.approx(mean, rel=1e-12, abs=1e-18), key
            assert set(changes.added) == new_rev.keys() - old_rev.keys()
            assert set(changes.removed) == old_rev.keys() - new_rev.keys()
            for summary in changes.summary.to_dict("records"):
                magnitudes = [abs(mean) for (_, metric), (_, mean) in expected_rows.items()
                              if metric == summary["metric"]]
                assert summary["files"] == len(magnitudes)
                assert summary["median_abs"] == pytest.approx(statistics.median(magnitudes), rel=1e-12, abs=1e-18)
                assert summary["max_abs"] == pytest.approx(max(magnitudes), rel=1e-12, abs=1e-18)
                for label in BUCKETS:
                    assert summary[label] == sum(_bucket(m) == label for m in magnitudes), (summary["metric"], label)
            compared_pairs += bool(expected_rows)
    assert compared_pairs >= 5  # the history holds real refreshes, not only identical revisions


def test_a_refresh_that_only_moves_steps_says_so():
    # Megatron #6539 dropped the leading "nan" iteration time (step 1) and moved start_step to 2:
    # every shared value is equal, so only the note can tell the reviewer what changed.
    base = parsed_goldens({"f.json": {"iteration-time": {"start_step": 1, "end_step": 3, "step_interval": 1,
                                                   "values": {"1": "nan", "2": 7.5, "3": 0.8}}}})
    head = parsed_goldens({"f.json": {"iteration-time": {"start_step": 2, "end_step": 3, "step_interval": 1,
                                                   "values": {"2": 7.5, "3": 0.8}}}})
    changes = compare_revisions(base, head, base_label="a", head_label="b")
    assert changes.rows["mean_rel_diff"].tolist() == [0.0]
    assert changes.notes == ("f.json: metric 'iteration-time' steps changed: step 1 dropped; start_step 1 → 2",)
    assert "steps changed: step 1 dropped; start\\_step 1 → 2" in changes_markdown(changes)
    assert changes.grid_only == ("f.json",)  # "changed", but only at the grid's edge: labelled as such
    assert "**1 changed** golden file(s) (1 only at the step grid's edge: no shared value moved)" in \
        changes_markdown(changes)
    moved = parsed_goldens({"f.json": {"iteration-time": {"start_step": 2, "end_step": 3, "step_interval": 1,
                                                    "values": {"2": 7.5, "3": 0.9}}}})
    assert compare_revisions(base, moved, base_label="a", head_label="b").grid_only == ()


def test_megatron_nan_removal_commit_is_explained(megatron_fixtures: Path):
    history = megatron_fixtures / "history" / "bert_mcore_tp2_pp2_resume_torch_dist_local_spec"
    name = "golden_values_dev_dgx_h100.json"
    changes = compare_revisions({name: read_golden(history / f"a53107c006_{name}")},
                                {name: read_golden(history / f"93ebf8d72f_{name}")}, base_label="a", head_label="b")
    assert (changes.rows["mean_rel_diff"] == 0).all()
    assert changes.notes == (f"{name}: metric 'iteration-time' steps changed: step 1 dropped; start_step 1 → 2",)


def test_a_value_that_turns_nan_is_named():
    # Megatron bde826430d: iteration-time at step 1 went from 10.24286 to "nan" (the relative
    # difference skips nan steps, so only the note shows it).
    base = parsed_goldens({"f.json": {"t": {"start_step": 1, "end_step": 3, "step_interval": 1,
                                      "values": {"1": 10.0, "2": "nan", "3": 1.0}}}})
    head = parsed_goldens({"f.json": {"t": {"start_step": 1, "end_step": 3, "step_interval": 1,
                                      "values": {"1": "nan", "2": 2.0, "3": 1.0}}}})
    changes = compare_revisions(base, head, base_label="a", head_label="b")
    assert changes.notes == ("f.json: metric 't' steps changed: step 1 now nan; step 2 no longer nan",)
