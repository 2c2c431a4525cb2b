"""A Megatron model_config.yaml is a case: every flag and variable mapped, waived or refused (with its
reason), unknown ones refused by name; the seed's `full` profile is its model_config.yaml and its
cpu-tiny profile the reviewed shrink; every real BERT case runs its shrink or is refused precisely."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from goldens.core.errors import FormatError, GoldenError
from runner.config import case_folder, load_case_definition, megatron_case_definition, parse_case
from runner.megatron_case import (
    ENV_VARS,
    ENV_WAIVED,
    MODEL_ARGS,
    CaseRefused,
    cpu_tiny_shrink,
    import_model_config,
    load_model_config,
)

REPO = Path(__file__).resolve().parents[1]
SEED = "bert_mcore_tp2_pp2_resume_torch_dist_local_spec"
SEED_DIR = REPO / "cases" / SEED
OWN = REPO / "tests" / "fixtures" / "megatron_cases"
FIELDS_THAT_CHANGE_A_RUN = ("model", "parallelism", "schedule", "optimizer", "data", "determinism", "checkpoint",
                            "launch")


def account_for_everything(doc: dict, case) -> None:
    """Every MODEL_ARGS flag and ENV_VARS entry has exactly one recorded fate, with its target or reason."""
    entries = {e.key: e for e in case.entries}
    for flag in doc["MODEL_ARGS"]:
        assert flag in entries, flag
    for name in doc.get("ENV_VARS") or {}:
        assert f"ENV_VARS.{name}" in entries, name
    for entry in case.entries:
        assert entry.outcome in ("mapped", "waived", "refused"), entry
        if entry.outcome == "mapped":
            assert entry.target, entry
        else:
            assert entry.reason and len(entry.reason) > 20, entry
    record = case.record()
    assert set(record["entries"]) == set(entries)


def mapped_field(case, flag: str) -> str:
    return case.entry(flag).target.split(" ")[0]


# ---------------------------------------------------------------- the seed

def test_the_seed_full_profile_is_its_model_config():
    definition = load_case_definition(SEED_DIR)
    doc = yaml.safe_load((SEED_DIR / "model_config.yaml").read_text())
    account_for_everything(doc, definition.megatron)
    full = definition.run_config("full")
    args = doc["MODEL_ARGS"]
    # each flag that sets a field set it to the file's value
    assert (full.model.num_layers, full.model.hidden_size, full.model.num_attention_heads) == (24, 1024, 16)
    assert (full.model.seq_length, full.model.max_position_embeddings) == (args["--seq-length"], 512)
    assert (full.schedule.train_iters, full.schedule.save_interval) == (args["--train-iters"], args["--save-interval"])
    assert (full.schedule.micro_batch_size, full.schedule.global_batch_size) == (4, 128)
    assert (full.optimizer.lr, full.optimizer.min_lr, full.optimizer.lr_warmup_fraction) == (1e-4, 1e-5, 0.01)
    assert full.optimizer.lr_decay_iters == 990000
    assert (full.checkpoint.format, full.checkpoint.use_checkpoint_opt_param_scheduler) == ("torch", True)
    assert full.checkpoint.dist_ckpt_strictness == "log_all"
    assert (full.model.precision, full.model.layer_spec, full.model.attention_backend) == ("bf16", "local", "local")
    assert full.model.gradient_accumulation_fusion is False  # --no-gradient-accumulation-fusion
    # Megatron-LM's own defaults where megatron-core's differ
    assert full.model.masked_softmax_fusion and full.model.bias_dropout_fusion and full.model.persist_layer_norm
    assert full.determinism.deterministic_mode and full.determinism.env == {
        "CUDA_DEVICE_MAX_CONNECTIONS": "1", "NVTE_ALLOW_NONDETERMINISTIC_ALGO": "0", "NCCL_ALGO": "Ring",
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    assert (full.launch.device, full.parallelism.world_size, full.parallelism.data_parallel_size) == ("cuda", 8, 2)
    assert full.test_type == "ckpt-resume"
    # and the record of it travels with the config into the artifact's provenance
    assert full.megatron["entries"]["--ckpt-format"] == {"value": "torch", "outcome": "mapped",
                                                         "target": "checkpoint.format"}
    assert full.megatron["entries"]["--wandb-project" if "--wandb-project" in args else "--log-params-norm"][
        "outcome"] == "waived"


def test_the_seed_case_yaml_copies_no_value_of_the_megatron_file():
    doc = yaml.safe_load((SEED_DIR / "case.yaml").read_text())
    assert doc["megatron"] == "model_config.yaml"
    assert not set(doc) & set(FIELDS_THAT_CHANGE_A_RUN)  # base sections come from the Megatron file only
    restated = {**doc, "schedule": {"train_iters": 100}}
    with pytest.raises(FormatError, match=r"schedule.train_iters is set by model_config.yaml: remove it"):
        parse_case(restated, name=SEED, path=SEED_DIR / "case.yaml")
    with pytest.raises(FormatError, match="contradicts the Megatron case's TEST_TYPE"):
        parse_case({**doc, "test_type": "regular"}, name=SEED, path=SEED_DIR / "case.yaml")


def test_the_seed_cpu_tiny_profile_is_the_reviewed_shrink():
    """The case.yaml profile and cpu_tiny_shrink of the seed's Megatron file give the same run."""
    definition = load_case_definition(SEED_DIR)
    from_yaml = definition.run_config("cpu-tiny")
    from_shrink = megatron_case_definition(SEED_DIR).run_config("cpu-tiny")
    assert from_yaml == from_shrink
    assert (from_yaml.parallelism.world_size, from_yaml.launch.device, from_yaml.model.precision) == (4, "cpu", "fp32")
    assert from_yaml.checkpoint.format == "torch"  # the case's own format, kept by the shrink
    assert not from_yaml.model.fusions


# ---------------------------------------------------------------- own fixtures

def test_an_own_regular_case_maps_every_flag_and_shrinks_to_its_layout():
    case = load_model_config(OWN / "bert_local_regular_tp2")
    doc = yaml.safe_load((OWN / "bert_local_regular_tp2" / "model_config.yaml").read_text())
    account_for_everything(doc, case)
    assert case.runnable and case.test_type == "regular" and case.metrics == ("lm loss", "num-zeros")
    full = megatron_case_definition(OWN / "bert_local_regular_tp2").run_config("full")
    assert (full.determinism.seed, full.optimizer.adam_beta2, full.optimizer.weight_decay) == (4321, 0.98, 0.01)
    assert (full.optimizer.lr_decay_style, full.optimizer.lr_warmup_iters) == ("cosine", 3)
    assert (full.model.masked_softmax_fusion, full.model.bias_dropout_fusion) == (False, True)
    assert full.checkpoint.format == "torch_dist" and full.test_type == "regular" and full.phases == (1,)
    assert mapped_field(case, "--adam-beta2") == "optimizer.adam_beta2"
    assert case.entry("--exit-interval").outcome == "waived"  # == --train-iters
    assert case.entry("LAUNCHER").outcome == "waived"
    tiny = megatron_case_definition(OWN / "bert_local_regular_tp2").run_config()
    assert tiny.profile == "cpu-tiny"
    assert (tiny.parallelism.tensor_model_parallel_size, tiny.parallelism.pipeline_model_parallel_size,
            tiny.parallelism.world_size) == (2, 1, 2)
    assert (tiny.schedule.train_iters, tiny.num_microbatches, tiny.launch.device) == (20, 4, "cpu")
    assert tiny.determinism.seed == 4321  # what the shrink does not name stays the case's


def test_an_own_te_case_is_refused_with_every_reason():
    definition = load_case_definition(OWN / "bert_te_tp1_pp2")
    account_for_everything(yaml.safe_load((OWN / "bert_te_tp1_pp2" / "model_config.yaml").read_text()),
                           definition.megatron)
    for profile in ("cpu-tiny", "full"):
        with pytest.raises(CaseRefused) as err:
            definition.run_config(profile)
        message = str(err.value)
        assert message.startswith("case bert_te_tp1_pp2 cannot run here: ")
        assert "needs Transformer Engine" in message and "virtual pipeline" in message
        assert "\n" not in message and err.value.exit_code == 2


MINIMAL = {"MODEL_ARGS": {"--num-layers": 4, "--hidden-size": 64, "--num-attention-heads": 4, "--seq-length": 64,
                          "--max-position-embeddings": 64, "--micro-batch-size": 2, "--global-batch-size": 8,
                          "--train-iters": 20, "--save-interval": 10, "--lr": 1e-3, "--spec": "local"},
           "TEST_TYPE": "ckpt-resume"}


def with_args(**changes):
    args = {**MINIMAL["MODEL_ARGS"], **changes}
    return {**MINIMAL, "MODEL_ARGS": args}


def test_an_unknown_flag_is_refused_by_name():
    doc = with_args(**{"--frobnicate-gradients": True})
    with pytest.raises(FormatError) as err:
        import_model_config(doc, name="x", path=Path("/cases/x/model_config.yaml"))
    message = str(err.value)
    assert "unknown Megatron flag --frobnicate-gradients" in message and "MODEL_ARGS.--frobnicate-gradients" in message
    assert "\n" not in message and err.value.exit_code == 2


def test_an_unknown_flag_in_a_case_folder_fails_the_case_in_one_line(tmp_path):
    folder = tmp_path / "bert_odd"
    folder.mkdir()
    (folder / "model_config.yaml").write_text(yaml.safe_dump(with_args(**{"--recompute-granularity": "full"})))
    with pytest.raises(GoldenError, match=r"model_config\.yaml: key 'MODEL_ARGS\.--recompute-granularity': "
                                          r"unknown Megatron flag --recompute-granularity"):
        load_case_definition(folder)


@pytest.mark.parametrize("doc, fragment", [
    ({**MINIMAL, "ENV_VARS": {"NCCL_IB_DISABLE": 1}}, "unknown environment variable NCCL_IB_DISABLE"),
    ({**MINIMAL, "MODEL_ARGS_2": {}}, "unknown top-level key 'MODEL_ARGS_2'"),
    ({**MINIMAL, "TEST_TYPE": "smoke"}, "unknown TEST_TYPE 'smoke'"),
    (with_args(**{"--bf16": False}), "a switch takes `true`"),
    (with_args(**{"--num-layers": "many"}), "expected an integer, got 'many'"),
    (with_args(**{"--lr": "fast"}), "expected a number, got 'fast'"),
    (with_args(**{"--distributed-backend": "mpi"}), "expected nccl or gloo"),
    ({"MODEL_ARGS": []}, "expected a mapping of Megatron flags"),
])
def test_bad_entries_are_one_line_errors_naming_them(doc, fragment):
    with pytest.raises(FormatError) as err:
        import_model_config(doc, name="x")
    assert fragment in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("changes, key, fragment", [
    ({"--num-layers-per-virtual-pipeline-stage": 2}, "--num-layers-per-virtual-pipeline-stage", "virtual pipeline"),
    ({"--spec": "megatron.core.models.gpt.gpt_layer_specs"}, "--spec", "local layer specs only"),
    ({"--attention-backend": "flash"}, "--attention-backend", "needs Transformer Engine"),
    ({"--ckpt-format": "torch_dcp"}, "--ckpt-format", "'torch' (Megatron's legacy"),
    ({"--exit-interval": 5}, "--exit-interval", "stops at step 5, before --train-iters 20"),
    ({"--eval-interval": 5}, "--eval-interval", "no evaluation loop"),
    ({"--log-interval": 10}, "--log-interval", "every 10 steps"),
])
def test_what_the_runner_cannot_do_is_refused_with_the_reason(changes, key, fragment):
    case = import_model_config(with_args(**changes), name="x")
    assert not case.runnable
    assert case.entry(key).outcome == "refused" and fragment in case.entry(key).reason
    with pytest.raises(CaseRefused, match=fragment.replace("(", r"\(").replace("'", "'")):
        case.check_runnable()


def test_without_spec_local_the_case_needs_transformer_engine():
    doc = with_args()
    del doc["MODEL_ARGS"]["--spec"]
    case = import_model_config(doc, name="x")
    assert case.refusals == ("--transformer-impl: neither --spec local nor --transformer-impl local: Megatron-LM "
                             "builds Transformer Engine's layer spec (TE linears, attention and norms; CUDA only)",)
    assert case.features == ("Transformer Engine",)
    assert case.preflight_ready  # the only obstacle: the CPU pre-flight runs it on the local spec


def test_megatron_lm_defaults_apply_where_no_flag_is_given():
    case = import_model_config(MINIMAL, name="x")
    sections = case.sections
    assert sections["determinism"]["deterministic_mode"] is False  # no --deterministic-mode
    assert sections["checkpoint"]["format"] == "torch_dist"  # Megatron-LM's default --ckpt-format
    assert sections["model"]["gradient_accumulation_fusion"] is True  # no --no-gradient-accumulation-fusion
    assert sections["launch"]["device"] == "cuda"
    assert sections["parallelism"]["world_size"] == 8  # Megatron's CI: one node of 8 GPUs


def test_yaml_1_1_numbers_as_text_are_read_as_megatrons_parser_reads_them():
    case = import_model_config(with_args(**{"--weight-decay": "1e-2", "--min-lr": "1.0e-5"}), name="x")
    assert (case.sections["optimizer"]["weight_decay"], case.sections["optimizer"]["min_lr"]) == (0.01, 1e-5)


def test_the_tables_give_a_reason_for_every_waiver():
    for flag, rule in MODEL_ARGS.items():
        assert flag.startswith("--") and callable(rule), flag
    assert all(reason for reason in ENV_VARS.values()) and all(reason for reason in ENV_WAIVED.values())


def test_case_folder_takes_a_path_or_a_store_name(tmp_path):
    assert case_folder(SEED, REPO / "cases") == SEED_DIR
    folder = tmp_path / "bert_local_regular_tp2"
    shutil.copytree(OWN / "bert_local_regular_tp2", folder)
    assert case_folder(str(folder)) == folder
    with pytest.raises(FormatError, match="no such case folder"):
        case_folder(str(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FormatError, match=r"holds neither case\.yaml nor Megatron's model_config\.yaml"):
        case_folder(str(tmp_path / "empty"))


# ---------------------------------------------------------------- every real BERT case (extra)

EXPECTED_REFUSALS = {
    "bert_mcore_tp1_pp2": ("needs Transformer Engine",),
    "bert_mcore_tp1_pp4_vp2": ("needs Transformer Engine", "virtual pipeline"),
    "bert_mcore_tp2_pp2": ("needs Transformer Engine",),
    "bert_mcore_tp2_pp2_frozen_resume_torch_dist": ("needs Transformer Engine", "frozen-resume loads a checkpoint"),
    "bert_mcore_tp2_pp2_local_spec": (),
    "bert_mcore_tp2_pp2_resume_torch_dist": ("needs Transformer Engine",),
    "bert_mcore_tp2_pp2_resume_torch_dist_local_spec": (),
    "bert_mcore_tp4_pp1": ("needs Transformer Engine",),
    "bert_release": ("needs Transformer Engine", "release runs", "every 1000 steps", "every 100 steps"),
    "bert_release_sm": ("needs Transformer Engine", "release runs", "every 1000 steps", "every 100 steps",
                        "stops at step 2000"),
}


@pytest.mark.shared
def test_every_real_bert_case_maps_every_flag_and_runs_its_shrink_or_is_refused(megatron_fixtures):
    folders = sorted(p.parent for p in (megatron_fixtures / "test_cases" / "bert").glob("*/model_config.yaml"))
    assert [f.name for f in folders] == sorted(EXPECTED_REFUSALS)
    for folder in folders:
        doc = yaml.safe_load((folder / "model_config.yaml").read_text())
        definition = load_case_definition(folder)
        account_for_everything(doc, definition.megatron)
        expected = EXPECTED_REFUSALS[folder.name]
        if not expected:
            tiny = definition.run_config()
            assert (tiny.profile, tiny.launch.device, tiny.model.precision) == ("cpu-tiny", "cpu", "fp32")
            assert tiny.checkpoint.format == "torch" and tiny.test_type == doc["TEST_TYPE"]
            continue
        with pytest.raises(CaseRefused) as err:
            definition.run_config()
        assert len(err.value.reasons) == len(expected), (folder.name, err.value.reasons)
        for fragment in expected:
            assert fragment in str(err.value), (folder.name, fragment)


@pytest.mark.shared
def test_the_seed_in_the_store_is_megatrons_file_byte_for_byte(megatron_fixtures):
    real = megatron_fixtures / "test_cases" / "bert" / SEED / "model_config.yaml"
    assert (SEED_DIR / "model_config.yaml").read_bytes() == real.read_bytes()
    assert cpu_tiny_shrink(load_model_config(real.parent)) == cpu_tiny_shrink(load_model_config(SEED_DIR))


def _without_spec() -> dict:
    doc = with_args()
    del doc["MODEL_ARGS"]["--spec"]
    return doc


@pytest.mark.parametrize("doc, fragment", [
    (with_args(**{"--use-torch-fsdp2": True}), "unknown Megatron flag --use-torch-fsdp2"),
    (_without_spec(),
     "case bert_odd cannot run here: needs Transformer Engine: --transformer-impl: neither --spec local"),
])
def test_golden_run_of_a_megatron_store_case_it_cannot_run_is_one_line_and_exit_2(tmp_path, doc, fragment):
    """A store that is a Megatron tree (model_config.yaml only): the CLI refuses the case by the flag's
    name or with the reason, exit 2, before any process starts or any folder is written."""
    import subprocess
    import sys

    pytest.importorskip("torch")
    store = tmp_path / "test_cases"
    case = store / "bert_odd"
    case.mkdir(parents=True)
    (case / "model_config.yaml").write_text(yaml.safe_dump(doc))
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "goldens", "run", "bert_odd", "--store", str(store),
                           "--out", str(out)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], proc.stderr
    assert not out.exists()


def test_golden_run_and_check_take_a_case_folder_path(tmp_path):
    """`golden run path/to/test_cases/bert/<case>`: the folder is the case (here one it cannot run:
    refused with every reason in one line, exit 2, nothing written)."""
    import subprocess
    import sys

    pytest.importorskip("torch")
    folder = Path(__file__).resolve().parent / "fixtures" / "megatron_cases" / "bert_te_tp1_pp2"
    for command in ("run", "check"):
        out = tmp_path / command
        proc = subprocess.run([sys.executable, "-m", "goldens", command, str(folder), "--out", str(out)],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert "needs Transformer Engine" in lines[0] and "virtual pipeline" in lines[0], lines[0]
        assert not out.exists()
