"""golden stats + the band mode: spread of repeated runs, recommendations by hand, drift detection."""
from __future__ import annotations

import math

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from goldens.cli import app
from goldens.core.compare import Context, compare_metric
from goldens.core.errors import GoldenError, PolicyError
from goldens.core.model import Artifact, MetricSeries, Phase
from goldens.core.policy import build_policies, preset
from goldens.core.stats import EPS32, history_timing_check, policy_document, recommend_all, render_policy_yaml, spread
from goldens.files.formats.artifact import dumps_artifact

T_995_2 = 9.924843200918271   # Student t, 0.995 quantile, 2 degrees of freedom (tables: 9.9248)
T_995_4 = 4.604094871415897   # 4 degrees of freedom (tables: 4.6041)
STEPS = np.arange(1, 41)
LOSS = 10.0 * np.exp(-STEPS / 30.0)  # a decaying loss curve


def artifact(run_id: str, metrics: dict[str, np.ndarray], steps: np.ndarray = STEPS, case: str = "tiny",
             status: str = "complete") -> Artifact:
    series = {name: MetricSeries(name, steps, values) for name, values in metrics.items()}
    return Artifact(case, run_id, status, {}, {1: Phase(1, series, int(steps[0]), int(steps[-1]))})


def noisy_runs(n: int = 5, rel_noise: float = 1e-3) -> list[Artifact]:
    rng = np.random.default_rng(7)
    return [artifact(f"r{i}", {"lm loss": LOSS * (1 + rel_noise * rng.standard_normal(LOSS.size))})
            for i in range(n)]


def policies_from(text: str):
    return build_policies(document=yaml.safe_load(text), document_source="policy.yaml")


def judge(policies, metric: str, golden: np.ndarray, actual: np.ndarray, exact: bool = False):
    policy = policies.base_for(metric)
    return compare_metric(metric, MetricSeries(metric, STEPS, golden), MetricSeries(metric, STEPS, actual),
                          policy, Context(phase=1, exact=exact, same_platform=True))


# ---------------------------------------------------------------- spread

def test_per_step_statistics_and_raw_samples():
    runs = [artifact("a", {"lm loss": np.array([10.0, 9.0])}, np.array([1, 2])),
            artifact("b", {"lm loss": np.array([10.2, 9.5])}, np.array([1, 2])),
            artifact("c", {"lm loss": np.array([9.8])}, np.array([1]))]  # stopped early
    (sp,) = spread(runs)
    assert sp.steps.tolist() == [1, 2] and sp.count.tolist() == [3, 2]
    assert sp.min.tolist() == [9.8, 9.0] and sp.max.tolist() == [10.2, 9.5]
    assert sp.mean[0] == pytest.approx(10.0, abs=1e-15) and sp.mean[1] == 9.25
    assert sp.std[0] == pytest.approx(0.2, rel=1e-12)              # sample std, ddof 1
    assert sp.std[1] == pytest.approx(math.sqrt(0.125), rel=1e-12)  # (0.25² + 0.25²)/1
    assert sp.median.tolist() == [10.0, 9.25]
    assert np.isnan(sp.samples[2, 1])
    frame = sp.frame()
    assert list(frame.columns[-3:]) == ["run:a", "run:b", "run:c"]
    assert frame["run:b"].tolist() == [10.2, 9.5]


def test_stats_refuse_bad_run_sets():
    one = artifact("a", {"lm loss": LOSS})
    with pytest.raises(GoldenError, match="at least 2 runs"):
        spread([one])
    with pytest.raises(GoldenError, match="different cases"):
        spread([one, artifact("b", {"lm loss": LOSS}, case="other")])
    with pytest.raises(GoldenError, match="is failed"):
        spread([one, artifact("b", {"lm loss": LOSS}, status="failed")])
    with pytest.raises(GoldenError, match="given twice"):
        spread([one, one])


# ---------------------------------------------------------------- recommendations by hand

def test_t_interval_matches_a_hand_computation():
    runs = [artifact(r, {"lm loss": np.array([v])}, np.array([1])) for r, v in (("a", 10.0), ("b", 10.2), ("c", 9.8))]
    (rec,) = recommend_all(spread(runs), preset("default"))
    s = 0.2  # sample std of 9.8, 10.0, 10.2
    assert rec.method == "t_interval" and rec.n_runs == 3
    assert rec.policy["rtol"] == pytest.approx(T_995_2 * s * math.sqrt(2) / 10.0, rel=1e-9)  # 0.28072
    assert rec.policy["atol"] == 0.0
    half = T_995_2 * s * math.sqrt(1 + 1 / 3)  # 2.29204
    assert rec.band.lower[0] == pytest.approx(10.0 - half, rel=1e-9)
    assert rec.band.upper[0] == pytest.approx(10.0 + half, rel=1e-9)
    assert any("t(0.995, N−1)·s·√(1 + 1/N)" in line for line in rec.formula)
    assert any("t(0.995, 2) = 9.92484" in line for line in rec.worked)


def test_iqr_rule_for_counts_matches_a_hand_computation():
    values = (100.0, 104.0, 110.0, 120.0)
    runs = [artifact(f"r{i}", {"num-zeros": np.array([v])}, np.array([1])) for i, v in enumerate(values)]
    (rec,) = recommend_all(spread(runs), preset("default"))
    # linear quantiles: Q1 = 103, Q3 = 112.5, IQR = 9.5 → fences [88.75, 126.75]; median 107
    assert rec.method == "iqr"
    assert (rec.band.lower[0], rec.band.upper[0]) == (88.75, 126.75)
    assert rec.policy == {"rtol": pytest.approx((126.75 - 107.0) / 107.0, rel=1e-12), "atol": 1.0}


def test_identical_counts_keep_a_one_count_band():
    runs = [artifact(f"r{i}", {"num-zeros": np.array([500.0])}, np.array([1])) for i in range(3)]
    (rec,) = recommend_all(spread(runs), preset("default"))
    assert (rec.band.lower[0], rec.band.upper[0]) == (499.0, 501.0)


def test_one_sided_log_normal_for_step_time_matches_a_hand_computation():
    # Default kind for iteration-time: median over the steps after the first 2, slower is bad.
    times = {"a": [9.0, 9.0, 0.50, 0.50, 0.50], "b": [9.0, 9.0, 0.52, 0.52, 0.52], "c": [9.0, 9.0, 0.55, 0.55, 0.55]}
    steps = np.arange(1, 6)
    runs = [artifact(r, {"iteration-time": np.array(v)}, steps) for r, v in times.items()]
    (rec,) = recommend_all(spread(runs), preset("default"))
    logs = np.log([0.50, 0.52, 0.55])
    s_log = math.sqrt(sum((x - logs.mean()) ** 2 for x in logs) / 2)
    assert rec.method == "one_sided" and rec.band is None
    assert rec.policy == {"rtol": pytest.approx(math.exp(T_995_2 * s_log * math.sqrt(2)) - 1, rel=1e-9)}
    assert any("0.5, 0.52, 0.55" in line for line in rec.worked)  # warm-up steps (9.0) excluded


# ---------------------------------------------------------------- the band check

@pytest.fixture(scope="module")
def band_policies():
    runs = noisy_runs()
    text = render_policy_yaml(recommend_all(spread(runs), preset("default")), case="tiny",
                              run_ids=[r.run_id for r in runs], with_band=True, base_policies=preset("default"))
    return policies_from(text)


def test_an_unmodified_run_passes_the_band(band_policies):
    fresh = LOSS * (1 + 1e-3 * np.random.default_rng(99).standard_normal(LOSS.size))  # a new seed
    verdict = judge(band_policies, "lm loss", golden=LOSS, actual=fresh)
    assert verdict.verdict == "pass", verdict.explanation
    assert verdict.total_steps == 40 and verdict.failing_steps == 0
    assert verdict.rule.mode == "band"


def test_a_one_percent_loss_drift_fails_the_band(band_policies):
    verdict = judge(band_policies, "lm loss", golden=LOSS, actual=LOSS * 1.01)
    assert verdict.verdict == "fail"
    assert verdict.failing_steps == 40
    assert "outside the band" in verdict.explanation


def test_band_deterministic_metric_is_exact_when_fingerprints_match(band_policies):
    verdict = judge(band_policies, "lm loss", golden=LOSS, actual=np.nextafter(LOSS, np.inf), exact=True)
    assert verdict.verdict == "fail" and verdict.rule.mode == "exact"


def test_zero_spread_does_not_disable_the_check():
    runs = [artifact(f"r{i}", {"lm loss": LOSS.copy()}) for i in range(3)]  # bit-identical runs
    recs = recommend_all(spread(runs), preset("default"))
    (rec,) = recs
    floor = 4 * EPS32 * np.abs(LOSS)
    assert np.allclose(rec.band.upper - LOSS, floor, rtol=1e-6) and np.all(rec.band.upper > LOSS)
    assert np.allclose(LOSS - rec.band.lower, floor, rtol=1e-6) and np.all(rec.band.lower < LOSS)
    assert rec.policy["rtol"] == pytest.approx(4 * EPS32, rel=1e-12) and rec.policy["rtol"] > 0

    for with_band in (True, False):
        text = render_policy_yaml(recs, case="tiny", run_ids=["r0", "r1", "r2"], with_band=with_band,
                                  base_policies=preset("default"))
        policies = policies_from(text)
        assert judge(policies, "lm loss", LOSS, LOSS).verdict == "pass"
        drifted = judge(policies, "lm loss", LOSS, LOSS * 1.01)
        assert drifted.verdict == "fail" and drifted.failing_steps == 40
        tiny_drift = judge(policies, "lm loss", LOSS, LOSS * (1 + 1e-5))
        assert tiny_drift.verdict == "fail"


def test_band_direction_and_failing_step_allowance():
    band = {"steps": [1, 2, 3, 4], "lower": [1.0, 1.0, 1.0, None], "upper": [2.0, 2.0, 2.0, 2.0]}
    doc = {"metrics": {"t": {"mode": "band", "band": band, "direction": "increase_is_bad",
                             "max_failing_steps": 1}}}
    policies = build_policies(document=doc)
    golden = MetricSeries("t", np.array([1, 2, 3, 4]), np.array([1.5, 1.5, 1.5, 1.5]))

    def run(values):
        return compare_metric("t", golden, MetricSeries("t", np.array([1, 2, 3, 4]), np.array(values)),
                              policies.base_for("t"), Context(phase=1, exact=False, same_platform=True))

    assert run([0.1, 0.1, 0.1, 0.1]).verdict == "pass"     # below the band: fine when only slower is bad
    one_over = run([2.5, 1.5, 1.5, 1.5])
    assert one_over.verdict == "pass" and one_over.failing_steps == 1  # 1 allowed
    two_over = run([2.5, 1.5, 2.01, 1.5])
    assert two_over.verdict == "fail" and two_over.failing_steps == 2 and two_over.worst_step == 1
    missing = compare_metric("t", golden, MetricSeries("t", np.array([1, 2]), np.array([1.5, 1.5])),
                             policies.base_for("t"), Context(phase=1, exact=False, same_platform=True))
    assert missing.verdict == "fail" and missing.failing_steps == 2  # steps 3 and 4 missing


@pytest.mark.parametrize("band, message", [
    ({"steps": [1, 2], "lower": [1.0], "upper": [2.0, 2.0]}, "as long as steps"),
    ({"steps": [2, 1], "lower": [1.0, 1.0], "upper": [2.0, 2.0]}, "strictly increasing"),
    ({"steps": [1], "lower": [3.0], "upper": [2.0]}, "lower 3.0 > upper 2.0"),
    ({"steps": [1], "lower": ["x"], "upper": [2.0]}, "finite number or null"),
    ({"steps": [1], "upper": [2.0]}, "missing 'lower'"),
])
def test_malformed_band_is_a_policy_error(band, message):
    with pytest.raises(PolicyError, match=message):
        build_policies(document={"metrics": {"lm loss": {"mode": "band", "band": band}}})


def test_a_band_policy_without_its_band_is_a_policy_error():
    with pytest.raises(PolicyError, match=r"metrics\['lm loss'\]: key 'band': mode 'band' needs it"):
        build_policies(document={"metrics": {"lm loss": {"mode": "band", "direction": "increase_is_bad"}}})


def test_policy_document_without_band_only_adjusts_the_kind():
    runs = noisy_runs(3)
    recs = recommend_all(spread(runs), preset("default"))
    doc = policy_document(recs)
    assert set(doc["metrics"]["lm loss"]) == {"rtol", "atol"}
    policy = build_policies(document=doc).base_for("lm loss")
    assert policy.mode == "approx" and policy.deterministic  # the loss kind's other keys survive
    assert policy.rtol == recs[0].policy["rtol"]


# ---------------------------------------------------------------- history-aware timing

def timing(values: list[float]) -> MetricSeries:
    return MetricSeries("iteration-time", np.arange(1, len(values) + 1), np.array(values))


def test_history_check_once_five_samples_with_a_hand_computed_bound():
    history = [timing([5.0, v, v, v]) for v in (0.50, 0.51, 0.49, 0.50, 0.52)]
    logs = np.log([0.50, 0.51, 0.49, 0.50, 0.52])
    s_log = float(np.std(logs, ddof=1))
    bound = math.exp(logs.mean() + T_995_4 * s_log * math.sqrt(1 + 1 / 5))
    ok = history_timing_check(timing([5.0, 0.51, 0.51, 0.51]), history, skip_warmup=1)
    assert ok.method == "history" and ok.passed and ok.n_history == 5
    assert ok.bound == pytest.approx(bound, rel=1e-12)
    slow = history_timing_check(timing([5.0, 0.60, 0.60, 0.60]), history, skip_warmup=1)
    assert not slow.passed and "history of 5" in slow.text
    faster = history_timing_check(timing([5.0, 0.30, 0.30, 0.30]), history, skip_warmup=1)
    assert faster.passed  # one-sided: faster is never a failure


def test_history_below_five_samples_falls_back_to_rtol_against_the_golden():
    history = [timing([0.5, 0.5]) for _ in range(4)]
    golden = timing([0.40, 0.40])
    check = history_timing_check(timing([0.45, 0.45]), history, golden, rtol=0.10)
    assert check.method == "rtol" and not check.passed
    assert check.bound == pytest.approx(0.44, rel=1e-12) and "4 < 5" in check.text
    assert history_timing_check(timing([0.43, 0.43]), history, golden, rtol=0.10).passed


def test_identical_history_still_checks():
    history = [timing([0.5, 0.5]) for _ in range(6)]
    check = history_timing_check(timing([0.5, 0.5]), history)
    assert check.passed and check.bound > 0.5
    assert not history_timing_check(timing([0.5001, 0.5001]), history).passed


def test_timing_check_needs_a_reference():
    with pytest.raises(GoldenError, match="no golden and no history"):
        history_timing_check(timing([0.5]), [])


# ---------------------------------------------------------------- CLI

def write_runs(tmp_path, runs):
    paths = []
    for run in runs:
        path = tmp_path / f"{run.run_id}.json"
        path.write_text(dumps_artifact(run))
        paths.append(str(path))
    return paths


def test_cli_stats_writes_a_reviewable_policy_and_table(tmp_path):
    runs = noisy_runs(3)
    for run in runs:  # add a count and a step time to every run
        ph = run.phases[1]
        ph.metrics["num-zeros"] = MetricSeries("num-zeros", STEPS, np.full(STEPS.size, 1000.0))
        ph.metrics["iteration-time"] = MetricSeries("iteration-time", STEPS, np.full(STEPS.size, 0.5))
    paths = write_runs(tmp_path, runs)
    out, table = tmp_path / "policy.yaml", tmp_path / "stats.csv"
    result = CliRunner().invoke(app, ["stats", *paths, "--out", str(out), "--table", str(table), "--band"])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "t(0.995, N−1)·s·√(1 + 1/N)" in text and "Q1 − 1.5·IQR" in text and "log-normal" in text
    policies = policies_from(text)
    assert policies.base_for("lm loss").mode == "band"
    assert policies.base_for("num-zeros").mode == "band" and policies.base_for("num-zeros").integer
    assert policies.base_for("iteration-time").mode == "summary"
    rows = table.read_text().splitlines()
    assert rows[0].startswith("phase,metric,step,n,min,max,mean,std,median,run:r0")
    assert len(rows) == 1 + 3 * 40


def test_cli_stats_one_run_is_exit_2(tmp_path):
    paths = write_runs(tmp_path, noisy_runs(1))
    result = CliRunner().invoke(app, ["stats", *paths])
    assert result.exit_code == 2 and result.output.strip() == "error: stats need at least 2 runs, got 1"


def test_cli_stats_folder_as_an_output_is_exit_2_and_writes_nothing(tmp_path):
    paths = write_runs(tmp_path, noisy_runs(2))
    folder, table = tmp_path / "out", tmp_path / "stats.csv"
    folder.mkdir()
    for args in (["--out", str(folder), "--table", str(table)], ["--table", str(folder)]):
        result = CliRunner().invoke(app, ["stats", *paths, *args])
        assert result.exit_code == 2, result.output
        assert result.output.strip() == f"error: cannot write {folder}: it is a directory"
    assert list(folder.iterdir()) == [] and not table.exists()


def test_a_metric_only_one_run_logged_gets_no_recommendation_but_the_others_do():
    runs = noisy_runs(3)
    runs[0].phases[1].metrics["grad-norm"] = MetricSeries("grad-norm", STEPS, np.ones(STEPS.size))
    recs = {r.metric: r for r in recommend_all(spread(runs), preset("default"))}
    assert recs["grad-norm"].method == "unmeasured"
    assert "no step has values from two runs" in recs["grad-norm"].worked[0]
    assert recs["lm loss"].method == "t_interval"
    text = render_policy_yaml(tuple(recs.values()), case="tiny", run_ids=["r0", "r1", "r2"])
    assert list(yaml.safe_load(text)["metrics"]) == ["lm loss"]
    assert "# --- grad-norm" in text


def test_hostile_metric_names_cannot_inject_policy_keys():
    hostile = "x\nfallback: {mode: exact}\n#"
    runs = [artifact(r, {hostile: LOSS * f}) for r, f in (("a", 1.0), ("b", 1.001), ("c", 0.999))]
    text = render_policy_yaml(recommend_all(spread(runs), preset("default")), case="tiny", run_ids=["a", "b", "c"])
    doc = yaml.safe_load(text)
    assert set(doc) == {"preset", "metrics"} and list(doc["metrics"]) == [hostile]
    assert build_policies(document=doc).base_for(hostile).rtol > 0
