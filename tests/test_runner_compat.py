"""Each CPU shim, tested on its own; plus the import hook that skips the jit fuser binding."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from goldens.cli.extras import missing_reason

if missing_reason("runner"):
    pytest.skip(missing_reason("runner"), allow_module_level=True)

import torch

from runner import compat

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def shims():
    if torch.cuda.is_available():
        pytest.skip("the CPU compatibility layer is never installed where CUDA is available")
    compat.install()
    yield
    compat.uninstall()


def test_hard_coded_cuda_devices_land_on_cpu(shims):
    assert torch.zeros(2, device="cuda").device.type == "cpu"
    assert torch.tensor([1.0], device=torch.device("cuda", 0)).device.type == "cpu"
    assert torch.empty(3, device=0).device.type == "cpu"  # a bare index means a GPU
    assert torch.ones(1, device=torch.cuda.current_device()).device.type == "cpu"
    t = torch.arange(3.0)
    assert t.cuda() is t
    assert t.to("cuda").device.type == "cpu"
    assert torch.equal(t.to("cuda"), t)


def test_uninstall_restores_stock_torch(shims):
    compat.uninstall()
    with pytest.raises((AssertionError, RuntimeError)):
        torch.zeros(1, device="cuda")
    compat.install()


def test_current_device_and_synchronize(shims):
    assert torch.cuda.current_device() == torch.device("cpu")
    assert torch.cuda.synchronize() is None


def test_type_answers_cuda_float_only_for_cpu_float32(shims):
    assert torch.zeros(1).type() == "torch.cuda.FloatTensor"
    assert torch.zeros(1, dtype=torch.int64).type() == "torch.LongTensor"
    assert torch.zeros(1, dtype=torch.bfloat16).type() == "torch.BFloat16Tensor"
    assert torch.zeros(1).type(torch.float64).dtype == torch.float64  # the conversion form is untouched


def test_megatron_clip_grads_runs_on_cpu_grads(shims):
    """clip_grads asserts grad.type() == 'torch.cuda.FloatTensor' and scales with a 'cuda' buffer."""
    from megatron.core.optimizer.clip_grads import clip_grad_by_total_norm_fp32

    param = torch.nn.Parameter(torch.ones(4))
    param.grad = torch.full((4,), 2.0)
    clip_grad_by_total_norm_fp32([param], max_norm=1.0, total_norm=4.0)
    assert torch.allclose(param.grad, torch.full((4,), 2.0 * 1.0 / (4.0 + 1e-6)))


def test_the_rng_tracker_is_the_cpu_twin(shims):
    from megatron.core import tensor_parallel

    tracker = tensor_parallel.get_cuda_rng_tracker()
    assert isinstance(tracker, compat.CpuRNGStatesTracker)


def test_fork_draws_from_its_own_stream_and_leaves_the_default_alone(shims):
    tracker = compat.CpuRNGStatesTracker()
    tracker.add("model-parallel-rng", 7)
    torch.manual_seed(1)
    outer_state = torch.get_rng_state()
    with tracker.fork("model-parallel-rng"):
        inside = torch.rand(3)
    assert torch.equal(torch.get_rng_state(), outer_state)
    expected = torch.Generator().manual_seed(7)
    assert torch.equal(inside, torch.rand(3, generator=expected))
    with tracker.fork("model-parallel-rng"):
        second = torch.rand(3)
    assert torch.equal(second, torch.rand(3, generator=expected))  # the stream continues


def test_tracker_states_round_trip_like_megatrons(shims):
    tracker = compat.CpuRNGStatesTracker()
    tracker.add("a", 11)
    saved = tracker.get_states()
    with tracker.fork("a"):
        first = torch.rand(2)
    tracker.set_states(saved)
    with tracker.fork("a"):
        again = torch.rand(2)
    assert torch.equal(first, again)
    with pytest.raises(ValueError, match="already exists"):
        tracker.add("b", 11)
    with pytest.raises(ValueError, match="already exists"):
        tracker.add("a", 12)
    with pytest.raises(KeyError), tracker.fork("missing"):
        pass


def test_manual_seed_keeps_megatrons_offsets(shims):
    from megatron.core import tensor_parallel

    compat.model_parallel_cpu_manual_seed(100, tp_rank=1)
    states = tensor_parallel.get_cuda_rng_tracker().get_states()
    for name, seed in (("model-parallel-rng", 100 + 2718 + 1), ("data-parallel-rng", 100),
                       ("expert-parallel-rng", 100 + 1024)):
        assert torch.equal(states[name], torch.Generator().manual_seed(seed).get_state()), name
    assert torch.equal(torch.get_rng_state(), torch.Generator().manual_seed(100).get_state())


def test_install_refuses_where_cuda_is_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(RuntimeError, match="must not be installed where CUDA is available"):
        compat.install()
    assert not compat.installed()


def test_import_hook_disables_the_fuser_before_megatron_uses_it():
    """In a fresh interpreter: the hook makes jit_fuser megatron's no-op, so decorating imports
    neither dynamo's compiler nor inductor, and the fused functions stay plain functions."""
    probe = (
        "import sys, json\n"
        "from runner.compat import skip_jit_fuser_binding\n"
        "skip_jit_fuser_binding()\n"
        "import megatron.core.models.bert.bert_model\n"
        "import megatron.core.jit as jit\n"
        "from megatron.core.fusions.fused_bias_dropout import bias_dropout_add_fused_train as f\n"
        "print(json.dumps({'noop': jit.jit_fuser is jit.noop_decorator, 'plain': type(f).__name__,\n"
        "                  'inductor': 'torch._inductor' in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", probe], capture_output=True, text=True,
                         cwd=REPO, timeout=240, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"noop": True, "plain": "function", "inductor": False}
