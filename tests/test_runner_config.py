"""The case as typed configuration: case.yaml profiles, validation messages, Megatron import."""
from __future__ import annotations

from pathlib import Path

import pytest

from goldens.core.errors import FormatError
from runner.config import CaseDefinition, RunConfig, load_case_definition, parse_case

REPO = Path(__file__).resolve().parents[1]
CASE = "bert_mcore_tp2_pp2_resume_torch_dist_local_spec"
CASE_DIR = REPO / "cases" / CASE

MINIMAL = {
    "model": {"num_layers": 4, "hidden_size": 64, "num_attention_heads": 4, "seq_length": 64,
              "max_position_embeddings": 64},
    "parallelism": {"tensor_model_parallel_size": 2, "pipeline_model_parallel_size": 2, "world_size": 4},
    "schedule": {"train_iters": 20, "save_interval": 10, "micro_batch_size": 2, "global_batch_size": 8},
    "optimizer": {"lr": 1e-3},
    "profiles": {"tiny": {}},
    "metrics": {"lm loss": {"mode": "exact", "anything": ["the runner", "does not read this"]}},
}


def case_from(doc: dict, name: str = "demo") -> CaseDefinition:
    return parse_case(doc, name=name, path=Path(f"/cases/{name}/case.yaml"))


def test_the_shipped_case_resolves_both_profiles():
    definition = load_case_definition(CASE_DIR)
    assert definition.default_profile == "cpu-tiny"
    tiny = definition.run_config()
    assert (tiny.model.num_layers, tiny.model.hidden_size, tiny.model.num_attention_heads,
            tiny.model.seq_length) == (4, 64, 4, 64)
    assert (tiny.schedule.train_iters, tiny.schedule.save_interval) == (20, 10)
    assert tiny.num_microbatches == 4  # global 8 / (micro 2 × data parallel 1)
    assert (tiny.launch.device, tiny.launch.backend, tiny.parallelism.data_parallel_size) == ("cpu", "gloo", 1)
    full = definition.run_config("full")
    # The seed's values (Megatron's model_config.yaml for this case), on 8 GPUs: data parallel 2.
    assert (full.model.num_layers, full.model.hidden_size, full.model.num_attention_heads) == (24, 1024, 16)
    assert (full.model.seq_length, full.schedule.micro_batch_size, full.schedule.global_batch_size) == (512, 4, 128)
    assert (full.schedule.train_iters, full.schedule.save_interval) == (100, 50)
    assert (full.launch.backend, full.parallelism.data_parallel_size, full.num_microbatches) == ("nccl", 2, 16)
    assert full.model.precision == "bf16"
    assert (full.checkpoint.format, tiny.checkpoint.format) == ("torch", "torch")  # --ckpt-format torch
    assert tiny.test_type == full.test_type == "ckpt-resume"
    smoke = definition.run_config("cuda-smoke")
    assert (smoke.launch.device, smoke.parallelism.world_size, smoke.model.precision) == ("cuda", 1, "bf16")


def test_profile_overrides_base_key_by_key_and_keeps_the_rest():
    doc = {**MINIMAL, "profiles": {"tiny": {"model": {"num_layers": 2}}}}
    cfg = case_from(doc).run_config("tiny")
    assert cfg.model.num_layers == 2
    assert cfg.model.hidden_size == 64  # from the base section


def test_command_line_overrides_win_over_the_profile():
    doc = {**MINIMAL, "profiles": {"tiny": {"determinism": {"seed": 5}}}}
    cfg = case_from(doc).run_config("tiny", determinism={"seed": 9}, launch={"phase_timeout_s": 7})
    assert (cfg.determinism.seed, cfg.launch.phase_timeout_s) == (9, 7)


def test_metrics_section_is_passed_through_untouched():
    definition = case_from(MINIMAL)
    assert definition.metrics == MINIMAL["metrics"]


def test_padded_vocab_follows_megatrons_rule():
    cfg = case_from(MINIMAL).run_config("tiny", data={"vocab_size": 1000})
    assert cfg.padded_vocab_size == 1024  # multiple of 128 × TP 2 = 256
    cfg = case_from(MINIMAL).run_config("tiny", data={"vocab_size": 1025})
    assert cfg.padded_vocab_size == 1280


@pytest.mark.parametrize("section, change, fragment", [
    ("model", {"hidden_size": 66}, "divisible by num_attention_heads"),
    ("model", {"seq_length": 128}, "exceeds max_position_embeddings"),
    ("model", {"layer_spec": "te"}, "local layer specs"),
    ("model", {"num_attention_heads": 3, "hidden_size": 63}, "divisible by tensor_model_parallel_size"),
    ("model", {"num_layers": 3}, "divisible by pipeline_model_parallel_size"),
    ("model", {"precision": "bf16"}, "use fp32 on cpu"),
    ("model", {"bias_dropout_fusion": True}, "set them false in a cpu profile"),
    ("model", {"persist_layer_norm": True}, "set them false in a cpu profile"),
    ("checkpoint", {"format": "torch_dcp"}, "checkpoint format must be one of torch, torch_dist"),
    ("checkpoint", {"dist_ckpt_strictness": "lenient"}, "dist_ckpt_strictness must be one of"),
    ("parallelism", {"world_size": 6}, "multiple of tensor × pipeline"),
    ("schedule", {"save_interval": 20}, "must be below train_iters"),  # a ckpt-resume case
    ("schedule", {"global_batch_size": 9}, "multiple of micro_batch_size"),
    ("optimizer", {"min_lr": 1.0}, "min_lr"),
    ("launch", {"device": "tpu"}, "device must be one of cpu, cuda"),
    ("launch", {"phase_timeout_s": 0}, "phase_timeout_s"),
    ("data", {"sentences_per_document": 1}, "binary head needs pairs"),
])
def test_invalid_values_say_how_to_fix_them(section, change, fragment):
    with pytest.raises(FormatError) as err:
        case_from(MINIMAL).run_config("tiny", **{section: change})
    assert fragment in str(err.value)
    assert "case.yaml" in str(err.value)


def test_unknown_and_missing_fields_are_named():
    doc = {**MINIMAL, "schedule": {**MINIMAL["schedule"], "trian_iters": 5}}
    with pytest.raises(FormatError, match=r"unknown field\(s\) \['trian_iters'\]"):
        case_from(doc).run_config("tiny")
    doc = {**MINIMAL, "model": {"num_layers": 4}}
    with pytest.raises(FormatError, match="missing required field"):
        case_from(doc).run_config("tiny")
    with pytest.raises(FormatError, match="unknown profile 'gpu'"):
        case_from(MINIMAL).run_config("gpu")


def test_case_name_must_match_its_folder_and_profiles_are_required():
    with pytest.raises(FormatError, match="does not match its folder"):
        case_from({**MINIMAL, "case": "other"})
    with pytest.raises(FormatError, match="at least one profile"):
        case_from({k: v for k, v in MINIMAL.items() if k != "profiles"})


def test_missing_case_file_is_a_clear_error(tmp_path):
    with pytest.raises(FormatError, match="no case definition"):
        load_case_definition(tmp_path / "nothing")


def test_dict_round_trip_and_replace():
    cfg = load_case_definition(CASE_DIR).run_config()
    again = RunConfig.from_dict(cfg.to_dict())
    assert again == cfg
    changed = cfg.replace(schedule={"train_iters": 4, "save_interval": 2})
    assert (changed.schedule.train_iters, changed.schedule.save_interval, changed.model) == (4, 2, cfg.model)


def test_a_regular_case_runs_one_phase_and_may_save_past_its_end():
    cfg = case_from({**MINIMAL, "test_type": "regular",
                     "schedule": {**MINIMAL["schedule"], "save_interval": 10000}}).run_config("tiny")
    assert (cfg.test_type, cfg.phases, cfg.resumes) == ("regular", (1,), False)
    with pytest.raises(FormatError, match="test_type must be one of regular, ckpt-resume"):
        case_from({**MINIMAL, "test_type": "frozen-resume"})


def test_the_training_hash_follows_the_trajectory_not_the_launch():
    cfg = case_from(MINIMAL).run_config("tiny")
    assert cfg.training_hash() == RunConfig.from_dict(cfg.to_dict()).training_hash()
    # where and how long it runs, and the checkpoint's format, do not change the trajectory
    same = cfg.replace(launch={"phase_timeout_s": 7}, checkpoint={"format": "torch"},
                       determinism={"env": {"NCCL_ALGO": "Ring"}})
    assert same.training_hash() == cfg.training_hash()
    for section, change in (("model", {"hidden_dropout": 0.2}), ("schedule", {"global_batch_size": 16}),
                            ("determinism", {"seed": 7}), ("data", {"vocab_size": 2000}),
                            ("parallelism", {"world_size": 8})):
        assert cfg.replace(**{section: change}).training_hash() != cfg.training_hash(), section
