"""The engine on real Megatron-LM goldens (../shared; skipped where absent)."""
from __future__ import annotations

import itertools
import json

import pytest

from goldens.core.compare import compare, resume_check, side_from_goldens
from goldens.core.errors import NotATrainingGolden
from goldens.core.policy import preset
from goldens.core.result import ComparisonResult, Verdict
from goldens.files.formats.golden import parse_golden_filename, read_golden


def training_goldens(root):
    for path in sorted(root.rglob("golden_values_*.json")):
        try:
            yield path, read_golden(path)
        except NotATrainingGolden:
            continue


@pytest.mark.parametrize("policy", ["default", "megatron"])
def test_every_real_golden_equals_itself_bit_exactly(megatron_fixtures, policy):
    count = 0
    for path, golden in training_goldens(megatron_fixtures / "test_cases" / "bert"):
        phase = parse_golden_filename(path)[2]
        side = side_from_goldens({phase: golden}, str(path), fingerprint="same")
        result = compare(side, side, preset(policy))
        assert result.verdict == Verdict.PASS and result.exact_applied, path
        assert all(m.failing_steps == 0 for m in result.metric_verdicts()), path
        count += 1
    assert count >= 30


def test_consecutive_history_revisions_compare_and_round_trip(megatron_fixtures):
    history = megatron_fixtures / "history" / "bert_mcore_tp2_pp2_resume_torch_dist_local_spec"
    index = json.loads((history / "index.json").read_text())
    revisions = [history / f for entry in index for f in entry["files"]
                 if f.endswith("golden_values_dev_dgx_h100.json")]
    assert len(revisions) >= 3
    for old, new in itertools.pairwise(revisions):
        result = compare(side_from_goldens({1: read_golden(old)}, old.name),
                         side_from_goldens({1: read_golden(new)}, new.name), preset("megatron"))
        assert result.metric_verdicts() and not result.exact_applied
        assert ComparisonResult.from_json(json.loads(json.dumps(result.to_json()))) == result
        for m in result.metric_verdicts():
            assert m.mean_rel_diff is None or abs(m.mean_rel_diff) < 10


def test_resume_check_on_a_real_golden_pair(megatron_fixtures):
    case = megatron_fixtures / "test_cases" / "bert" / "bert_mcore_tp2_pp2_resume_torch_dist_local_spec"
    side = side_from_goldens({1: read_golden(case / "golden_values_dev_dgx_h100.json"),
                              2: read_golden(case / "golden_values_dev_dgx_h100_2nd.json")}, "pair")
    r = resume_check(side, preset("default"))
    # The _2nd file is "nan" for steps 1..50 (padding), so the overlap is steps 51..100.
    assert r.overlapping_steps == 50
    assert {m.metric for m in r.metrics if m.verdict in (Verdict.PASS, Verdict.FAIL)} == {"lm loss", "num-zeros"}
