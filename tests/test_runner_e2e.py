"""End to end on real megatron-core: one `golden check` run shared by most tests, plus a few
short runs for the resume variants and the failure paths (each is a real multi-process run)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from goldens.cli.extras import missing_reason

if missing_reason("runner"):
    pytest.skip(missing_reason("runner"), allow_module_level=True)


from goldens.core.errors import RunError
from goldens.files.formats.artifact import read_artifact
from runner.config import load_case_definition
from runner.launch import RunOptions, RunReport, run_case
from runner.plan import TRACKER_FILE
from runner.provenance import fingerprint
from runner.status import read_states
from tests.builders import leftover_processes

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
CASE = "bert_mcore_tp2_pp2_resume_torch_dist_local_spec"
STORE = REPO / "cases"
DETERMINISTIC = ("lm loss", "sop loss", "num-zeros")
SHORT = {"schedule": {"train_iters": 4, "save_interval": 2}}



@pytest.fixture(scope="session")
def checked(tmp_path_factory):
    """The main job, for real: `golden check CASE` against the committed cpu-tiny golden."""
    work = tmp_path_factory.mktemp("check")
    run_dir = work / "run"
    proc = subprocess.run([sys.executable, "-m", "goldens", "check", CASE, "--store", str(STORE), "--out",
                           str(run_dir), "--format", "json"], cwd=work, capture_output=True, text=True, timeout=900)
    if not (run_dir / "artifact.json").is_file():
        pytest.fail(f"golden check wrote no artifact: {proc.stderr[-2000:]}")
    return SimpleNamespace(proc=proc, run_dir=run_dir, artifact=read_artifact(run_dir))


@pytest.fixture(scope="session")
def cfg():
    return load_case_definition(STORE / CASE).run_config()


def test_golden_check_passes_against_the_committed_golden(checked):
    assert checked.proc.returncode == 0, checked.proc.stdout[-3000:] + checked.proc.stderr[-2000:]
    result = json.loads(checked.proc.stdout)
    assert result["verdict"] == "pass"
    assert result["resume"]["verdict"] == "pass"
    assert "phase 1 step 20/20 lm loss" in checked.proc.stderr  # progress, plain lines off a terminal
    assert not leftover_processes(checked.run_dir.resolve())


def test_golden_check_keeps_its_result_and_reports_beside_the_run(checked):
    saved = json.loads((checked.run_dir / "result.json").read_text())
    assert saved["verdict"] == "pass" and saved["case"] == CASE
    # each phase names the golden file it was judged against (Megatron's _2nd file for phase 2)
    references = {p["phase"]: p["reference"] for p in saved["phases"]}
    assert references[1].endswith("golden_values_dev_cpu.json")
    assert references[2].endswith("golden_values_dev_cpu_2nd.json")
    report = checked.run_dir / "report"
    assert sorted(p.name for p in report.iterdir()) == ["junit.xml", "report.html", "report.json", "report.md"]
    assert "lm loss" in (report / "report.md").read_text()


def test_artifact_schema_and_provenance(checked):
    artifact = checked.artifact
    assert (artifact.case, artifact.status, artifact.error) == (CASE, "complete", None)
    one, two = artifact.phases[1], artifact.phases[2]
    assert (one.first_step, one.last_step, one.resumed_from) == (1, 20, None)
    assert (two.first_step, two.last_step, two.resumed_from) == (11, 20, 10)
    for phase, steps in ((one, list(range(1, 21))), (two, list(range(11, 21)))):
        assert list(phase.metrics) == ["lm loss", "sop loss", "num-zeros", "iteration-time", "cpu-max-rss-anon-bytes"]
        for name, series in phase.metrics.items():
            # Megatron's iteration-time: not logged at a process's first step (goldens start at 2, and 12)
            expected = steps[1:] if name == "iteration-time" else steps
            assert series.steps.tolist() == expected and np.isfinite(series.values).all(), name
        assert phase.metrics["iteration-time"].start_step == steps[1]
    prov = artifact.provenance
    datetime.fromisoformat(prov["created"])
    assert (prov["device"], prov["platform"], prov["world_size"], prov["tp"], prov["pp"], prov["dp"],
            prov["seed"], prov["profile"]) == ("cpu", "cpu", 4, 2, 2, 1, 1234, "cpu-tiny")
    assert set(prov["versions"]) == {"python", "torch", "megatron-core", "goldens"}
    assert prov["versions"]["megatron-core"] == "0.16.1"
    assert prov["host"] and "commit" in prov["git"] and prov["launcher"] == "fork"
    assert prov["model_args"]["model"]["num_layers"] == 4
    fields = prov["fingerprint_fields"]
    assert prov["fingerprint"] == fingerprint(fields)
    assert fields["device"]["type"] == "cpu" and fields["device"]["model"]
    assert "torch_cpu_capability" in fields["device"]
    assert fields["layout"] == {"world_size": 4, "tp": 2, "pp": 2, "dp": 1, "backend": "gloo", "nnodes": 1}
    assert fields["threads"]["torch_intra_op"] == 1
    assert set(fields) == {"device", "versions", "blas", "layout", "threads", "determinism", "kernels"}
    # --deterministic-mode as Megatron-LM applies it, torch.use_deterministic_algorithms included
    assert fields["determinism"] == {"deterministic_mode": True, "deterministic_algorithms": True, "env": {}}
    assert not any(choice["used"] for name, choice in fields["kernels"].items() if name != "jit_warmup")
    assert fields["kernels"]["jit_warmup"] == "not run: CPU"
    # every model_config.yaml entry of the seed, and what became of it
    entries = prov["megatron_case"]["entries"]
    assert entries["--ckpt-format"]["target"] == "checkpoint.format" and entries["--data-path"]["outcome"] == "waived"
    assert prov["megatron_case"]["source"].endswith(f"{CASE}/model_config.yaml") and prov["test_type"] == "ckpt-resume"
    memory = one.metrics["cpu-max-rss-anon-bytes"].values
    assert (np.diff(memory) >= 0).all() and 50e6 < memory[0] < 2e9  # a running peak, in bytes
    timings = prov["timings"]
    assert {"wall_s", "save_s", "steps_s"} <= set(timings["phase1"])
    assert {"wall_s", "load_s", "steps_s"} <= set(timings["phase2"])


def test_resumed_phase_is_bit_identical_to_the_uninterrupted_one(checked):
    one, two = checked.artifact.phases[1], checked.artifact.phases[2]
    for name in DETERMINISTIC:
        overlap = one.metrics[name].values[10:]
        assert two.metrics[name].values.tobytes() == overlap.tobytes(), name


def test_loss_visibly_falls(checked):
    loss = checked.artifact.phases[1].metrics["lm loss"].values
    assert loss[0] > 6.5  # ln(1024) ≈ 6.93: near-uniform at the start
    assert loss[-5:].mean() < loss[:5].mean() - 0.3


def test_tensorboard_events_carry_megatrons_tags(checked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    events = EventAccumulator(str(checked.run_dir / "tensorboard" / "phase1"), size_guidance={"tensors": 0})
    events.Reload()
    tags = set(events.Tags()["tensors"])  # scalars written as float64 tensors
    assert {"lm loss", "sop loss", "num-zeros", "iteration-time", "cpu-max-rss-anon-bytes", "grad-norm",
            "learning-rate"} <= tags
    logged = [(e.step, float(make_ndarray(e.tensor_proto))) for e in events.Tensors("lm loss")]
    series = checked.artifact.phases[1].metrics["lm loss"]
    assert [s for s, _ in logged] == series.steps.tolist()
    assert [v for _, v in logged] == series.values.tolist()  # float64 tensors: the exact logged values


def test_checkpoint_is_megatrons_legacy_layout_committed_and_every_rank_finished(checked):
    import megatron.core  # noqa: F401 - registers Namespace & co. as safe globals for weights_only loads
    import torch

    root = checked.run_dir / "checkpoints"
    assert (root / TRACKER_FILE).read_text() == "10"  # as Megatron writes it: the number, no newline
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert files == sorted([TRACKER_FILE] + [f"iter_0000010/mp_rank_{tp:02d}_{pp:03d}/model_optim_rng.pt"
                                             for tp in (0, 1) for pp in (0, 1)])
    state = torch.load(root / "iter_0000010" / "mp_rank_01_001" / "model_optim_rng.pt", weights_only=True)
    assert set(state) == {"args", "checkpoint_version", "iteration", "model", "optimizer", "opt_param_scheduler",
                          "rng_state"}
    assert (state["checkpoint_version"], state["iteration"]) == (3.0, 10)
    args = state["args"]
    assert (args.consumed_train_samples, args.iteration, args.ckpt_format) == (80, 10, "torch")  # 10 steps × 8
    assert (args.tensor_model_parallel_size, args.pipeline_model_parallel_size, args.num_layers) == (2, 2, 4)
    assert args.golden_training_hash == load_case_definition(STORE / CASE).run_config().training_hash()
    assert "output_layer.weight" in state["model"] and "lm_head.dense.weight" in state["model"]  # the last stage
    assert state["opt_param_scheduler"]["num_steps"] == 80
    assert isinstance(state["rng_state"], list) and set(state["rng_state"][0]) == {
        "random_rng_state", "np_rng_state", "torch_rng_state", "rng_tracker_states"}
    for phase in (1, 2):
        states = read_states(checked.run_dir / "logs" / f"phase{phase}")
        assert sorted(states) == [0, 1, 2, 3] and {s.state for s in states.values()} == {"done"}


MEGATRON_LM_GIT = Path(os.environ.get("GOLDEN_MEGATRON_LM_GIT", "/work/.mirror/NVIDIA+Megatron-LM/repo"))
MEGATRON_FIELDS = REPO / "tests" / "data" / "megatron_checkpoint_args.json"


def _resuming_run_args(cfg) -> dict:
    """The Megatron arguments the resuming run has: what check_checkpoint_args compares."""
    m, par = cfg.model, cfg.parallelism
    return {"num_layers": m.num_layers, "hidden_size": m.hidden_size, "num_attention_heads": m.num_attention_heads,
            "add_position_embedding": True, "max_position_embeddings": m.max_position_embeddings,
            "make_vocab_size_divisible_by": m.make_vocab_size_divisible_by,
            "padded_vocab_size": cfg.padded_vocab_size, "tokenizer_type": "GoldenCorpusTokenizer",
            "tensor_model_parallel_size": par.tensor_model_parallel_size,
            "pipeline_model_parallel_size": par.pipeline_model_parallel_size}


def test_the_saved_checkpoint_carries_every_field_megatrons_loader_reads(checked):
    import megatron.core  # noqa: F401 - registers Namespace & co. as safe globals for weights_only loads
    import torch

    fields = json.loads(MEGATRON_FIELDS.read_text())["fields"]
    state = torch.load(checked.run_dir / "checkpoints" / "iter_0000010" / "mp_rank_00_000" / "model_optim_rng.pt",
                       weights_only=True)
    missing = [name for name, how in fields.items()
               if (how["below_version"] is None or state["checkpoint_version"] < how["below_version"])
               and not hasattr(state["args"], name)]
    assert not missing


@pytest.mark.skipif(not MEGATRON_LM_GIT.exists(),
                    reason=f"no Megatron-LM mirror at {MEGATRON_LM_GIT} (set GOLDEN_MEGATRON_LM_GIT)")
def test_megatrons_own_loader_loads_our_checkpoint(checked, cfg):
    commit = json.loads(MEGATRON_FIELDS.read_text())["megatron_lm_commit"]
    tool = [sys.executable, str(REPO / "tools" / "megatron_load_check.py"), str(MEGATRON_LM_GIT),
            str(checked.run_dir / "checkpoints")]
    run_args = _resuming_run_args(cfg)
    proc = subprocess.run([*tool, json.dumps(run_args), "--commit", commit], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    read = json.loads(proc.stdout.splitlines()[-1])
    assert read["tracker"] == [10, False] and read["check_checkpoint_args"] == "passed"
    assert sorted(read["rank_files"]) == [f"iter_0000010/mp_rank_{tp:02d}_{pp:03d}/model_optim_rng.pt"
                                          for tp in (0, 1) for pp in (0, 1)]
    assert read["load_checkpoint_reads"]["consumed_train_samples"] == 80
    rebuilt = read["args_from_checkpoint"]  # what load_args_from_checkpoint set: the model Megatron would build
    m = cfg.model
    assert (rebuilt["num_layers"], rebuilt["hidden_size"], rebuilt["ffn_hidden_size"], rebuilt["seq_length"],
            rebuilt["num_attention_heads"], rebuilt["padded_vocab_size"], rebuilt["ckpt_format"]) == (
        m.num_layers, m.hidden_size, 4 * m.hidden_size, m.seq_length, m.num_attention_heads,
        cfg.padded_vocab_size, "torch")
    # and Megatron's comparison does refuse a run of another shape
    other = subprocess.run([*tool, json.dumps({**run_args, "num_layers": m.num_layers + 1}), "--commit", commit],
                           capture_output=True, text=True, timeout=600)
    assert other.returncode == 1 and "num_layers value from checkpoint" in other.stderr


def _perturbed_store(tmp_path: Path, factor: float) -> Path:
    """A copy of the case (no history) whose phase-1 golden lm loss at step 15 is scaled."""
    store = tmp_path / "store"
    case_dir = store / CASE
    case_dir.mkdir(parents=True)
    for name in ("case.yaml", "model_config.yaml", "golden_values_dev_cpu.json", "golden_values_dev_cpu_2nd.json"):
        shutil.copy(STORE / CASE / name, case_dir / name)
    path = case_dir / "golden_values_dev_cpu.json"
    doc = json.loads(path.read_text())
    doc["lm loss"]["values"]["15"] *= factor
    path.write_text(json.dumps(doc, indent=4))
    return store


def judge(artifact, store_root):
    """The artifact against the store's dev/cpu golden, as golden check judges it (nothing staged)."""
    from goldens.inputs import load_artifact_side
    from goldens.store import GoldenStore
    from goldens.workflow.judge import judge_run

    return judge_run(GoldenStore(store_root), load_artifact_side(artifact), env="dev", platform="cpu",
                     stage=False).result


def test_a_perturbed_golden_fails_with_the_step_named(checked, tmp_path):
    result = judge(checked.artifact, _perturbed_store(tmp_path, 1.1))
    assert result.exit_code == 1
    failing = [v for v in result.failures() if not v.passed]
    assert [(v.phase, v.metric, v.worst_step) for v in failing] == [(1, "lm loss", 15)]
    assert "15" in failing[0].explanation
    assert result.resume.passed  # the resume check is its own verdict and still passes


def test_golden_check_cli_exits_1_on_a_difference(checked, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from goldens.cli import app
    from goldens.cli import run as run_command

    run_dir = tmp_path / "run"
    shutil.copytree(checked.run_dir, run_dir, ignore=shutil.ignore_patterns("checkpoints", "data"))
    report = RunReport(artifact=read_artifact(run_dir), artifact_path=run_dir / "artifact.json", outcomes=())
    monkeypatch.setattr(run_command, "execute", lambda **_: report)
    monkeypatch.delenv("CI", raising=False)
    store = _perturbed_store(tmp_path, 1.1)
    result = CliRunner().invoke(app, ["check", CASE, "--store", str(store), "--format", "json"])
    assert result.exit_code == 1, result.output
    assert '"verdict": "fail"' in result.output
    assert json.loads((run_dir / "result.json").read_text())["verdict"] == "fail"
    assert "<failure" in (run_dir / "report" / "junit.xml").read_text()
    # outside CI the failing run is staged for `golden review`
    pending = json.loads((store / ".pending" / CASE / "dev_cpu.json").read_text())
    assert pending["run_id"] == checked.artifact.run_id


def test_resume_without_optimizer_state_fails_the_resume_check(checked, cfg, tmp_path):
    report = run_case(cfg, RunOptions(run_dir=tmp_path / "no-opt", reuse_phase1_from=checked.run_dir,
                                      load_optimizer=False))
    one, two = report.artifact.phases[1], report.artifact.phases[2]
    loss1, loss2 = one.metrics["lm loss"].values, two.metrics["lm loss"].values
    assert loss2[0] == loss1[10]  # step 11's forward uses the loaded weights: equal
    assert loss2[1] != loss1[11]  # its update used fresh Adam moments: from step 12 on they differ
    result = judge(report.artifact, STORE)
    assert result.exit_code == 1
    assert not result.resume.passed
    assert "diverges" in result.resume.explanation and "lm loss" in result.resume.explanation


def test_torchrun_launcher_resumes_bit_identically(checked, cfg, tmp_path):
    run_dir = tmp_path / "torchrun"
    report = run_case(cfg, RunOptions(run_dir=run_dir, launcher="torchrun", reuse_phase1_from=checked.run_dir))
    assert (run_dir / "logs" / "phase2" / "torchrun.log").is_file()
    for name in DETERMINISTIC:
        assert report.artifact.phases[2].metrics[name].values.tobytes() == \
            checked.artifact.phases[2].metrics[name].values.tobytes(), name
    assert not leftover_processes(run_dir.resolve())


# ---------------------------------------------------------------- failure paths

def _failing_run(cfg, run_dir: Path, **options) -> str:
    with pytest.raises(RunError) as err:
        run_case(cfg, RunOptions(run_dir=run_dir, **options))
    assert not leftover_processes(run_dir.resolve())
    return str(err.value)


def test_a_killed_rank_stops_the_phase_under_torchrun(cfg, tmp_path):
    run_dir = tmp_path / "killed"
    message = _failing_run(cfg.replace(**SHORT), run_dir, launcher="torchrun",
                           env={"GOLDEN_RUNNER_FAULT": "1:2:step2:kill"})
    assert message.startswith("rank 2 died in phase 1 while training after step 2 (SIGKILL)")
    artifact = read_artifact(run_dir)
    assert artifact.status == "failed" and artifact.error.startswith("rank 2 died in phase 1")
    assert 2 not in artifact.phases and artifact.phases[1].metrics["lm loss"].steps.tolist() == [1, 2]
    assert not artifact.approvable


def test_a_save_interrupted_half_way_is_never_resumed(cfg, tmp_path):
    short = cfg.replace(**SHORT)
    run_dir = tmp_path / "torn"
    message = _failing_run(short, run_dir, launcher="fork", env={"GOLDEN_RUNNER_FAULT": "1:1:save:kill"})
    assert message.startswith("rank 1 died in phase 1 while saving after step 2 (SIGKILL)")
    assert read_artifact(run_dir).status == "failed"
    assert (run_dir / "checkpoints" / "iter_0000002").is_dir()
    assert not (run_dir / "checkpoints" / TRACKER_FILE).exists()  # the save never committed
    again = tmp_path / "resume-torn"
    message = _failing_run(short, again, reuse_phase1_from=run_dir)
    assert "interrupted save" in message
    assert not (again / "logs" / "phase2").exists()  # refused before any process started
    assert read_artifact(again).status == "failed"


def _phase1_copy(checked, tmp_path: Path) -> Path:
    source = tmp_path / "source"
    for part in ("logs/phase1", "checkpoints", "data"):
        shutil.copytree(checked.run_dir / part, source / part)
    return source


def _rewrite_legacy_args(source: Path, **changes) -> None:
    """Change fields of ``args`` in every rank's legacy checkpoint file."""
    import megatron.core  # noqa: F401 - safe globals
    import torch

    for path in (source / "checkpoints" / "iter_0000010").glob("mp_rank_*/model_optim_rng.pt"):
        state = torch.load(path, weights_only=True)
        vars(state["args"]).update(changes)
        torch.save(state, path)


def test_a_corrupt_checkpoint_fails_phase_two_on_load(checked, cfg, tmp_path):
    source = _phase1_copy(checked, tmp_path)
    shard = source / "checkpoints" / "iter_0000010" / "mp_rank_01_000" / "model_optim_rng.pt"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    run_dir = tmp_path / "corrupt"
    message = _failing_run(cfg, run_dir, reuse_phase1_from=source)
    assert message.startswith("rank 1 failed in phase 2 while loading: cannot load checkpoint ")
    assert "mp_rank_01_000/model_optim_rng.pt" in message
    artifact = read_artifact(run_dir)
    assert artifact.status == "failed" and list(artifact.phases) == [1]


def test_a_checkpoint_of_another_configuration_is_refused(checked, cfg, tmp_path):
    source = _phase1_copy(checked, tmp_path)
    _rewrite_legacy_args(source, golden_training_hash="sha256:" + "0" * 64)
    message = _failing_run(cfg, tmp_path / "other", reuse_phase1_from=source)
    assert "was saved by another training configuration (hash sha256:0000" in message
    assert f"this run's is {cfg.training_hash()}" in message


def test_the_data_position_on_resume_comes_from_the_checkpoint(checked, cfg, tmp_path):
    """With the consumed-sample count rewound to step 5's, phase 2 reads steps 6..15's samples: its
    first loss is not step 11's (same weights, other data) — the plan's step alone does not decide."""
    source = _phase1_copy(checked, tmp_path)
    _rewrite_legacy_args(source, consumed_train_samples=5 * cfg.schedule.global_batch_size)
    report = run_case(cfg, RunOptions(run_dir=tmp_path / "rewound", reuse_phase1_from=source))
    events = [json.loads(line) for line in (tmp_path / "rewound" / "logs" / "phase2" / "metrics.jsonl").open()]
    assert [e["consumed_train_samples"] for e in events if e.get("event") == "load"] == [40]
    resumed = report.artifact.phases[2].metrics["lm loss"].values
    assert resumed[0] != checked.artifact.phases[1].metrics["lm loss"].values[10]


def test_torch_dist_checkpoints_resume_bit_identically_too(cfg, tmp_path):
    dist = cfg.replace(checkpoint={"format": "torch_dist"})
    report = run_case(dist, RunOptions(run_dir=tmp_path / "dist"))
    root = tmp_path / "dist" / "checkpoints"
    assert (root / TRACKER_FILE).read_text() == "10"
    assert (root / "iter_0000010" / "metadata.json").is_file() and (root / "iter_0000010" / "common.pt").is_file()
    assert not list(root.rglob("model_optim_rng.pt"))
    one, two = report.artifact.phases[1], report.artifact.phases[2]
    for name in DETERMINISTIC:
        assert two.metrics[name].values.tobytes() == one.metrics[name].values[10:].tobytes(), name
    assert report.artifact.provenance["model_args"]["checkpoint"]["format"] == "torch_dist"


OWN_CASES = REPO / "tests" / "fixtures" / "megatron_cases"


def _runs_its_shrink_end_to_end(folder: Path, run_dir: Path):
    from runner.config import megatron_case_definition

    cfg = megatron_case_definition(folder).run_config()  # cpu-tiny, the reviewed shrink
    report = run_case(cfg, RunOptions(run_dir=run_dir))
    artifact = report.artifact
    assert artifact.status == "complete" and list(artifact.phases) == [1]  # a regular case: one phase
    loss = artifact.phases[1].metrics["lm loss"]
    assert loss.steps.tolist() == list(range(1, 21)) and np.isfinite(loss.values).all()
    assert artifact.provenance["megatron_case"]["source"] == str(folder / "model_config.yaml")
    assert not (run_dir / "checkpoints").exists()  # nothing saved within a regular run
    assert not leftover_processes(run_dir.resolve())
    return artifact


def test_an_own_megatron_case_folder_runs_its_cpu_tiny_shrink(tmp_path):
    artifact = _runs_its_shrink_end_to_end(OWN_CASES / "bert_local_regular_tp2", tmp_path / "own")
    assert (artifact.provenance["tp"], artifact.provenance["pp"], artifact.provenance["world_size"]) == (2, 1, 2)
    assert artifact.provenance["seed"] == 4321


@pytest.mark.shared
def test_the_real_local_spec_regular_case_runs_its_cpu_tiny_shrink(megatron_fixtures, tmp_path):
    folder = megatron_fixtures / "test_cases" / "bert" / "bert_mcore_tp2_pp2_local_spec"
    artifact = _runs_its_shrink_end_to_end(folder, tmp_path / "real")
    assert artifact.case == "bert_mcore_tp2_pp2_local_spec" and artifact.provenance["world_size"] == 4


def test_a_missing_checkpoint_is_refused_before_launch(checked, cfg, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(checked.run_dir / "logs" / "phase1", source / "logs" / "phase1")
    message = _failing_run(cfg, tmp_path / "missing", reuse_phase1_from=source)
    assert "missing checkpoint" in message


def test_a_hang_times_out_with_one_line_and_exit_2(tmp_path):
    run_dir = tmp_path / "hang"
    env = {**os.environ, "GOLDEN_RUNNER_FAULT": "1:1:start:hang"}
    proc = subprocess.run([sys.executable, "-m", "goldens", "run", CASE, "--store", str(STORE), "--out", str(run_dir),
                           "--timeout", "20"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    assert errors[0].startswith("error: phase 1 timed out after 20 s: rank 1 stuck while starting")
    assert read_artifact(run_dir).status == "incomplete"
    assert not leftover_processes(run_dir.resolve())


def test_killing_the_cli_outright_leaves_no_process_behind(tmp_path):
    """SIGKILL gives the CLI no chance to clean up: every level dies with its parent instead."""
    import time

    run_dir = tmp_path / "killed-cli"
    cli = subprocess.Popen([sys.executable, "-m", "goldens", "run", CASE, "--store", str(STORE), "--out", str(run_dir)],
                           cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = run_dir / "logs" / "phase1" / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while not (metrics.is_file() and '"step": 2' in metrics.read_text()):
        assert cli.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    assert leftover_processes(run_dir.resolve())  # the run is alive: ranks carry the marker
    cli.kill()
    cli.wait()
    deadline = time.monotonic() + 20
    while leftover_processes(run_dir.resolve()):
        assert time.monotonic() < deadline, leftover_processes(run_dir.resolve())
        time.sleep(0.2)
