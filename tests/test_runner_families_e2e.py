"""The families end to end (slow): a family case's `golden check` against its committed golden
(bit-exact on this fingerprint), and data parallelism kept in the shrink with a bit-exact resume."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from goldens.cli.extras import missing_reason
from goldens.files.formats.artifact import read_artifact

if missing_reason("runner"):
    pytest.skip(missing_reason("runner"), allow_module_level=True)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
STORE = REPO / "cases"


def test_a_t5_case_checks_against_its_committed_golden(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "goldens", "check", "t5_mcore_tp1_pp1_vp1_resume_torch", "--store",
                           str(STORE), "--out", str(run_dir), "--format", "json"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    artifact = read_artifact(run_dir)
    assert artifact.provenance["model_args"]["model"]["family"] == "t5"
    assert '"exact"' in proc.stdout  # the regime: fingerprints equal, every deterministic step bit-equal


def test_data_parallelism_is_kept_and_the_resume_stays_bit_exact(tmp_path):
    """The GPT family case's Megatron folder in its cpu-tiny-dp profile: TP1 × PP2 × DP2 on 4 ranks,
    gradients all-reduced and losses averaged over the two replicas; phase 2 equals phase 1."""
    from runner.config import megatron_case_definition
    from runner.launch import RunOptions, run_case

    cfg = megatron_case_definition(STORE / "gpt3_mcore_tp1_pp2_resume_torch_dist").run_config("cpu-tiny-dp")
    assert (cfg.parallelism.data_parallel_size, cfg.parallelism.world_size) == (2, 4)
    report = run_case(cfg, RunOptions(run_dir=tmp_path / "run"))
    artifact = report.artifact
    assert artifact.status == "complete" and artifact.provenance["dp"] == 2
    first, second = artifact.phases[1].metrics, artifact.phases[2].metrics
    for name in ("lm loss", "num-zeros"):
        ran = dict(zip(first[name].steps.tolist(), first[name].values.tolist(), strict=True))
        assert {s: ran[s] for s in second[name].steps.tolist()} == dict(
            zip(second[name].steps.tolist(), second[name].values.tolist(), strict=True)), name
