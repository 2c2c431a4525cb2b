"""TensorBoard event files → run artifact, at full precision.

Megatron users hold years of TensorBoard logs; this turns them into our artifact without
Megatron's rounding to 5 decimals. A scalar in an event file is a float32 (``simple_value``,
or a rank-0 tensor for TF2-style writers); it becomes the float64 that holds exactly the same
number, so a value written by ``SummaryWriter.add_scalar`` reads back bit for bit.

Reading: the TFRecord framing (uint64 length, masked CRC-32C of the length, payload, masked
CRC-32C of the payload) is walked here over the whole file in memory, both CRCs are checked
with the C implementation from ``google-crc32c``, and each payload is decoded by the
``tensorboard`` package's own ``Event`` protobuf. TensorBoard's ``EventAccumulator`` does the
same with a pure-Python CRC and per-record file reads, which is why this is faster.

Layout rules (Megatron's, written down once):
- ``LOGDIR/run_1``, ``LOGDIR/run_2`` (Megatron; our runner writes ``phase1``, ``phase2``) hold
  the phases of a resume case; otherwise ``LOGDIR`` itself (or its ``results/`` folder) is one
  phase. A run folder works too: its ``tensorboard/`` is used.
- Event files of one phase are read oldest first, ordered by the wall time of their first
  record (written when the writer was created), then by name; a file without a usable wall
  time comes after those with one.
- A step logged twice for one tag keeps the LATER value: a restarted job re-logs the steps
  after its last checkpoint, and TensorBoard itself drops the orphaned earlier values on a
  restart. (Megatron's own reader keeps the earlier one; we follow TensorBoard.)
- Header-only files (just the ``file_version`` record) and empty files contribute nothing.
- Only per-iteration tags are kept: Megatron also logs each metric against another x axis
  (``"lm loss vs samples"``, ``"... vs tokens"``), whose "step" is a sample count.
- A corrupt or truncated file is an error naming the file and the byte offset; nothing is
  guessed. (EventAccumulator stops silently at a truncated tail; a golden must not.)
"""
from __future__ import annotations

import datetime as _dt
import math
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import FormatError
from ..core.model import Artifact, MetricSeries, Phase

EVENT_FILE_MARK = "tfevents"
PHASE_DIR = re.compile(r"^(?:run_|phase)(\d+)$")  # Megatron's run_N; our runner's phaseN
# Megatron logs every metric twice: per iteration, and "<tag> vs samples" against consumed samples
# (forks add "vs tokens"). Only the per-iteration series is a golden.
OTHER_AXIS_SUFFIXES = (" vs samples", " vs tokens")
SCALARS_PLUGIN = "scalars"

_HEADER = struct.Struct("<QI")
_CRC = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8  # TFRecord stores crc rotated right by 15 bits plus this


def _crc32c_function():
    """CRC-32C in C when ``google-crc32c`` is installed; TensorBoard's pure-Python one otherwise."""
    try:
        import google_crc32c

        return google_crc32c.value
    except ImportError:  # correct but slow; pip install google-crc32c
        from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import crc32c

        return crc32c


def iter_records(data: bytes, path: object) -> Iterator[tuple[int, bytes]]:
    """(byte offset, payload) of each record of a TFRecord stream, CRC-checked; FormatError on damage."""
    crc32c = _crc32c_function()
    unpack_header, unpack_crc = _HEADER.unpack_from, _CRC.unpack_from
    pos, end_of_data = 0, len(data)
    while pos < end_of_data:
        if end_of_data - pos < 12:
            raise FormatError(f"truncated event file: record header cut off at byte {pos}", path=path)
        length, length_crc = unpack_header(data, pos)
        crc = crc32c(data[pos:pos + 8])  # masking inlined: this loop runs once per scalar
        if (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF != length_crc:
            raise FormatError(f"corrupt event file: length checksum mismatch at byte {pos}", path=path)
        start = pos + 12
        stop = start + length
        if stop + 4 > end_of_data:
            raise FormatError(f"truncated event file: record at byte {pos} declares {length} bytes, "
                              f"only {max(end_of_data - start - 4, 0)} present", path=path)
        payload = data[start:stop]
        crc = crc32c(payload)
        if (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF != unpack_crc(data, stop)[0]:
            raise FormatError(f"corrupt event file: data checksum mismatch in record at byte {pos}", path=path)
        yield pos, payload
        pos = stop + 4


@dataclass
class TagScalars:
    """One tag's values in file order; ``exact`` lists the indexes that were not float32."""

    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    exact: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class EventFileScalars:
    """The scalars of one event file, in file order, per tag."""

    path: Path
    created: float | None  # wall time of the first record (the writer's creation)
    tags: dict[str, TagScalars]


def read_event_file(path: str | Path) -> EventFileScalars:
    """Every scalar of one event file (simple_value and rank-0 numeric tensors)."""
    from google.protobuf.message import DecodeError
    from tensorboard.compat.proto import event_pb2

    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise FormatError(f"cannot read event file: {exc.strerror}", path=p) from None
    parse_event = event_pb2.Event.FromString
    tags: dict[str, TagScalars] = {}
    plugin_of: dict[str, str] = {}  # TF2 writers name a tag's plugin only on its first value
    created: float | None = None
    for offset, payload in iter_records(data, p):
        try:
            event = parse_event(payload)
        except DecodeError:
            raise FormatError(f"corrupt event file: record at byte {offset} is not a TensorBoard Event",
                              path=p) from None
        if offset == 0 and math.isfinite(event.wall_time):
            created = event.wall_time
        step = event.step
        for value in event.summary.value:  # empty for the other event kinds
            tag = value.tag
            if value.WhichOneof("value") == "simple_value":
                number = value.simple_value
                exact = False
            else:
                if value.HasField("metadata") and value.metadata.plugin_data.plugin_name:
                    plugin_of.setdefault(tag, value.metadata.plugin_data.plugin_name)
                if not value.HasField("tensor") or plugin_of.get(tag, SCALARS_PLUGIN) != SCALARS_PLUGIN:
                    continue
                scalar = _tensor_scalar(value.tensor, path=p, where=f"tag {tag!r} step {step}")
                if scalar is None:
                    continue
                number, is_float32 = scalar
                exact = not is_float32
            entry = tags.get(tag)
            if entry is None:
                entry = tags[tag] = TagScalars()
            if exact:
                entry.exact.append(len(entry.values))
            entry.steps.append(step)
            entry.values.append(number)
    return EventFileScalars(p, created, tags)


def _tensor_scalar(tensor: Any, *, path: Path, where: str) -> tuple[float, bool] | None:
    """A rank-0 numeric TensorProto as (float64 value, was-float32); None for other data (text,
    vectors); FormatError for a tensor TensorBoard itself cannot decode."""
    from tensorboard.util import tensor_util

    if tensor.tensor_shape.dim and any(d.size != 1 for d in tensor.tensor_shape.dim):
        return None
    try:
        array = tensor_util.make_ndarray(tensor)
    except (TypeError, ValueError, KeyError, OverflowError, IndexError) as exc:
        raise FormatError(f"{where}: undecodable tensor (dtype {tensor.dtype}): {exc}", path=path) from None
    if array.size != 1 or array.dtype.kind not in "fiub":
        return None
    return float(array.reshape(()).astype(np.float64)), array.dtype == np.float32


# ---------------------------------------------------------------- layout

def _event_files(directory: Path) -> list[Path]:
    """Event files directly in ``directory`` or its ``results/`` folder (Megatron's two places)."""
    found: list[Path] = []
    for folder in (directory, directory / "results"):
        if folder.is_dir():
            found.extend(f for f in folder.iterdir()
                         if f.name.startswith("events") and EVENT_FILE_MARK in f.name and f.is_file())
    return found


def discover_phases(logdir: str | Path, phase: int | None = None) -> dict[int, list[Path]]:
    """Phase number → its event files (unordered), following Megatron's layouts."""
    root = Path(logdir)
    if not root.is_dir():
        raise FormatError("not a directory of TensorBoard logs", path=root)
    phase_dirs: dict[int, Path] = {}
    for d in sorted(root.iterdir()):
        m = PHASE_DIR.match(d.name)
        if m and d.is_dir():
            if int(m[1]) in phase_dirs:
                raise FormatError(f"{phase_dirs[int(m[1])].name} and {d.name} both claim phase {int(m[1])}",
                                  path=root)
            phase_dirs[int(m[1])] = d
    if phase_dirs:
        unknown = sorted(n for n in phase_dirs if n not in (1, 2))
        if unknown:
            raise FormatError(f"{phase_dirs[unknown[0]].name}: an artifact holds phases 1 and 2 only", path=root)
        if phase is not None:
            if phase not in phase_dirs:
                raise FormatError(f"no run_{phase} (or phase{phase}) folder for --phase {phase}", path=root)
            phase_dirs = {phase: phase_dirs[phase]}
        layout = {n: _event_files(d) for n, d in sorted(phase_dirs.items())}
    else:
        files = _event_files(root)
        if not files and (root / "tensorboard").is_dir():
            return discover_phases(root / "tensorboard", phase)
        layout = {phase or 1: files}
    if not any(layout.values()):
        raise FormatError("no TensorBoard event files (events.out.tfevents.*) found", path=root)
    if any(n not in (1, 2) for n in layout):
        raise FormatError("--phase must be 1 or 2", path=root)
    return layout


def _creation_order(scalars: EventFileScalars) -> tuple[float, str]:
    return (scalars.created if scalars.created is not None else math.inf, scalars.path.name)


def merge_scalars(files: list[EventFileScalars]) -> dict[str, MetricSeries]:
    """Per-iteration tags → series; files oldest first, so a re-logged step keeps the later value."""
    merged: dict[str, dict[int, float]] = {}
    for scalars in sorted(files, key=_creation_order):
        for tag, data in scalars.tags.items():
            if tag.endswith(OTHER_AXIS_SUFFIXES):
                continue
            values = np.asarray(data.values, dtype=np.float64)
            narrow = np.ones(values.shape, dtype=bool)
            narrow[data.exact] = False
            # Exact widening even if a protobuf backend handed float32 back as its shortest decimal.
            values[narrow] = values[narrow].astype(np.float32).astype(np.float64)
            merged.setdefault(tag, {}).update(zip(data.steps, values.tolist(), strict=True))
    return {tag: _with_grid(MetricSeries.from_mapping(tag, by_step)) for tag, by_step in merged.items()}


def _with_grid(series: MetricSeries) -> MetricSeries:
    """The Megatron grid header (first, last, common interval) the artifact will carry."""
    steps = series.steps
    interval = int(np.gcd.reduce(np.diff(steps))) if steps.size > 1 else 1
    return MetricSeries(series.name, steps, series.values, int(steps[0]), int(steps[-1]), interval or 1)


# ---------------------------------------------------------------- artifact

def import_tensorboard(logdir: str | Path, *, phase: int | None = None, case: str | None = None,
                       run_id: str | None = None) -> Artifact:
    """TensorBoard logs of one run (all its phases) → an Artifact with full-precision metrics."""
    root = Path(logdir)
    layout = discover_phases(root, phase)
    phases: dict[int, Phase] = {}
    sources: dict[str, list[str]] = {}
    created: list[float] = []
    for number, paths in layout.items():
        files = sorted((read_event_file(p) for p in paths), key=_creation_order)
        metrics = merge_scalars(files)
        if not metrics:
            continue
        steps = np.concatenate([s.steps for s in metrics.values()])
        phases[number] = Phase(number, metrics, int(steps.min()), int(steps.max()))
        sources[str(number)] = [str(f.path.relative_to(root)) for f in files]
        created += [f.created for f in files if f.created is not None]
    if not phases:
        raise FormatError("event files hold no per-iteration scalars", path=root)
    started = _utc(min(created)) if created else None
    provenance = {
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "source": {"kind": "tensorboard", "logdir": str(root), "event_files": sources,
                   "started": started.isoformat(timespec="seconds") if started else None},
    }
    default_id = "tb-" + (started.strftime("%Y%m%dT%H%M%SZ") if started else "unknown")
    return Artifact(case=case or root.resolve().name, run_id=run_id or default_id, status="complete",
                    provenance=provenance, phases=phases)


def _utc(wall_time: float) -> _dt.datetime | None:
    """A record's wall time as UTC, or None when a writer stored nonsense there."""
    try:
        return _dt.datetime.fromtimestamp(wall_time, _dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None
