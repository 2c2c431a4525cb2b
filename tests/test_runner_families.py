"""Model families (runner/families): a case's family told from the case, an unbuilt family refused
by name before any flag is read, refusals that name a feature, the CPU pre-flight's substitutions
and the guards that keep a run on the generated corpus away from goldens it cannot be judged by;
the divergences from Megatron-LM fixed, each against Megatron's own definition."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from goldens.core.errors import FormatError
from runner.case_family import BUILT, detect
from runner.config import DP_PROFILE, PREFLIGHT_PROFILE, OptimizerConfig, load_case_definition, megatron_case_definition
from runner.megatron_case import CaseRefused, import_model_config

REPO = Path(__file__).resolve().parents[1]
SHARED_CASES = REPO.parent / "shared" / "fixtures" / "megatron" / "test_cases"
FAMILY_CASES = ("gpt3_mcore_tp1_pp2_resume_torch_dist", "gpt3_mcore_tp2_pp2_resume_torch_dist_te_2experts",
                "t5_mcore_tp1_pp1_vp1_resume_torch")

GPT_ARGS = {"--num-layers": 12, "--hidden-size": 512, "--num-attention-heads": 8, "--seq-length": 1024,
            "--max-position-embeddings": 1024, "--micro-batch-size": 4, "--global-batch-size": 32,
            "--train-iters": 100, "--lr": 0.00015, "--merge-file": "m.txt", "--vocab-file": "v.json",
            "--tensor-model-parallel-size": 2, "--pipeline-model-parallel-size": 2, "--log-interval": 1,
            "--transformer-impl": "local", "--save-interval": 50}


def gpt_doc(**changes):
    args = {**GPT_ARGS, **changes}
    return {"MODEL_ARGS": {k: v for k, v in args.items() if v is not None}, "TEST_TYPE": "ckpt-resume"}


@pytest.mark.parametrize("doc, folder, name, family", [
    ({"MODE": "inference", "MODEL_ARGS": {"--num-layers": 2}}, "gpt", "x", "inference"),
    ({"MODE": "rl", "MODEL_ARGS": {}}, None, "x", "rl"),
    ({"MODEL_ARGS": {"trainer.strategy.tensor_model_parallel_size": 2}}, "gpt-nemo", "x", "nemo"),
    ({"MODEL_ARGS": {"--encoder-num-layers": 2}}, None, "x", "t5"),
    ({"MODEL_ARGS": {"--num-experts": 4}}, "gpt", "gpt3_x", "moe"),
    ({"MODEL_ARGS": {"--num-experts": 4}}, "hybrid", "x", "hybrid"),
    ({"MODEL_ARGS": {"--spec": "megatron.core.models.hybrid.hybrid_layer_specs hybrid_stack_spec"}}, None, "x",
     "hybrid"),
    ({"MODEL_ARGS": {"--num-layers": 2}}, "multimodal-llava", "x", "multimodal"),
    ({"MODEL_ARGS": {"--num-layers": 2}}, "gpt", "x", "gpt"),
    ({"MODEL_ARGS": {"--num-layers": 2}}, "cases", "gpt3_mcore_tp1_pp2", "gpt"),
    ({"MODEL_ARGS": {"--num-layers": 2}}, "cases", "bert_mcore_tp2_pp2", "bert"),
    ({"MODEL_ARGS": {"--num-layers": 2}}, None, "x", "bert"),
])
def test_the_family_comes_from_mode_flags_folder_then_name(doc, folder, name, family):
    assert detect(doc, folder=folder, name=name).name == family


def test_an_unbuilt_family_is_refused_by_name_before_any_flag_is_read():
    doc = {"MODE": "inference", "MODEL_ARGS": {"--inference-max-seq-length": 4096, "--no-such-flag": True}}
    case = import_model_config(doc, name="x", folder="gpt")
    assert case.features == ("model family inference",)
    with pytest.raises(CaseRefused, match=r"needs model family inference: family: model family inference \(infer"):
        case.check_runnable()


def test_a_built_family_reads_its_own_flags_and_no_other_familys():
    case = import_model_config(gpt_doc(), name="gpt3_x", folder="gpt")
    assert case.runnable and case.family == "gpt" and case.entry("--merge-file").outcome == "waived"
    with pytest.raises(FormatError, match=r"unknown Megatron flag --vocab-extra-ids for a gpt case"):
        import_model_config(gpt_doc(**{"--vocab-extra-ids": 100}), name="gpt3_x", folder="gpt")


def test_a_refused_case_lists_unknown_flags_as_unread_and_names_the_feature():
    doc = gpt_doc(**{"--transformer-impl": "transformer_engine", "--recompute-granularity": "full"})
    case = import_model_config(doc, name="gpt3_x", folder="gpt")
    assert case.unread == ("--recompute-granularity",) and not case.preflight_ready
    with pytest.raises(CaseRefused) as err:
        case.check_runnable()
    assert str(err.value).startswith("case gpt3_x cannot run here: needs Transformer Engine: ")
    assert str(err.value).endswith("(and 1 flag(s) this runner has not read)")


def test_the_preflight_substitutes_the_local_spec_and_records_it(tmp_path):
    folder = tmp_path / "gpt" / "gpt3_mcore_te_tp2_pp2"
    folder.mkdir(parents=True)
    (folder / "model_config.yaml").write_text(yaml.safe_dump(gpt_doc(**{"--transformer-impl": "transformer_engine"})))
    definition = megatron_case_definition(folder)
    assert PREFLIGHT_PROFILE in definition.profiles and "cpu-tiny" in definition.profiles
    with pytest.raises(CaseRefused, match="needs Transformer Engine"):
        definition.run_config("cpu-tiny")
    cfg = definition.run_config(PREFLIGHT_PROFILE)
    assert cfg.model.family == "gpt" and cfg.model.layer_spec == "local"
    assert cfg.megatron["substitutions"] == {"Transformer Engine": "megatron-core's local layer spec (the same "
                                                                   "architecture on torch's own kernels)"}


def test_the_dp_profile_keeps_the_cases_data_parallelism(tmp_path):
    folder = tmp_path / "gpt" / "gpt3_mcore_tp2_pp2"
    folder.mkdir(parents=True)
    (folder / "model_config.yaml").write_text(yaml.safe_dump(gpt_doc()))
    definition = megatron_case_definition(folder)
    assert definition.run_config("cpu-tiny").parallelism.data_parallel_size == 1
    assert definition.run_config(DP_PROFILE).parallelism.data_parallel_size == 2  # Megatron's 8 GPUs / (2 x 2)


def test_expert_parallelism_keeps_the_data_parallelism_it_needs(tmp_path):
    folder = tmp_path / "moe" / "gpt3_mcore_tp2_pp2_ep2"
    folder.mkdir(parents=True)
    doc = gpt_doc(**{"--num-experts": 4, "--expert-model-parallel-size": 2, "--sequence-parallel": True,
                     "--moe-router-topk": 1, "--moe-router-load-balancing-type": "sinkhorn"})
    (folder / "model_config.yaml").write_text(yaml.safe_dump(doc))
    cfg = megatron_case_definition(folder).run_config("cpu-tiny")
    assert (cfg.model.family, cfg.model.num_experts, cfg.parallelism.world_size) == ("moe", 4, 8)
    assert cfg.parallelism.sequence_parallel and cfg.parallelism.expert_model_parallel_size == 2


@pytest.mark.parametrize("name", FAMILY_CASES)
def test_the_family_cases_shrink_is_the_reviewed_one(name):
    """Each family case's cpu-tiny in case.yaml equals the shrink the runner makes for its
    model_config.yaml (no hand copy drifts)."""
    from runner.megatron_case import cpu_tiny_shrink, load_model_config

    doc = yaml.safe_load((REPO / "cases" / name / "case.yaml").read_text())
    assert doc["profiles"]["cpu-tiny"] == cpu_tiny_shrink(load_model_config(REPO / "cases" / name))
    cfg = load_case_definition(REPO / "cases" / name).run_config("cpu-tiny")
    assert cfg.model.family in BUILT and cfg.resumes


def test_every_shared_case_runs_or_is_refused_naming_a_family_or_feature():
    """The parse over every case of ../shared: runnable cases resolve their cpu-tiny profile;
    every other case is refused in one line that names a family or feature, never at a flag."""
    if not SHARED_CASES.is_dir():
        pytest.skip("../shared/fixtures/megatron/test_cases is absent")
    folders = sorted(p.parent for p in SHARED_CASES.rglob("model_config.yaml"))
    assert folders
    runnable = []
    for folder in folders:
        definition = megatron_case_definition(folder)  # never a FormatError at an unknown flag
        case = definition.megatron
        if case.runnable:
            definition.run_config("cpu-tiny")
            runnable.append(folder.name)
            continue
        assert case.features, folder
        with pytest.raises(CaseRefused) as err:
            definition.run_config("full")
        assert f"needs {case.features[0]}" in str(err.value) and "\n" not in str(err.value), folder
    assert "bert_mcore_tp2_pp2_local_spec" in runnable


# ---------------------------------------------------------------- guards on judging

def _artifact(tmp_path, provenance, values=(7.0, 6.5, 6.0), resumed=None):
    from goldens.files.formats.artifact import read_artifact

    metrics = {"lm loss": {"start_step": 1, "end_step": len(values), "step_interval": 1,
                           "values": {str(i + 1): v for i, v in enumerate(values)}}}
    phases = {"1": {"metrics": metrics, "steps": [1, len(values)]}}
    if resumed is not None:
        phases["2"] = {"resumed_from": 1, "steps": [2, len(values)], "metrics": {"lm loss": {
            "start_step": 2, "end_step": len(values), "step_interval": 1,
            "values": {str(i + 2): v for i, v in enumerate(resumed)}}}}
    doc = {"schema": "golden.artifact/1", "case": "c", "run_id": "r1", "status": "complete",
           "provenance": {"device": "cpu", "platform": "cpu", **provenance}, "phases": phases}
    path = tmp_path / "artifact.json"
    path.write_text(json.dumps(doc))
    return read_artifact(path)


def test_a_preflight_is_judged_on_itself_only(tmp_path):
    from goldens.inputs import load_artifact_side
    from goldens.workflow.judge import refuse_preflight
    from runner.artifact import smoke_problems

    subs = {"megatron_case": {"substitutions": {"Transformer Engine": "local spec"}}}
    artifact = _artifact(tmp_path, subs, resumed=(6.5, 6.0))
    with pytest.raises(FormatError, match=r"CPU pre-flight on substitutes \(Transformer Engine → local spec\): it is "
                                          r"judged only on itself"):
        refuse_preflight(load_artifact_side(artifact))
    assert smoke_problems(artifact) == []
    assert smoke_problems(_artifact(tmp_path, subs, resumed=(6.5, 6.0000001))) == [
        "lm loss after the resume differs from phase 1 at step(s) [3]"]
    assert smoke_problems(_artifact(tmp_path, subs, values=(6.0, 6.5, float("nan")))) == [
        "lm loss is not finite at some step"]
    assert smoke_problems(_artifact(tmp_path, subs, values=(6.0, 6.5, 6.1))) == [
        "lm loss did not fall (6.0 → 6.1)"]


def test_golden_run_prints_a_preflights_verdict_on_itself(tmp_path, capsys):
    import types

    import typer

    from goldens.cli.run import _preflight_verdict

    subs = {"megatron_case": {"substitutions": {"Transformer Engine": "local spec"}}}
    _preflight_verdict(types.SimpleNamespace(artifact=_artifact(tmp_path, subs, resumed=(6.5, 6.0))))
    assert capsys.readouterr().out == ("pre-flight (substituted: Transformer Engine → local spec): passed — built, "
                                       "trained, saved, resumed bit-exactly, finite falling loss\n")
    with pytest.raises(typer.Exit) as exited:
        _preflight_verdict(types.SimpleNamespace(artifact=_artifact(tmp_path, subs, values=(6.0, 6.5, 6.1))))
    assert exited.value.exit_code == 1
    assert capsys.readouterr().out == ("pre-flight (substituted: Transformer Engine → local spec): lm loss did not "
                                       "fall (6.0 → 6.1)\n")
    _preflight_verdict(types.SimpleNamespace(artifact=_artifact(tmp_path, {})))  # a run of the case as written
    _preflight_verdict(types.SimpleNamespace(artifact=None))  # a Slurm node task: its submitter reports
    assert capsys.readouterr().out == ""


def test_a_run_on_the_generated_corpus_is_never_judged_against_megatrons_goldens(tmp_path):
    from goldens.inputs import load_artifact_side
    from goldens.workflow.judge import refuse_other_data

    run = load_artifact_side(_artifact(tmp_path, {"corpus": "generated"}))
    megatron_folder = tmp_path / "gpt" / "case"
    megatron_folder.mkdir(parents=True)
    (megatron_folder / "model_config.yaml").write_text("MODEL_ARGS: {}\n")

    class Reference:
        class side:
            label = str(megatron_folder / "golden_values_dev_dgx_h100.json")
            fingerprint = None

    with pytest.raises(FormatError, match=r"recorded by Megatron's CI on its real data .* not comparable"):
        refuse_other_data(run, Reference, megatron_folder)
    Reference.side.fingerprint = "sha256:ours"  # a golden an approval of this toolkit wrote
    refuse_other_data(run, Reference, megatron_folder)
    Reference.side.fingerprint = None
    (megatron_folder / "case.yaml").write_text("profiles: {}\n")  # a store case of this toolkit
    refuse_other_data(run, Reference, megatron_folder)


# ---------------------------------------------------------------- divergences, against Megatron's definitions

def test_warmup_from_a_fraction_is_megatrons_float_product():
    """Megatron-LM training.get_optimizer_param_scheduler: lr_decay_steps = lr_decay_iters ×
    global_batch_size; lr_warmup_steps = lr_warmup_fraction × lr_decay_steps (a float, not
    truncated to whole iterations)."""
    opt = OptimizerConfig(lr=1e-4, lr_warmup_fraction=0.01)
    decay_iters, gbs = 20, 8
    assert opt.warmup_steps(decay_iters, gbs) == 0.01 * (decay_iters * gbs) == 1.6  # int(0.01 × 20) × 8 was 0
    assert OptimizerConfig(lr=1e-4, lr_warmup_iters=2).warmup_steps(decay_iters, gbs) == 16


@pytest.mark.parametrize("precision, in_fp32", [("fp32", False), ("bf16", True), ("fp16", False)])
def test_gradients_reduce_in_fp32_for_bf16_only(precision, in_fp32):
    """Megatron-LM arguments.py sets accumulate_allreduce_grads_in_fp32 for bf16 (unless
    --grad-reduce-in-bf16); fp16 gradients are reduced in fp16; training.py passes it to DDP."""
    from runner.trainer import grad_reduce_in_fp32

    assert grad_reduce_in_fp32(precision) is in_fp32


@pytest.mark.parametrize("binary_head", [True, False])
def test_bert_logs_losses_averaged_over_data_parallel_ranks_with_or_without_binary_head(monkeypatch, binary_head):
    """pretrain_bert.loss_func averages the logged losses over the data-parallel group in both
    branches (average_losses_across_data_parallel_group: all-reduce, divide by the group size)."""
    torch = pytest.importorskip("torch")
    from megatron.core import parallel_state as ps

    from runner.families import bert

    other_replica = torch.tensor([3.0, 0.25] if binary_head else [3.0])
    monkeypatch.setattr(ps, "get_data_parallel_group", lambda **_: "dp")
    monkeypatch.setattr(ps, "get_data_parallel_world_size", lambda **_: 2)
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda t, group=None: t.add_(other_replica))
    lm = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    mask = torch.tensor([[1, 0], [1, 1]])
    sop_logits = torch.tensor([[0.0, 0.0]]) if binary_head else None
    loss, logged = bert.loss_func(mask, torch.tensor([1]), (lm, sop_logits))
    own_lm = (1.0 + 3.0 + 4.0) / 3
    assert float(logged["lm loss"]) == pytest.approx((own_lm + 3.0) / 2)
    if binary_head:
        assert float(logged["sop loss"]) == pytest.approx((torch.log(torch.tensor(2.0)).item() + 0.25) / 2)
    else:
        assert set(logged) == {"lm loss"} and float(loss) == pytest.approx(own_lm)


def test_a_gpt_loss_is_logged_as_megatron_reduces_token_sums(monkeypatch):
    """pretrain_gpt.loss_func reports (sum, tokens); training.py sums them over micro-batches,
    all-reduces over data parallel and divides."""
    torch = pytest.importorskip("torch")
    from megatron.core import parallel_state as ps

    from runner.families.gpt import loss_func
    from runner.trainer import logged_losses

    monkeypatch.setattr(ps, "get_data_parallel_group", lambda **_: "dp")
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda t, group=None: t.add_(torch.tensor([10.0, 4.0])))
    micro = [loss_func(torch.tensor([1.0, 1.0]), torch.tensor([2.0, 4.0]))[2],
             loss_func(torch.tensor([1.0, 0.0]), torch.tensor([3.0, 9.0]))[2]]
    assert logged_losses(micro) == {"lm loss": pytest.approx((2 + 4 + 3 + 10) / (2 + 1 + 4))}


def test_the_optimizer_megatron_chose_is_in_a_cuda_fingerprint(monkeypatch):
    """FusedAdam (TE or Apex) and torch's fallback round differently: a CUDA run records which ran;
    a CPU run (torch's Adam, the only one) records nothing new, so its fingerprint stays."""
    pytest.importorskip("megatron.core")
    from megatron.core import optimizer as mcore_optimizer

    from runner import kernels

    assert kernels.optimizer_choice("cpu") is None
    monkeypatch.setattr(mcore_optimizer, "USING_PYTORCH_OPTIMIZER", True)
    assert kernels.optimizer_choice("cuda").startswith("torch (Transformer Engine and Apex absent")

    class FusedAdam:
        __module__ = "apex.optimizers"

    monkeypatch.setattr(mcore_optimizer, "USING_PYTORCH_OPTIMIZER", False)
    monkeypatch.setattr(mcore_optimizer, "Adam", FusedAdam)
    assert kernels.optimizer_choice("cuda") == "apex.optimizers.FusedAdam"
    assert kernels.record({}, optimizer="apex.optimizers.FusedAdam") == {"optimizer": "apex.optimizers.FusedAdam"}


def test_a_before_script_that_only_uninstalls_te_is_waived_any_other_refused():
    uninstall = "pip uninstall -y transformer_engine || true\npip uninstall -y Apex || true ## TODO: remove\n"
    case = import_model_config({**gpt_doc(), "BEFORE_SCRIPT": uninstall}, name="gpt3_x", folder="gpt")
    assert case.runnable and case.entry("BEFORE_SCRIPT").outcome == "waived"
    case = import_model_config({**gpt_doc(), "BEFORE_SCRIPT": "pip install foo\n"}, name="gpt3_x", folder="gpt")
    assert case.features == ("a CI shell script",)


def test_mode_pretraining_trains_any_other_mode_is_refused_by_name():
    assert import_model_config({**gpt_doc(), "MODE": "pretraining"}, name="gpt3_x", folder="gpt").runnable
    assert import_model_config({**gpt_doc(), "MODE": "distill"}, name="gpt3_x", folder="gpt").features == (
        "MODE distill",)
