"""golden import-tb: TensorBoard event files → artifact, exact float32 values, Megatron's layout."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from goldens.cli.extras import missing_reason

if missing_reason("tb"):
    pytest.skip(missing_reason("tb"), allow_module_level=True)

from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
from typer.testing import CliRunner

from goldens.cli import app
from goldens.core.errors import FormatError
from goldens.files.formats.artifact import read_artifact
from goldens.files.ingest import discover_phases, import_tensorboard, read_event_file

# Values that float32 cannot hold exactly: the import must return float64(float32(x)), no rounding.
LOSSES = [10.123456789, 9.87654321, 9.5, 9.000001, 8.76543219876, 1e-7 + 8.0]


def f32(x: float) -> float:
    return float(np.float32(x))


# ---------------------------------------------------------------- writers used as fixtures

def write_with_summary_writer(logdir: Path, scalars: dict[str, dict[int, float]]) -> None:
    """What the runner and Megatron use: torch's SummaryWriter, one add_scalar per value."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(logdir))
    steps = sorted({s for by_step in scalars.values() for s in by_step})
    for step in steps:
        for tag, by_step in scalars.items():
            if step in by_step:
                writer.add_scalar(tag, by_step[step], step)
    writer.close()


def frame(payload: bytes) -> bytes:
    """TFRecord framing, built with TensorBoard's own CRC (independent of the reader under test)."""
    length = struct.pack("<Q", len(payload))
    return length + struct.pack("<I", masked_crc32c(length)) + payload + struct.pack("<I", masked_crc32c(payload))


def header_event(wall_time: float) -> event_pb2.Event:
    return event_pb2.Event(wall_time=wall_time, file_version="brain.Event:2")


def scalar_event(tag: str, step: int, value: float, wall_time: float = 0.0) -> event_pb2.Event:
    event = event_pb2.Event(wall_time=wall_time, step=step)
    event.summary.value.add(tag=tag, simple_value=value)
    return event


def write_events(path: Path, events: list[event_pb2.Event]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(frame(e.SerializeToString()) for e in events))
    return path


def tensor_event(tag: str, step: int, tensor: tensor_pb2.TensorProto, plugin: str | None) -> event_pb2.Event:
    event = event_pb2.Event(wall_time=1.0, step=step)
    value = event.summary.value.add(tag=tag)
    value.tensor.CopyFrom(tensor)
    if plugin:
        value.metadata.CopyFrom(summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin)))
    return event


# ---------------------------------------------------------------- values

def test_summary_writer_values_come_back_float32_exact_with_spaced_tags(tmp_path):
    loss = {step: LOSSES[i] for i, step in enumerate(range(1, 7))}
    zeros = {step: 1000.0 + step for step in range(1, 7)}
    write_with_summary_writer(tmp_path / "tb", {"lm loss": loss, "num-zeros": zeros,
                                                "lm loss vs samples": {32 * s: v for s, v in loss.items()}})
    artifact = import_tensorboard(tmp_path / "tb", case="demo")

    metrics = artifact.phases[1].metrics
    assert list(metrics) == ["lm loss", "num-zeros"]  # "vs samples" is another x axis, not a golden
    assert metrics["lm loss"].steps.tolist() == [1, 2, 3, 4, 5, 6]
    assert metrics["lm loss"].values.tolist() == [f32(v) for v in LOSSES]
    assert metrics["lm loss"].values[0] == 10.123456954956055  # the float32 nearest 10.123456789
    assert metrics["num-zeros"].values.tolist() == [1001.0, 1002.0, 1003.0, 1004.0, 1005.0, 1006.0]
    assert (artifact.phases[1].first_step, artifact.phases[1].last_step) == (1, 6)
    assert artifact.case == "demo" and artifact.status == "complete"


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=1, max_size=20))
def test_any_float32_round_trips_bit_exact(tmp_path_factory, values):
    logdir = tmp_path_factory.mktemp("tb")
    write_events(logdir / "events.out.tfevents.1.host",
                 [header_event(1.0)] + [scalar_event("lm loss", i + 1, v) for i, v in enumerate(values)])
    got = import_tensorboard(logdir).phases[1].metrics["lm loss"].values
    assert got.tobytes() == np.asarray(values, dtype=np.float32).astype(np.float64).tobytes()


def test_tensor_encoded_scalars_float_and_double(tmp_path):
    def scalar_tensor(dtype: int, **field) -> tensor_pb2.TensorProto:
        return tensor_pb2.TensorProto(dtype=dtype, tensor_shape=tensor_shape_pb2.TensorShapeProto(), **field)

    DT_FLOAT, DT_DOUBLE, DT_STRING = 1, 2, 7
    events = [header_event(1.0),
              # TF2 writers name the plugin on a tag's first value only
              tensor_event("lm loss", 1, scalar_tensor(DT_FLOAT, float_val=[0.1]), "scalars"),
              tensor_event("lm loss", 2, scalar_tensor(DT_FLOAT, tensor_content=np.float32(0.2).tobytes()), None),
              tensor_event("grad-norm", 1, scalar_tensor(DT_DOUBLE, double_val=[0.123456789012345]), "scalars"),
              tensor_event("args", 1, scalar_tensor(DT_STRING, string_val=[b"--lr 1e-4"]), "text"),
              tensor_event("hist", 1, scalar_tensor(DT_FLOAT, float_val=[5.0]), "histograms")]
    metrics = import_tensorboard(write_events(tmp_path / "tb" / "events.out.tfevents.1.h", events).parent) \
        .phases[1].metrics
    assert sorted(metrics) == ["grad-norm", "lm loss"]
    assert metrics["lm loss"].values.tolist() == [f32(0.1), f32(0.2)]
    assert metrics["grad-norm"].values.tolist() == [0.123456789012345]  # a double stays a double


# ---------------------------------------------------------------- Megatron's layout

def test_run_1_and_run_2_become_phases_1_and_2(tmp_path):
    write_with_summary_writer(tmp_path / "tb" / "run_1", {"lm loss": {1: 9.25, 2: 9.125, 3: 9.0, 4: 8.875}})
    write_with_summary_writer(tmp_path / "tb" / "run_2", {"lm loss": {3: 9.0, 4: 8.75}})
    artifact = import_tensorboard(tmp_path / "tb")
    assert sorted(artifact.phases) == [1, 2]
    assert artifact.phases[1].metrics["lm loss"].as_dict() == {1: 9.25, 2: 9.125, 3: 9.0, 4: 8.875}
    assert artifact.phases[2].metrics["lm loss"].as_dict() == {3: 9.0, 4: 8.75}
    assert (artifact.phases[2].first_step, artifact.phases[2].last_step) == (3, 4)

    only_second = import_tensorboard(tmp_path / "tb", phase=2)
    assert list(only_second.phases) == [2]


def test_flat_folder_is_the_phase_given(tmp_path):
    write_with_summary_writer(tmp_path / "tb", {"lm loss": {1: 2.5}})
    assert list(import_tensorboard(tmp_path / "tb", phase=2).phases) == [2]
    assert list(import_tensorboard(tmp_path / "tb").phases) == [1]


def test_run_folder_with_tensorboard_subfolder_and_megatron_results_folder(tmp_path):
    write_with_summary_writer(tmp_path / "run" / "tensorboard", {"lm loss": {1: 2.5}})
    write_with_summary_writer(tmp_path / "meg" / "results", {"lm loss": {1: 3.5}})
    assert import_tensorboard(tmp_path / "run").phases[1].metrics["lm loss"].as_dict() == {1: 2.5}
    assert import_tensorboard(tmp_path / "meg").phases[1].metrics["lm loss"].as_dict() == {1: 3.5}


def test_files_ordered_by_creation_time_and_later_file_wins_on_duplicate_steps(tmp_path):
    logdir = tmp_path / "tb"
    # Names sort opposite to creation time: the order must come from the first record's wall time.
    write_events(logdir / "events.out.tfevents.2000.a", [header_event(1000.0),  # the first job
                                                          scalar_event("lm loss", 1, 4.0),
                                                          scalar_event("lm loss", 2, 3.5),
                                                          scalar_event("lm loss", 3, 3.25)])
    write_events(logdir / "events.out.tfevents.1000.b", [header_event(2000.0),  # restarted after step 1
                                                          scalar_event("lm loss", 2, 3.0),
                                                          scalar_event("lm loss", 3, 2.5),
                                                          scalar_event("lm loss", 4, 2.0)])
    write_events(logdir / "events.out.tfevents.3000.c", [header_event(3000.0)])  # header-only
    (logdir / "events.out.tfevents.4000.d").write_bytes(b"")  # created, never flushed
    series = import_tensorboard(logdir).phases[1].metrics["lm loss"]
    assert series.as_dict() == {1: 4.0, 2: 3.0, 3: 2.5, 4: 2.0}


def test_header_only_file_reads_as_no_scalars(tmp_path):
    path = write_events(tmp_path / "events.out.tfevents.1.h", [header_event(5.0)])
    scalars = read_event_file(path)
    assert scalars.tags == {} and scalars.created == 5.0


# ---------------------------------------------------------------- bad input

def good_file(tmp_path: Path) -> Path:
    return write_events(tmp_path / "tb" / "events.out.tfevents.1.h",
                        [header_event(1.0), scalar_event("lm loss", 1, 2.0), scalar_event("lm loss", 2, 1.5)])


def test_flipped_byte_is_a_checksum_error(tmp_path):
    path = good_file(tmp_path)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="checksum mismatch") as err:
        import_tensorboard(path.parent)
    assert str(path) in str(err.value)


def test_truncated_file_is_an_error(tmp_path):
    path = good_file(tmp_path)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(FormatError, match="truncated event file"):
        import_tensorboard(path.parent)


def test_valid_frame_around_garbage_is_not_an_event(tmp_path):
    path = tmp_path / "tb" / "events.out.tfevents.1.h"
    path.parent.mkdir()
    path.write_bytes(frame(header_event(1.0).SerializeToString()) + frame(b"\xff\xff\xff\xff"))
    with pytest.raises(FormatError, match="not a TensorBoard Event"):
        import_tensorboard(path.parent)


def test_missing_logs_and_unknown_phase_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FormatError, match="no TensorBoard event files"):
        import_tensorboard(tmp_path / "empty")
    with pytest.raises(FormatError, match="not a directory"):
        import_tensorboard(tmp_path / "absent")
    write_with_summary_writer(tmp_path / "three" / "run_3", {"lm loss": {1: 1.0}})
    with pytest.raises(FormatError, match="phases 1 and 2 only"):
        discover_phases(tmp_path / "three")
    only_header = write_events(tmp_path / "hdr" / "events.out.tfevents.1.h", [header_event(1.0)])
    with pytest.raises(FormatError, match="no per-iteration scalars"):
        import_tensorboard(only_header.parent)


# ---------------------------------------------------------------- CLI

def test_cli_writes_an_artifact_that_reads_back_equal(tmp_path):
    write_with_summary_writer(tmp_path / "tb" / "run_1", {"lm loss": {1: LOSSES[0], 2: LOSSES[1]}})
    write_with_summary_writer(tmp_path / "tb" / "run_2", {"lm loss": {2: LOSSES[1]}})
    out = tmp_path / "artifact.json"
    result = CliRunner().invoke(app, ["import-tb", str(tmp_path / "tb"), "--case", "bert_tp2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    artifact = read_artifact(out)
    expected = import_tensorboard(tmp_path / "tb", case="bert_tp2")
    assert artifact.case == "bert_tp2" and sorted(artifact.phases) == [1, 2]
    for number in (1, 2):
        assert artifact.phases[number].metrics == expected.phases[number].metrics
    assert artifact.phases[1].metrics["lm loss"].values.tolist() == [f32(LOSSES[0]), f32(LOSSES[1])]


def test_cli_corrupt_file_one_line_exit_2_nothing_written(tmp_path):
    path = good_file(tmp_path)
    path.write_bytes(path.read_bytes()[:-1])
    out = tmp_path / "artifact.json"
    result = CliRunner().invoke(app, ["import-tb", str(path.parent), "--out", str(out)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and result.output.startswith("error: ")
    assert "truncated event file" in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_cli_hostile_case_name_is_refused(tmp_path):
    path = good_file(tmp_path)
    result = CliRunner().invoke(app, ["import-tb", str(path.parent), "--case", "../x", "--out",
                                      str(tmp_path / "a.json")])
    assert result.exit_code == 2 and "invalid case name" in result.output
    result = CliRunner().invoke(app, ["import-tb", str(path.parent), "--run-id", "a\nb", "--out",
                                      str(tmp_path / "a.json")])
    assert result.exit_code == 2 and result.output.startswith("error: key 'run_id': invalid run id 'a\\nb'")
    assert result.output.count("\n") == 1 and not (tmp_path / "a.json").exists()


def test_cli_out_that_cannot_be_written_is_one_line_exit_2(tmp_path):
    path = good_file(tmp_path)
    folder = tmp_path / "out"
    folder.mkdir()
    blocked = tmp_path / "a-file" / "artifact.json"  # its parent is a file
    blocked.parent.write_text("")
    for out, needle in ((folder, "it is a directory"), (blocked, "File exists")):
        result = CliRunner().invoke(app, ["import-tb", str(path.parent), "--out", str(out)])
        assert result.exit_code == 2, result.output
        assert result.output.count("\n") == 1 and result.output.startswith(f"error: cannot write {out}")
        assert needle in result.output
    assert list(folder.iterdir()) == [] and blocked.parent.read_text() == ""


def test_nonsense_wall_times_do_not_break_the_import(tmp_path):
    logdir = tmp_path / "tb"
    write_events(logdir / "events.out.tfevents.1.a", [header_event(float("nan")), scalar_event("lm loss", 1, 2.0)])
    write_events(logdir / "events.out.tfevents.2.b", [header_event(1e300), scalar_event("lm loss", 1, 3.0)])
    artifact = import_tensorboard(logdir)
    assert artifact.run_id == "tb-unknown"
    # a file without a usable creation time is ordered after those with one (then by name)
    assert artifact.phases[1].metrics["lm loss"].as_dict() == {1: 2.0}


def test_runner_layout_phase_folders_and_double_precision_scalars(tmp_path):
    """Our runner writes tensorboard/phase<N>/; with double_precision the values are float64-exact."""
    from torch.utils.tensorboard import SummaryWriter

    for phase, steps in ((1, (1, 2, 3)), (2, (3,))):
        writer = SummaryWriter(str(tmp_path / "run" / "tensorboard" / f"phase{phase}"))
        for step in steps:
            writer.add_scalar("lm loss", LOSSES[step], step, new_style=True, double_precision=True)
        writer.close()
    artifact = import_tensorboard(tmp_path / "run")
    assert artifact.phases[1].metrics["lm loss"].as_dict() == {1: LOSSES[1], 2: LOSSES[2], 3: LOSSES[3]}
    assert artifact.phases[2].metrics["lm loss"].as_dict() == {3: LOSSES[3]}


def test_two_folders_claiming_one_phase_is_an_error(tmp_path):
    write_with_summary_writer(tmp_path / "tb" / "run_1", {"lm loss": {1: 1.0}})
    write_with_summary_writer(tmp_path / "tb" / "phase1", {"lm loss": {1: 1.0}})
    with pytest.raises(FormatError, match="both claim phase 1"):
        import_tensorboard(tmp_path / "tb")


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=64), min_size=1, max_size=4), st.binary(max_size=8))
def test_hostile_bytes_are_a_format_error_or_read_never_a_crash(tmp_path_factory, payloads, tail):
    logdir = tmp_path_factory.mktemp("tb")
    (logdir / "events.out.tfevents.1.h").write_bytes(b"".join(frame(p) for p in payloads) + tail)
    try:
        import_tensorboard(logdir)
    except FormatError as exc:
        refusal = str(exc)
    else:
        refusal = ""
    assert "\n" not in refusal


def test_undecodable_scalar_tensor_is_a_format_error(tmp_path):
    bad = tensor_pb2.TensorProto(dtype=1, tensor_content=b"abc")  # 3 bytes cannot be a float32
    path = write_events(tmp_path / "tb" / "events.out.tfevents.1.h",
                        [header_event(1.0), tensor_event("lm loss", 7, bad, "scalars")])
    with pytest.raises(FormatError, match="tag 'lm loss' step 7: undecodable tensor"):
        import_tensorboard(path.parent)
