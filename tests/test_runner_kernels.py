"""The GPU path's decisions, made without a GPU: which fused kernels run (Apex, torch.compile), the
determinism environment, Megatron-LM's TransformerConfig choices; plus the Megatron-style timer and
the CPU memory figure."""
from __future__ import annotations

from pathlib import Path

import pytest

from runner import kernels
from runner.config import load_case_definition
from runner.distributed import determinism_env
from runner.metrics import IntervalTimer, rss_anon_bytes

CASE_DIR = Path(__file__).resolve().parents[1] / "cases" / "bert_mcore_tp2_pp2_resume_torch_dist_local_spec"


@pytest.fixture(scope="module")
def definition():
    return load_case_definition(CASE_DIR)


def finder(*present: str):
    """An importlib.util.find_spec stand-in: these modules exist, nothing else does."""
    return lambda name: object() if name in present else None


ALL = (kernels.SOFTMAX_MODULE, kernels.GRAD_ACCUM_MODULE, kernels.APEX, kernels.TRITON)


def test_a_plain_gpu_host_runs_the_seed_unfused_and_says_why(definition):
    full = definition.run_config("full")  # bf16, Megatron-LM's fusions on, TP2: 8 heads per rank
    choices = kernels.decide(full, find_spec=finder())
    softmax = choices["masked_softmax_fusion"]
    assert (softmax.requested, softmax.used) == (True, False)
    assert "scaled_masked_softmax_cuda is not importable" in softmax.detail
    assert (choices["persist_layer_norm"].requested, choices["persist_layer_norm"].used) == (True, False)
    assert "WrappedTorchNorm" in choices["persist_layer_norm"].detail
    assert not choices["bias_activation_fusion"].used and "triton" in choices["bias_activation_fusion"].detail
    assert kernels.effective(full, choices) == dict.fromkeys(choices, False)


def test_with_apex_and_triton_the_seed_runs_megatrons_kernels(definition):
    full = definition.run_config("full")
    choices = kernels.decide(full, find_spec=finder(*ALL))
    assert kernels.effective(full, choices) == {"masked_softmax_fusion": True, "persist_layer_norm": True,
                                                "gradient_accumulation_fusion": False,  # the case turns it off
                                                "bias_activation_fusion": True, "bias_dropout_fusion": True}
    assert choices["masked_softmax_fusion"].detail == "fused: Apex's scaled_masked_softmax_cuda"
    assert "torch.compile" in choices["bias_dropout_fusion"].detail


def test_triton_alone_keeps_the_compiled_fusions_and_drops_apex_kernels(definition):
    smoke = definition.run_config("cuda-smoke")
    used = kernels.effective(smoke, kernels.decide(smoke, find_spec=finder(kernels.TRITON)))
    assert used == {"masked_softmax_fusion": False, "persist_layer_norm": False, "gradient_accumulation_fusion": False,
                    "bias_activation_fusion": True, "bias_dropout_fusion": True}


def test_a_cpu_run_uses_no_fused_kernel_whatever_is_installed(definition):
    tiny = definition.run_config("cpu-tiny")
    choices = kernels.decide(tiny, find_spec=finder(*ALL))
    assert not any(c.used or c.requested for c in choices.values())
    assert all("CPU" in c.detail for c in choices.values())


def test_a_broken_package_counts_as_missing(definition):
    def broken(name):
        raise ImportError("apex is half-installed")

    full = definition.run_config("full")
    assert not any(kernels.effective(full, kernels.decide(full, find_spec=broken)).values())


@pytest.mark.parametrize("precision, batch, heads, seq, applies", [
    ("bf16", 4, 8, 512, True),     # the seed on 8 GPUs, TP2
    ("bf16", 4, 16, 512, True),    # TP1
    ("bf16", 2, 4, 64, True),      # cuda-smoke
    ("fp32", 4, 8, 512, False),    # fp32 input never takes the kernel
    ("bf16", 4, 8, 16, False),     # key length must exceed 16
    ("bf16", 4, 8, 8192, False),   # ... and stay ≤ 4096
    ("bf16", 1, 2, 512, False),    # batch × heads must be a multiple of 4
    ("fp16", 4, 8, 36, False),     # 36 % 4 == 0, but 36 rows are not a multiple of 8 per block (keys ≤ 64)
])
def test_megatrons_softmax_predicate(precision, batch, heads, seq, applies):
    assert kernels.softmax_kernel_applies(half_precision=precision != "fp32", batch=batch, heads=heads,
                                          sq=seq, sk=seq) is applies


def test_an_unfused_decision_when_the_shapes_never_take_the_kernel(definition):
    tiny_bf16 = definition.run_config("cuda-smoke").replace(model={"seq_length": 16, "max_position_embeddings": 16})
    choice = kernels.decide(tiny_bf16, find_spec=finder())["masked_softmax_fusion"]
    assert (choice.requested, choice.used) == (True, False) and "never takes the fused kernel" in choice.detail


@pytest.mark.parametrize("sk, rows", [(64, 8), (128, 8), (256, 4), (512, 4), (4096, 4), (17, 8), (32, 8)])
def test_apex_batch_per_block(sk, rows):
    assert kernels.softmax_batch_per_block(sk) == rows


def test_megatron_lm_transformer_config_choices(definition):
    pytest.importorskip("megatron.core")
    from runner.trainer import transformer_config

    tiny = definition.run_config("cpu-tiny")
    config = transformer_config(tiny)
    assert config.deallocate_pipeline_outputs is True  # Megatron-LM hard-codes it; core's default is False
    assert config.deterministic_mode is True
    assert not (config.masked_softmax_fusion or config.persist_layer_norm or config.gradient_accumulation_fusion)
    full = definition.run_config("full")
    chosen = kernels.effective(full, kernels.decide(full, find_spec=finder()))
    config = transformer_config(full.replace(launch={"device": "cuda"}), chosen)
    assert not config.masked_softmax_fusion and not config.persist_layer_norm


# ---------------------------------------------------------------- determinism environment

def test_determinism_env_completes_and_checks_as_megatron_does():
    assert determinism_env({}) == {"NCCL_ALGO": "Ring", "NVTE_ALLOW_NONDETERMINISTIC_ALGO": "0",
                                   "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    assert determinism_env({"NCCL_ALGO": "Ring,CollnetDirect", "CUBLAS_WORKSPACE_CONFIG": ":16:8",
                            "NVTE_ALLOW_NONDETERMINISTIC_ALGO": "0"}) == {}
    for env, fragment in (({"NCCL_ALGO": "Tree"}, "NCCL_ALGO='Tree' is not deterministic"),
                          ({"NVTE_ALLOW_NONDETERMINISTIC_ALGO": "1"}, "NVTE_ALLOW_NONDETERMINISTIC_ALGO='1'"),
                          ({"CUBLAS_WORKSPACE_CONFIG": ":0:0"}, "CUBLAS_WORKSPACE_CONFIG"),
                          ({"MAMBA_DETERMINISTIC": "0"}, "MAMBA_DETERMINISTIC")):
        with pytest.raises(RuntimeError, match=fragment):
            determinism_env(env)


# ---------------------------------------------------------------- iteration-time and memory

class FakeClock:
    def __init__(self):
        self.now, self.barriers = 0.0, 0

    def __call__(self):
        return self.now

    def barrier(self):
        self.barriers += 1


def test_the_interval_timer_times_like_megatrons():
    clock = FakeClock()
    timer = IntervalTimer("cpu", clock=clock, barrier=clock.barrier)
    timer.start()
    clock.now = 3.0  # start-up gap + the process's first step
    assert timer.elapsed(reset=False) == 3.0  # the first step: read, not reset (not logged)
    clock.now = 4.0
    assert timer.elapsed(reset=True) == 4.0  # the second step's reading holds both: 2 iterations
    clock.now = 4.5
    assert timer.elapsed(reset=True) == 0.5
    timer.stop()  # a save
    clock.now = 10.0
    timer.start()
    clock.now = 10.25
    assert timer.elapsed(reset=True) == 0.25  # the save's 5.5 s are not iteration time
    assert clock.barriers == 7  # every start (2), stop (1) and reading (4) behind a barrier


def test_rss_anon_is_read_from_proc_status():
    text = "Name:\tpython\nVmHWM:\t  409600 kB\nVmRSS:\t  400000 kB\nRssAnon:\t  250880 kB\nRssFile:\t  149120 kB\n"
    assert rss_anon_bytes(text) == 250880 * 1024
    with pytest.raises(ValueError, match="no RssAnon"):
        rss_anon_bytes("Name:\tpython\n")
    assert rss_anon_bytes() > 1 << 20  # this process, on Linux


def test_a_cuda_rank_takes_nothing_of_the_cpu_compatibility_layer(monkeypatch):
    from runner import compat, worker

    calls = []
    monkeypatch.setattr(compat, "skip_jit_fuser_binding", lambda: calls.append("hook"))
    assert worker.before_megatron_import("cuda") == () and calls == []
    assert worker.before_megatron_import("cpu") == ("compat.skip_jit_fuser_binding",) and calls == ["hook"]
