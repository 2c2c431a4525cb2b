"""import-tb of the runner's own TensorBoard output yields exactly what the runner recorded.

The runner's Recorder writes each step twice: a JSONL line (full precision, what the artifact is
built from) and TensorBoard scalars. Here one process plays rank 0 of a one-rank gloo group,
records float64 values that float32 cannot hold (a step time, a byte count above 2**24), and
``golden import-tb`` of the run folder must give back the same float64 numbers bit for bit.
"""
from __future__ import annotations

import pytest

from goldens.cli.extras import missing_reason

if missing_reason("runner"):
    pytest.skip(missing_reason("runner"), allow_module_level=True)

from goldens.files.ingest import import_tensorboard

STEPS = {
    1: {"lm loss": 10.512345678901234, "num-zeros": 33554433.0, "iteration-time": 0.123456789012345,
        "cpu-max-rss-bytes": 1234567891.0},
    2: {"lm loss": 10.4, "num-zeros": 17.0, "iteration-time": 0.1, "cpu-max-rss-bytes": 1234567893.0},
    3: {"lm loss": 9.999999999999998, "num-zeros": 0.0, "iteration-time": 0.11, "cpu-max-rss-bytes": 1234567895.0},
}


@pytest.fixture
def one_rank_group(tmp_path):
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    yield torch
    dist.destroy_process_group()


def test_import_tb_of_the_recorder_output_equals_its_full_precision_log(tmp_path, one_rank_group):
    from runner.metrics import Recorder, read_log

    run = tmp_path / "runs" / "r1"
    recorded: dict[int, dict[str, float]] = {}
    for phase, steps in ((1, (1, 2, 3)), (2, (3,))):
        recorder = Recorder(metrics_path=run / "logs" / f"phase{phase}" / "metrics.jsonl",
                            tensorboard_dir=run / "tensorboard" / f"phase{phase}", phase=phase, rank=0, device="cpu")
        for step in steps:
            recorder.record(step, STEPS[step])
        recorder.close()
        logged, _ = read_log(run / "logs" / f"phase{phase}" / "metrics.jsonl")
        recorded[phase] = logged

    artifact = import_tensorboard(run)
    for phase in (1, 2):
        metrics = artifact.phases[phase].metrics
        for step, values in recorded[phase].items():
            for name, value in values.items():
                assert metrics[name].as_dict()[step] == value, (phase, name, step)
    assert artifact.phases[1].metrics["num-zeros"].as_dict()[1] == 33554433.0  # 2**25 + 1: not a float32
