"""The in-process results queue for synchronous torch_dist saves (guarded private-variable shim)."""
from __future__ import annotations

import multiprocessing
import queue

import pytest

from goldens.cli.extras import missing_reason

if missing_reason("runner"):
    pytest.skip(missing_reason("runner"), allow_module_level=True)

import torch
from megatron.core import package_info
from megatron.core.dist_checkpointing.strategies import filesystem_async as fsa

from runner import compat
from runner.checkpoint import RESULTS_QUEUE_CHECKED, use_in_process_results_queue


@pytest.fixture
def fresh_queue(monkeypatch):
    monkeypatch.setattr(fsa, "_results_queue", None)


def test_guard_lists_the_installed_version():
    """If this fails, megatron-core was upgraded: re-read filesystem_async.py, then extend the list."""
    assert package_info.__version__.startswith(RESULTS_QUEUE_CHECKED)


def test_shim_installs_a_plain_queue(fresh_queue):
    assert use_in_process_results_queue()
    assert isinstance(fsa._results_queue, queue.Queue)
    assert fsa._get_write_results_queue() is fsa._results_queue  # megatron's getter now returns ours


def test_shim_leaves_other_versions_alone(fresh_queue, monkeypatch):
    monkeypatch.setattr(package_info, "__version__", "0.17.0")
    assert not use_in_process_results_queue()
    assert fsa._results_queue is None


def test_shim_leaves_a_changed_module_alone(monkeypatch):
    monkeypatch.delattr(fsa, "_results_queue")
    assert not use_in_process_results_queue()


def test_shim_keeps_an_existing_manager_queue(fresh_queue, monkeypatch):
    existing = object()  # e.g. an async save already made megatron's Manager queue
    monkeypatch.setattr(fsa, "_results_queue", existing)
    assert not use_in_process_results_queue()
    assert fsa._results_queue is existing


def test_synchronous_save_round_trips_without_a_manager_process(fresh_queue, tmp_path):
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing import ShardedTensor
    from megatron.core.dist_checkpointing.serialization import get_default_save_sharded_strategy

    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}",
                                         rank=0, world_size=1)
    compat.install()
    try:
        assert use_in_process_results_queue()
        strategy = get_default_save_sharded_strategy("torch_dist")
        strategy.thread_count = 1
        weights = torch.arange(6.0)
        target = tmp_path / "ckpt"
        target.mkdir()
        dist_checkpointing.save({"w": ShardedTensor.from_rank_offsets("w", weights)}, str(target), strategy)
        assert multiprocessing.active_children() == []  # no spawn-context Manager left running
        loaded = dist_checkpointing.load({"w": ShardedTensor.from_rank_offsets("w", torch.zeros(6))}, str(target))
        assert torch.equal(loaded["w"], weights)
    finally:
        compat.uninstall()
        torch.distributed.destroy_process_group()
