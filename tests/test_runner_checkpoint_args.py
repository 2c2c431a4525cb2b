"""Our legacy checkpoint's ``args`` against what Megatron-LM's loader reads from it.

Always: the field list read from Megatron-LM's ``checkpointing.py`` (tests/data, with the commit it
was read at; ``tools/megatron_checkpoint_args.py`` regenerates it) against the args our
checkpointer writes for the committed cases. Where a Megatron-LM mirror is at hand
(``GOLDEN_MEGATRON_LM_GIT``, default the fetched mirror's path): the list is regenerated from it
and must be identical. Megatron's own loader loading a real checkpoint of ours is in
tests/test_runner_e2e.py (it needs a run)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from goldens.cli.extras import missing_reason

REPO = Path(__file__).resolve().parents[1]
FIELDS = REPO / "tests" / "data" / "megatron_checkpoint_args.json"
MIRROR = Path(os.environ.get("GOLDEN_MEGATRON_LM_GIT", "/work/.mirror/NVIDIA+Megatron-LM/repo"))
CASES = ("bert_mcore_tp2_pp2_resume_torch_dist_local_spec", "gpt3_mcore_tp1_pp2_resume_torch_dist",
         "gpt3_mcore_tp2_pp2_resume_torch_dist_te_2experts", "t5_mcore_tp1_pp1_vp1_resume_torch")


def megatron_fields() -> dict:
    return json.loads(FIELDS.read_text())


def carried(doc: dict, checkpoint_version: float) -> list[str]:
    """The fields a checkpoint of this version must carry: all but those read only for older ones."""
    return [name for name, how in doc["fields"].items()
            if how["below_version"] is None or checkpoint_version < how["below_version"]]


def test_the_field_list_names_its_megatron_commit_and_the_fields_megatron_compares():
    doc = megatron_fields()
    assert re.fullmatch(r"[0-9a-f]{40}", doc["megatron_lm_commit"])
    assert doc["source"] == "megatron/training/checkpointing.py"
    required = {name for name, how in doc["fields"].items() if how["required"] and how["below_version"] is None}
    # check_checkpoint_args' comparisons without a default: an AttributeError in Megatron if absent
    assert {"num_layers", "hidden_size", "num_attention_heads", "tensor_model_parallel_size",
            "pipeline_model_parallel_size", "padded_vocab_size", "tokenizer_type"} <= required
    assert doc["fields"]["model_parallel_size"]["below_version"] == 3.0  # the pre-3.0 name only


@pytest.mark.skipif(bool(missing_reason("runner")), reason=missing_reason("runner") or "")
@pytest.mark.parametrize("case", CASES)
def test_our_checkpoint_args_carry_every_field_megatrons_loader_reads(case):
    from runner.checkpoint import CHECKPOINT_VERSION, training_args
    from runner.config import load_case_definition
    from runner.trainer import transformer_config

    cfg = load_case_definition(REPO / "cases" / case).run_config()
    par = cfg.parallelism
    layout = SimpleNamespace(tp_size=par.tensor_model_parallel_size, pp_size=par.pipeline_model_parallel_size,
                             world_size=par.world_size, dp_size=par.world_size // par.model_parallel_size)
    tconfig = transformer_config(cfg)
    args = training_args(SimpleNamespace(cfg=cfg, layout=layout, core=SimpleNamespace(config=tconfig)), 10, 80)
    missing = [name for name in carried(megatron_fields(), CHECKPOINT_VERSION) if not hasattr(args, name)]
    assert not missing, f"{case}: Megatron's loader reads {missing}, our checkpoint lacks them"
    assert not hasattr(args, "model_parallel_size")  # Megatron reads it only below version 3.0
    m = cfg.model
    # Megatron's meanings: the model it would rebuild from these (load_args_from_checkpoint) is ours
    assert (args.num_layers, args.hidden_size, args.num_attention_heads, args.seq_length,
            args.max_position_embeddings) == (m.num_layers, m.hidden_size, m.num_attention_heads, m.seq_length,
                                              m.max_position_embeddings)
    assert args.ffn_hidden_size == tconfig.ffn_hidden_size == (m.ffn_hidden_size or 4 * m.hidden_size)
    assert (args.tensor_model_parallel_size, args.pipeline_model_parallel_size, args.data_parallel_size,
            args.world_size) == (layout.tp_size, layout.pp_size, layout.dp_size, layout.world_size)
    assert args.num_experts == m.num_experts and args.position_embedding_type == m.position_embedding_type
    assert args.add_bias_linear == tconfig.add_bias_linear != args.disable_bias_linear
    assert args.padded_vocab_size == cfg.padded_vocab_size and args.ckpt_format == cfg.checkpoint.format
    assert (args.consumed_train_samples, args.iteration) == (80, 10)


@pytest.mark.skipif(not MIRROR.exists(), reason=f"no Megatron-LM mirror at {MIRROR} (set GOLDEN_MEGATRON_LM_GIT)")
def test_the_field_list_is_what_megatrons_source_says_at_its_commit(tmp_path):
    commit = megatron_fields()["megatron_lm_commit"]
    out = tmp_path / "fields.json"
    subprocess.run([sys.executable, str(REPO / "tools" / "megatron_checkpoint_args.py"), str(MIRROR),
                    "--commit", commit, "--out", str(out)], check=True, capture_output=True, text=True)
    assert json.loads(out.read_text()) == megatron_fields()
