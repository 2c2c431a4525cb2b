"""The case as typed configuration: case.yaml profiles, validation messages, Megatron import."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from goldens.errors import FormatError
from runner.config import (CaseDefinition, RunConfig, from_megatron_model_config, load_case_definition,
                           parse_case)

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
    ("model", {"layer_spec": "te"}, "bert_layer_local_spec"),
    ("model", {"num_attention_heads": 3, "hidden_size": 63}, "divisible by tensor_model_parallel_size"),
    ("model", {"num_layers": 3}, "divisible by pipeline_model_parallel_size"),
    ("model", {"precision": "bf16"}, "use fp32 on cpu"),
    ("model", {"bias_dropout_fusion": True}, "set them false in a cpu profile"),
    ("parallelism", {"world_size": 6}, "multiple of tensor × pipeline"),
    ("schedule", {"save_interval": 20}, "must be below train_iters"),
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


MEGATRON_CONFIG = """\
ENV_VARS:
  CUDA_DEVICE_MAX_CONNECTIONS: 1
  NCCL_ALGO: Ring
MODEL_ARGS:
  --num-layers: 24
  --hidden-size: 1024
  --num-attention-heads: 16
  --micro-batch-size: 4
  --global-batch-size: 128
  --seq-length: 512
  --max-position-embeddings: 512
  --train-iters: 100
  --save-interval: 50
  --lr: 0.0001
  --tensor-model-parallel-size: 2
  --pipeline-model-parallel-size: 2
  --spec: local
  --deterministic-mode: true
  --bf16: true
  --data-path: ${DATA_PATH}/text/my-bert
TEST_TYPE: ckpt-resume
"""


def test_megatron_model_config_translates_into_the_same_sections():
    imported = from_megatron_model_config(yaml.safe_load(MEGATRON_CONFIG))
    assert imported.test_type == "ckpt-resume"
    assert imported.sections["model"]["num_layers"] == 24
    assert imported.sections["model"]["precision"] == "bf16"
    assert imported.sections["model"]["layer_spec"] == "local"
    assert imported.sections["schedule"] == {"micro_batch_size": 4, "global_batch_size": 128, "train_iters": 100,
                                             "save_interval": 50}
    assert imported.sections["determinism"]["env"] == {"CUDA_DEVICE_MAX_CONNECTIONS": "1", "NCCL_ALGO": "Ring"}
    assert "--data-path" in imported.ignored_flags
    # Megatron-LM's own defaults (fusions on) come along, so the import is the GPU configuration.
    assert imported.sections["model"]["bias_dropout_fusion"] is True
    doc = {**imported.sections, "parallelism": {**imported.sections["parallelism"], "world_size": 8},
           "launch": {"device": "cuda"}, "profiles": {"imported": {}}}
    cfg = case_from(doc).run_config("imported")
    assert (cfg.parallelism.data_parallel_size, cfg.num_microbatches) == (2, 16)


@pytest.mark.shared
def test_the_seed_megatron_config_matches_the_full_profile(megatron_fixtures):
    path = megatron_fixtures / "test_cases" / "bert" / CASE / "model_config.yaml"
    imported = from_megatron_model_config(yaml.safe_load(path.read_text()), path=path)
    full = load_case_definition(CASE_DIR).run_config("full").to_dict()
    for section, values in imported.sections.items():
        for key, value in values.items():
            if key == "ffn_hidden_size":
                continue
            assert full[section][key] == value, f"{section}.{key}"
