"""The test suite's builders: plain functions and classes that make what the tests start from.

Every test module takes its builders from here and its shared fixtures from ``conftest.py``;
no test module imports another. What is here, in order:

- series and golden sets: ``goldens.core.model`` objects from plain numbers;
- runs: artifacts in memory, and ``artifact.json`` files written as the runner writes them;
- synthetic golden stores in a folder, and a git repository whose store holds revisions;
- a small Megatron-style ``test_cases`` tree holding every oddity of the real one (``odd_tree``),
  TensorBoard event files, and the harness that runs Megatron's own test code in-process;
- results for the report tests (``goldens.core.result`` objects, numbers chosen by hand);
- a scripted ``ReviewIO`` for the review loop, and the worker the approval races start;
- readers the report tests share (an HTML collector, Markdown tables), ``tree_bytes`` and
  ``tree_state``; ``invoke``, the CLI in this process with any escaping exception a failure;
- ``FakeCI``: GitHub's and GitLab's REST APIs on the loopback (``golden fetch``, the action's PR
  comment), and the zip archives their artifacts hold;
- ``ActionRun``: a composite GitHub Action's steps run here (GitHub's expressions, GITHUB_* files).
- Megatron's own test functions as the oracle (``megatron_oracle``, ``megatron_verdict``).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import types
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Union

import numpy as np

from goldens.core.model import Artifact, GoldenKey, GoldenSet, MetricSeries, Phase
from goldens.core.result import (
    STEP_STATUS_CODE,
    ArgChange,
    ComparisonResult,
    FingerprintCheck,
    MetricVerdict,
    PhaseResult,
    ResumeCheck,
    Rule,
    StepStatus,
    StepTable,
    StructuralDrift,
    Verdict,
)
from goldens.files.formats.artifact import dumps_artifact
from goldens.files.formats.golden import parse_golden
from goldens.store import GoldenStore

# ---------------------------------------------------------------- series and golden sets

STEPS = range(1, 21)
LOSS = {s: 10.0 - 0.25 * s + 1e-9 * s * s for s in STEPS}  # values with many significant digits
ZEROS = {s: float(1000 + 3 * s) for s in STEPS}

Values = Union[MetricSeries, Mapping[int, float], Sequence[float], np.ndarray]
"""One metric's values: a series as is, a mapping step → value, or values on consecutive steps."""


def series(name: str, steps: Any = None, values: Any = 1.0, *, grid: bool = False, start_step: int | None = None,
           end_step: int | None = None, step_interval: int | None = None) -> MetricSeries:
    """One metric over steps.

    ``steps``: the step numbers; or a mapping step → value (``values`` is then not given); or None
    for 1, 2, … len(values). ``values``: one per step, or one number on every step.
    ``grid=True`` gives the series the header a Megatron file declares: start and end from its steps,
    interval 1. A ``start_step``, ``end_step`` or ``step_interval`` given explicitly wins, grid or not;
    without ``grid`` and without them the series has no header (what the engine tests compare).
    """
    if isinstance(steps, Mapping):
        steps, values = sorted(steps), [steps[s] for s in sorted(steps)]
    if steps is None:
        steps = np.arange(1, len(values) + 1)
    steps = np.asarray(steps, dtype=np.int64)
    if np.isscalar(values):
        values = np.full(steps.shape, values, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if grid:
        start_step = int(steps[0]) if start_step is None else start_step
        end_step = int(steps[-1]) if end_step is None else end_step
        step_interval = 1 if step_interval is None else step_interval
    return MetricSeries(name, steps, values, start_step, end_step, step_interval)


def metric_series(name: str, values: Values, *, start: int = 1) -> MetricSeries:
    """A metric as a golden file holds it (with its grid header): a series is kept as it is, a
    mapping gives its steps, a plain sequence sits on steps ``start``, ``start + 1``, …"""
    if isinstance(values, MetricSeries):
        return values
    if isinstance(values, Mapping):
        return series(name, values, grid=True)
    count = len(values)
    return series(name, np.arange(start, start + count), values, grid=True,
                  start_step=start, end_step=start + count - 1)


def golden_set(metrics: Mapping[str, Values], *, start: int = 1) -> GoldenSet:
    """A golden set: metric name → values (see ``metric_series``)."""
    return GoldenSet(metrics={name: metric_series(name, values, start=start) for name, values in metrics.items()})


def shifted(values: Mapping[int, float], factor: float) -> dict[int, float]:
    return {s: v * factor for s, v in values.items()}


# ---------------------------------------------------------------- runs

def phase(number: int, metrics: Mapping[str, Values], resumed_from: int | None = None) -> Phase:
    """One phase; its first and last step are the first and last step any of its metrics holds."""
    made = {name: metric_series(name, values) for name, values in metrics.items()}
    steps = sorted({int(s) for m in made.values() for s in m.steps})
    return Phase(number, made, steps[0], steps[-1], resumed_from)


def artifact(case: str, run_id: str, metrics: Mapping[str, Values], *, status: str = "complete",
             provenance: dict | None = None, phase2: Mapping[str, Values] | None = None,
             resumed_from: int | None = None, error: str | None = None) -> Artifact:
    """A run in memory: phase 1 of ``metrics``, and phase 2 of ``phase2`` when given."""
    phases = {1: phase(1, metrics)}
    if phase2 is not None:
        phases[2] = phase(2, phase2, resumed_from)
    return Artifact(case=case, run_id=run_id, status=status, provenance=dict(provenance or {}), phases=phases,
                    error=error)


def write_run(runs: Path, case: str, run_id: str, metrics: Mapping[str, Values], *, status: str = "complete",
              env: str | None = "dev", platform: str | None = "cpu", fingerprint: str = "fp-1",
              phase2: Mapping[str, Values] | None = None, resumed_from: int | None = None,
              provenance: dict | None = None) -> Path:
    """runs/<run_id>/artifact.json, as the runner would write it.

    Its provenance: created, device cpu, ``fingerprint``, ``env`` and ``platform`` (None leaves a key
    out); ``provenance`` adds keys or overrides them (a None value leaves that key out).
    """
    made: dict[str, Any] = {"created": "2025-01-01T00:00:00+00:00", "device": "cpu", "fingerprint": fingerprint,
                            "env": env, "platform": platform}
    made.update(provenance or {})
    run = artifact(case, run_id, metrics, status=status, phase2=phase2, resumed_from=resumed_from,
                   provenance={k: v for k, v in made.items() if v is not None},
                   error=None if status == "complete" else "rank 3 died")
    path = runs / run_id / "artifact.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps_artifact(run))
    return path


# ---------------------------------------------------------------- synthetic stores

def make_store(root: Path, cases: tuple[str, ...] = ("tiny",), *,
               case_yaml: str = "description: synthetic case {case}\n") -> GoldenStore:
    """A store at ``root`` with a folder and a case.yaml (``case_yaml``, its ``{case}`` the case's name) per case."""
    for case in cases:
        (root / case).mkdir(parents=True, exist_ok=True)
        (root / case / "case.yaml").write_text(case_yaml.replace("{case}", case))
    return GoldenStore(root)


def seed(store: GoldenStore, case: str, metrics: Mapping[str, Values], *, env: str = "dev", platform: str = "cpu",
         phase2: Mapping[str, Values] | None = None, fingerprint: str = "fp-seed", approver: str = "seed",
         reason: str = "first golden", source_run_id: str | None = "seed-run", provenance: dict | None = None):
    """Write the case's first golden (phase 1, and phase 2 when given); provenance defaults to the fingerprint.
    A person arranging the test writes it, so ``CI`` set for the commands under test does not refuse it."""
    goldens = {GoldenKey(case, env, platform, 1): golden_set(metrics)}
    if phase2 is not None:
        goldens[GoldenKey(case, env, platform, 2)] = golden_set(phase2)
    return store.write(case, goldens, approver=approver, reason=reason, source_run_id=source_run_id,
                       fingerprint=fingerprint, ci=False,
                       provenance={"fingerprint": fingerprint} if provenance is None else provenance)


# ---------------------------------------------------------------- a store in git, one commit per revision

BASE = {
    "caseA/golden_values_dev_cpu.json": {
        "lm loss": {"start_step": 1, "end_step": 4, "step_interval": 1,
                    "values": {"1": 10.0, "2": 8.0, "3": 4.0, "4": "nan"}},
        "num-zeros": {"start_step": 1, "end_step": 3, "step_interval": 1,
                      "values": {"1": 0.0, "2": 100.0, "3": 50.0}},
        "iteration_timing_avg": 0.5,
    },
    "caseB/golden_values_dev_cpu.json": {
        "lm loss": {"start_step": 1, "end_step": 2, "step_interval": 1, "values": {"1": 2.0, "2": 2.0}},
        "num-zeros": {"start_step": 1, "end_step": 2, "step_interval": 1, "values": {"1": 10.0, "2": 10.0}},
    },
    "caseC/golden_values_dev_cpu.json": {
        "lm loss": {"start_step": 1, "end_step": 1, "step_interval": 1, "values": {"1": 1.0}}},
    "caseD/golden_values_dev_cpu.json": {
        "lm loss": {"start_step": 1, "end_step": 1, "step_interval": 1, "values": {"1": 1.0}}},
}
"""A store's golden files (store-relative path → JSON document) before a change: see HEAD."""

HEAD = {
    "caseA/golden_values_dev_cpu.json": {
        # shared finite steps 1..3 (step 4 is NaN in the old golden): (0 + 0.1 - 0.25) / 3 = -0.05
        "lm loss": {"start_step": 1, "end_step": 5, "step_interval": 1,
                    "values": {"1": 10.0, "2": 8.8, "3": 3.0, "4": 5.0, "5": 1.0}},
        # step 1 skipped (old value 0): (0 + 0.1) / 2 = 0.05
        "num-zeros": {"start_step": 1, "end_step": 3, "step_interval": 1,
                      "values": {"1": 5.0, "2": 100.0, "3": 55.0}},
        "iteration_timing_avg": 0.6,  # (0.6 - 0.5) / 0.5 = 0.2
        "mem-allocated-bytes": {"start_step": 1, "end_step": 1, "step_interval": 1, "values": {"1": 7.0}},
    },
    "caseB/golden_values_dev_cpu.json": {
        # (0 + 5e-6) / 2 = 2.5e-6
        "lm loss": {"start_step": 1, "end_step": 2, "step_interval": 1, "values": {"1": 2.0, "2": 2.00001}},
        "num-zeros": {"start_step": 1, "end_step": 2, "step_interval": 1, "values": {"1": 10.0, "2": 10.0}},
    },
    "caseC/golden_values_dev_cpu.json": BASE["caseC/golden_values_dev_cpu.json"],
    "caseE/golden_values_dev_cpu.json": {
        "lm loss": {"start_step": 1, "end_step": 1, "step_interval": 1, "values": {"1": 3.0}}},
}
"""The same store after the change: caseA and caseB moved, caseC kept, caseD gone, caseE new."""


def parsed_goldens(docs: dict) -> dict:
    """Golden files (name → JSON document) parsed, as a revision of a store holds them."""
    return {name: parse_golden(doc, path=name) for name, doc in docs.items()}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def git_repo(path: Path) -> Path:
    """An empty git repository (a work tree) at ``path``."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q")
    return path


def commit_all(repo: Path, message: str) -> str:
    """Commit everything in the work tree (what a person does with an approval: goldens and records)."""
    git(repo, "add", "-A", ".")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def commit_revision(repo: Path, store: Path, docs: dict, message: str) -> str:
    """Make the store hold exactly ``docs`` (store-relative path → JSON document) and commit."""
    for old in store.rglob("golden_values_*.json"):
        old.unlink()
    for name, doc in docs.items():
        target = store / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(doc, indent=4))
    git(repo, "add", "-A", ".")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def git_store(tmp_path: Path, *revisions: dict) -> Path:
    """A git repository whose ``cases/`` store holds each revision in turn, one commit each."""
    repo = tmp_path / "repo"
    store = repo / "cases"
    store.mkdir(parents=True)
    git(repo, "init", "-q")
    for number, docs in enumerate(revisions, 1):
        commit_revision(repo, store, docs, f"v{number}")
    return store


# ---------------------------------------------------------------- a Megatron tree with every oddity of the real one

def megatron_doc(steps: Sequence[int], start: float, *, slope: float = -0.25, zeros: float = 1000.0,
                 interval: int = 1) -> dict:
    """A golden document as Megatron's extraction writes it: values rounded to 5 decimals, its header."""
    steps = list(steps)
    grid = {"start_step": steps[0], "end_step": steps[-1], "step_interval": interval}
    return {"lm loss": {**grid, "values": {str(s): round(start + slope * s + 1e-6 * s * s, 5) for s in steps}},
            "num-zeros": {**grid, "values": {str(s): float(zeros + 3 * s) for s in steps}}}


MODEL_CONFIG = "ENV_VARS:\n  NVTE_ALLOW_NONDETERMINISTIC_ALGO: 0\nTEST_TYPE: regular\nMODEL_ARGS:\n  --train-iters: 20\n"


def odd_tree(root: Path) -> Path:
    """A Megatron-style ``test_cases`` tree with each oddity of the real one (paths relative to ``root``):

    - ``gpt/dup`` — an orphan folder (no model_config.yaml) holding one empty golden, and ``moe/dup``,
      a real case of the same name;
    - ``gpt/resume`` — a deterministic resume case: dev/dgx_h100 indented (and its ``_2nd``), lts/dgx_a100
      a ``{}`` file, and a legacy ``golden_values_lts.json``;
    - ``bert/oneline`` — dev/dgx_a100 on one line (the older compact writer), dev/dgx_h100 indented with a
      trailing newline;
    - ``bert/nogoldens`` — a case without goldens; ``t5/empty`` — a case whose golden is an empty file.
    """
    files = {
        "gpt/dup/golden_values_dev_dgxh100_dgxc.json": "",
        "moe/dup/model_config.yaml": MODEL_CONFIG,
        "moe/dup/golden_values_dev_dgx_h100.json": json.dumps(megatron_doc(range(1, 21), 9.0), indent=4),
        "gpt/resume/model_config.yaml": MODEL_CONFIG,
        "gpt/resume/golden_values_dev_dgx_h100.json": json.dumps(megatron_doc(range(1, 21), 10.0), indent=4),
        "gpt/resume/golden_values_dev_dgx_h100_2nd.json": json.dumps(megatron_doc(range(11, 21), 10.0), indent=4),
        "gpt/resume/golden_values_lts_dgx_a100.json": "{}",
        "gpt/resume/golden_values_lts.json": json.dumps(megatron_doc(range(1, 21), 10.1), indent=4),
        "bert/oneline/model_config.yaml": MODEL_CONFIG,
        "bert/oneline/golden_values_dev_dgx_a100.json": json.dumps(megatron_doc(range(1, 21), 8.0)),
        "bert/oneline/golden_values_dev_dgx_h100.json": json.dumps(megatron_doc(range(1, 21), 8.5), indent=4) + "\n",
        "bert/nogoldens/model_config.yaml": MODEL_CONFIG,
        "t5/empty/model_config.yaml": MODEL_CONFIG,
        "t5/empty/golden_values_dev_dgx_h100.json": "",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def megatron_artifact(runs: Path, case: str, run_id: str, *, factor: float = 1.0, env: str = "dev",
                      platform: str = "dgx_h100", steps: Sequence[int] = range(1, 21), start: float = 10.0,
                      extra: Mapping[str, float] | None = None, resumed_from: int | None = None) -> Path:
    """A run of a Megatron case at full precision (values with many digits, as a run logs them); with
    ``resumed_from``, a resume run whose phase 2 repeats the steps after it."""
    def values(at: Sequence[int]) -> dict:
        made = {"lm loss": {s: (start - 0.25 * s + 1e-6 * s * s) * factor + 1.234567e-7 * s for s in at},
                "num-zeros": {s: float(1000 + 3 * s) * factor for s in at}}
        for name, scale in (extra or {}).items():
            made[name] = {s: scale * (1 + 1e-3 * s) + 3.3e-9 for s in at}
        return made

    phase2 = None if resumed_from is None else values([s for s in steps if s > resumed_from])
    return write_run(runs, case, run_id, values(steps), env=env, platform=platform, fingerprint=f"fp-{run_id}",
                     phase2=phase2, resumed_from=resumed_from)


# ---------------------------------------------------------------- Megatron's own test code, run in-process

def write_tensorboard(logdir: Path, scalars: Mapping[str, Mapping[int, float]]) -> Path:
    """TensorBoard event files as Megatron's training writes them: one float32 scalar per tag and step."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    logdir.mkdir(parents=True, exist_ok=True)
    writer = EventFileWriter(str(logdir))
    for step in sorted({s for values in scalars.values() for s in values}):
        for tag, values in scalars.items():
            if step in values:
                event = event_pb2.Event(wall_time=1.0, step=step)
                event.summary.value.add(tag=tag, simple_value=values[step])
                writer.add_event(event)
    writer.close()
    return logdir


# ---------------------------------------------------------------- results for the report tests
# Real ``goldens.core.result`` objects, no engine needed; the numbers are chosen so each test can
# state its expectations by hand.

HOSTILE = "<script>alert(1)</script>"
"""A name a report must show as text, never run."""

APPROX_5PCT = Rule("approx", {"rtol": 0.05, "atol": 0.0, "direction": "both"},
                   "approx |a-g| <= 0.05*|g| per step, <= 0 failing steps")
EXACT = Rule("exact", {}, "exact: every step bit-identical")


def steps_table(golden, actual, statuses) -> StepTable:
    golden = np.asarray(golden, dtype=np.float64)
    return StepTable(step=np.arange(1, golden.size + 1, dtype=np.int64), golden=golden,
                     actual=np.asarray(actual, dtype=np.float64),
                     status=np.asarray([STEP_STATUS_CODE[StepStatus(s)] for s in statuses], dtype=np.int8))


def loss_verdict(metric: str = "lm loss", *, fail: bool = False, phase: int = 1, rule: Rule = APPROX_5PCT) -> MetricVerdict:
    """Four steps of a loss; when ``fail``, step 3 is 10 % high (outside the 5 % band)."""
    golden = [10.0, 9.0, 8.0, 7.0]
    actual = [10.0, 9.0, 8.8 if fail else 8.0, 7.0]
    statuses = ["pass", "pass", "fail" if fail else "pass", "pass"]
    mean_rel = (0.8 / 8.0) / 4 if fail else 0.0
    return MetricVerdict(
        metric=metric, phase=phase, verdict=Verdict.FAIL if fail else Verdict.PASS, passed=not fail, rule=rule,
        explanation=(f"{metric}: step 3 actual 8.8 vs golden 8.0 (Δ +10%) exceeds rtol 0.05; 1 failing step, 0 allowed"
                     if fail else f"{metric}: all 4 steps within rtol 0.05"),
        worst_step=3, golden_value=8.0, actual_value=8.8 if fail else 8.0,
        delta=0.8000000000000007 if fail else 0.0, delta_pct=10.000000000000009 if fail else 0.0,
        mean_rel_diff=mean_rel, failing_steps=1 if fail else 0, allowed_failing_steps=0, total_steps=4,
        step_counts={"pass": 3, "fail": 1} if fail else {"pass": 4},
        steps=steps_table(golden, actual, statuses))


def result(case: str = "bert_tp2_pp2", *, fail: bool = False, metrics: tuple[str, ...] = ("lm loss", "num-zeros"),
           resume: Verdict | None = Verdict.PASS, exact: bool = False, with_steps: bool = True) -> ComparisonResult:
    """One case; when ``fail`` its first metric fails."""
    verdicts = []
    for i, name in enumerate(metrics):
        v = loss_verdict(name, fail=fail and i == 0)
        if not with_steps:
            v = replace(v, steps=None)
        verdicts.append(v)
    resume_check = None
    if resume is not None:
        resume_metric = loss_verdict("lm loss", fail=resume == Verdict.FAIL, phase=2, rule=EXACT)
        resume_check = ResumeCheck(
            verdict=resume, overlapping_steps=4, resumed_from=2,
            explanation=("phase 2 differs from phase 1 at step 3 (8.8 vs 8.0)" if resume == Verdict.FAIL
                         else "phase 2 equals phase 1 on all 4 overlapping steps"),
            metrics=(resume_metric,) if with_steps else ())
    fingerprint = (FingerprintCheck("abc", "abc", True, "fingerprints equal") if exact else
                   FingerprintCheck("abc", "def", False, "fingerprints differ", ("versions.torch", "device")))
    failed = fail or resume == Verdict.FAIL
    return ComparisonResult(
        case=case, env="dev", platform="cpu", reference=f"cases/{case}/golden_values_dev_cpu.json",
        candidate=f"runs/{case}-1/artifact.json", policy="default",
        verdict=Verdict.FAIL if failed else Verdict.PASS, fingerprint=fingerprint,
        phases=(PhaseResult(1, Verdict.FAIL if fail else Verdict.PASS, tuple(verdicts),
                            reference=f"cases/{case}/golden_values_dev_cpu.json"),),
        drift=StructuralDrift(arg_changes=(ArgChange("hidden_size", "changed", 64, 128),), args_compared=True),
        resume=resume_check, warnings=("iteration-time compared on another platform: report only",))


# ---------------------------------------------------------------- review and approval races

class ScriptedIO:
    """A ReviewIO that answers from a script: ``keys`` in turn (then EOF), ``reasons`` in turn (then None)."""

    def __init__(self, keys, reasons=("scripted reason",)):
        self.keys, self.reasons = list(keys), list(reasons)
        self.shown, self.notes, self.reasons_asked = [], [], 0

    def show(self, view, index, total):
        self.shown.append((view.candidate.target, index, total, view))

    def key(self):
        if not self.keys:
            raise EOFError
        return self.keys.pop(0)

    def reason(self):
        self.reasons_asked += 1
        return self.reasons.pop(0) if self.reasons else None

    def note(self, message):
        self.notes.append(message)


def cli_worker(go_file: str, *args: str) -> None:
    """Run ``golden ARGS`` in this process once ``go_file`` exists: imports done first, so
    several workers reach the store at the same instant (see the concurrency tests)."""
    import time

    import goldens.approve
    import goldens.cli.review_screen
    import goldens.files.validate  # noqa: F401
    from goldens.cli import app

    while not os.path.exists(go_file):
        time.sleep(0.001)
    app(list(args), prog_name="golden")


# ---------------------------------------------------------------- reading what was written

class HtmlPage(HTMLParser):
    """Tags, text and attributes as a browser's parser sees them, and each figure with its svg count."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []
        self.figures: list[dict] = []
        self.attributes: list[tuple[str, str | None]] = []
        self._figure: dict | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes.extend(attrs)
        if tag == "figure":
            self._figure = {"svg": 0, "caption": ""}
            self.figures.append(self._figure)
        elif tag == "svg" and self._figure is not None:
            self._figure["svg"] += 1

    def handle_endtag(self, tag):
        if tag == "figure":
            self._figure = None

    def handle_data(self, data):
        self.text.append(data)


def parse_html(html: str) -> HtmlPage:
    page = HtmlPage()
    page.feed(html)
    return page


_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def markdown_table_rows(text: str) -> list[list[str]]:
    """Every Markdown table line as its unescaped cells."""
    rows = []
    for line in text.splitlines():
        if line.startswith("| ") and line.endswith(" |"):
            cells = _CELL_SPLIT.split(line)[1:-1]
            rows.append([re.sub(r"\\(.)", r"\1", c.strip()) for c in cells])
    return rows


def markdown_tables(text: str) -> list[list[list[str]]]:
    """Group consecutive table lines into tables (header, rule, rows...)."""
    groups, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("| ") and line.endswith(" |"):
            current.append(line)
        elif current:
            groups.append(markdown_table_rows("\n".join(current)))
            current = []
    return groups


def tree_bytes(root: Path, *, folders: bool = False) -> dict[str, bytes | None]:
    """Every file below ``root`` with its exact bytes (and, with ``folders``, every folder as None):
    equal before and after means nothing was written."""
    return {p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*")) if folders or p.is_file()}


# ---------------------------------------------------------------- a CI server on the loopback

def zip_bytes(members: Mapping[str, bytes | str]) -> bytes:
    """A zip archive of ``members`` (name → content), names written as given (hostile ones too)."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(zipfile.ZipInfo(name, (2025, 1, 1, 0, 0, 0)),
                             content.encode() if isinstance(content, str) else content)
    return buffer.getvalue()


def gitlab_results_zip(job_name: str, environment: str | None, files: Mapping[str, bytes | str], *,
                       iteration: int = 1, restart: str = "restart=0") -> bytes:
    """A GitLab functional job's artifacts as Megatron's CI lays them out:
    results/iteration=<N>/<restart>/assets/basic/<job-name>-<environment>/<file> (lowercase, '-' for '_')."""
    folder = job_name.replace("_", "-").lower() + (f"-{environment.replace('_', '-')}" if environment else "")
    base = f"results/iteration={iteration}/{restart}/assets/basic/{folder}/"
    return zip_bytes({f"results/iteration={iteration}/{restart}/logs/stdout.log": "training log\n",
                      **{base + name: content for name, content in files.items()}})


class FakeCI:
    """GitHub's REST API (Actions: run, jobs, artifacts, the artifact zip by a 302 to a blob host;
    issue comments) and GitLab's v4 (pipeline, bridges, jobs, job artifacts) on 127.0.0.1, with
    the fields and paging of their public documentation (/work/notes/megatron-ci.md §4.3):
    GitHub pages by ``per_page`` (default 30, at most 100) and ``page`` with a ``Link`` header,
    GitLab by the same with ``Link`` and ``X-*-Page`` headers; merge-request notes (``notes``).
    Requests need ``TOKEN``
    (GitHub: ``Authorization: Bearer|token``; GitLab: ``PRIVATE-TOKEN`` or ``JOB-TOKEN``).

    The blob host is a second server (another origin): ``blob_requests`` records what reached it.
    ``fail(pattern, status, ...)`` makes matching requests answer an error; ``requests`` logs
    every API request. Both servers stop at ``stop()`` or by themselves after ``lifetime_s``.
    """

    TOKEN = "loopback-token-0123"
    EPOCH = "2025-06-01T12:00:00Z"

    def __init__(self, lifetime_s: float = 120.0):
        self.lifetime_s = lifetime_s
        self.github_runs: dict[tuple[str, int], dict[str, Any]] = {}
        self.blobs: dict[int, bytes] = {}
        self.comments: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self.gitlab: dict[tuple[str, int], dict[str, Any]] = {}
        self.job_archives: dict[int, bytes] = {}
        self.notes: dict[tuple[str, int], list[dict[str, Any]]] = {}  # merge-request notes posted
        self.failures: list[tuple[Any, int, dict[str, str], Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.blob_requests: list[dict[str, str]] = []
        self.link_headers = True
        self.token_user: str | None = None  # GET /user: None answers 403, as for a GitHub Actions token
        self._ids = iter(range(1001, 10**9))
        self._servers: list[Any] = []

    # --- lifecycle
    def start(self) -> FakeCI:
        import threading
        from http.server import ThreadingHTTPServer

        for handler in (self._api_handler(), self._blob_handler()):
            server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
            self._servers.append(server)
        self._timer = threading.Timer(self.lifetime_s, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers = []
        self._timer.cancel()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._servers[0].server_address[1]}"

    @property
    def gitlab_url(self) -> str:
        return self.url + "/api/v4"

    @property
    def blob_url(self) -> str:
        return f"http://127.0.0.1:{self._servers[1].server_address[1]}"

    def fail(self, pattern: str, status: int, headers: Mapping[str, str] | None = None, body: Any = None) -> None:
        """Requests whose path (with query) matches ``pattern`` answer ``status`` from now on."""
        self.failures.append((re.compile(pattern), status, dict(headers or {}), body))

    # --- GitHub
    def github_run(self, repo: str, run_id: int, *, status: str = "completed", conclusion: str | None = "failure") -> dict:
        run = {"id": run_id, "name": "CICD NeMo", "node_id": f"WFR_{run_id}", "head_branch": "main",
               "head_sha": "009b8a3a9ccbb128af87f9b1c0f4c62e8a304f6d", "run_number": 7, "run_attempt": 1,
               "event": "pull_request", "status": status, "conclusion": conclusion, "workflow_id": 161335,
               "url": f"https://api.github.com/repos/{repo}/actions/runs/{run_id}",
               "jobs_url": f"https://api.github.com/repos/{repo}/actions/runs/{run_id}/jobs",
               "artifacts_url": f"https://api.github.com/repos/{repo}/actions/runs/{run_id}/artifacts",
               "created_at": self.EPOCH, "updated_at": self.EPOCH}
        self.github_runs[(repo, run_id)] = {"run": run, "jobs": [], "artifacts": []}
        return run

    def github_job(self, repo: str, run_id: int, name: str, conclusion: str | None, *,
                   workflow_name: str = "CICD NeMo / cicd-integration-tests-latest", labels: Sequence[str] = ()) -> dict:
        job_id = next(self._ids)
        job = {"id": job_id, "run_id": run_id, "workflow_name": workflow_name, "head_branch": "main",
               "run_url": f"https://api.github.com/repos/{repo}/actions/runs/{run_id}", "run_attempt": 1,
               "node_id": f"CR_{job_id}", "head_sha": "009b8a3a9ccbb128af87f9b1c0f4c62e8a304f6d",
               "url": f"https://api.github.com/repos/{repo}/actions/jobs/{job_id}",
               "html_url": f"https://github.com/{repo}/actions/runs/{run_id}/job/{job_id}",
               "status": "completed" if conclusion else "in_progress", "conclusion": conclusion,
               "created_at": self.EPOCH, "started_at": self.EPOCH, "completed_at": self.EPOCH if conclusion else None,
               "name": name, "steps": [{"name": "Run tests", "status": "completed", "conclusion": conclusion,
                                        "number": 1, "started_at": self.EPOCH, "completed_at": self.EPOCH}],
               "check_run_url": f"https://api.github.com/repos/{repo}/check-runs/{job_id}", "labels": list(labels),
               "runner_id": 1, "runner_name": "runner-1", "runner_group_id": 1, "runner_group_name": "default"}
        self.github_runs[(repo, run_id)]["jobs"].append(job)
        return job

    def github_artifact(self, repo: str, run_id: int, name: str, archive: bytes, *, expired: bool = False,
                        created_at: str | None = None) -> dict:
        artifact_id = next(self._ids)
        artifact = {"id": artifact_id, "node_id": f"MDg6QXJ0aWZhY3Q{artifact_id}", "name": name,
                    "size_in_bytes": len(archive), "url": f"https://api.github.com/repos/{repo}/actions/artifacts/{artifact_id}",
                    "archive_download_url": f"https://api.github.com/repos/{repo}/actions/artifacts/{artifact_id}/zip",
                    "expired": expired, "created_at": created_at or self.EPOCH, "expires_at": "2025-08-30T12:00:00Z",
                    "updated_at": created_at or self.EPOCH, "digest": None,
                    "workflow_run": {"id": run_id, "repository_id": 42, "head_repository_id": 42, "head_branch": "main",
                                     "head_sha": "009b8a3a9ccbb128af87f9b1c0f4c62e8a304f6d"}}
        self.github_runs[(repo, run_id)]["artifacts"].append(artifact)
        self.blobs[artifact_id] = archive
        return artifact

    def github_test(self, repo: str, run_id: int, model: str, test: str, conclusion: str,
                    files: Mapping[str, bytes | str], *, version: str = "latest") -> tuple[dict, dict]:
        """One Megatron integration test: job ``<model>/<test> - <version>`` and its artifact
        ``logs-<test>-<run id>-<uuid>`` holding ``files`` at the root (as action.yml uploads them)."""
        job = self.github_job(repo, run_id, f"{model}/{test} - {version}", conclusion)
        artifact = self.github_artifact(repo, run_id, f"logs-{test}-{run_id}-8f2c1e4a",
                                        zip_bytes({"stdout.log": "log\n", **files}))
        return job, artifact

    # --- GitLab
    def gitlab_pipeline(self, project: str, pipeline_id: int, *, status: str = "failed") -> dict:
        pipeline = {"id": pipeline_id, "iid": pipeline_id % 1000, "project_id": 19378, "status": status, "ref": "main",
                    "sha": "009b8a3a9ccbb128af87f9b1c0f4c62e8a304f6d", "source": "push",
                    "web_url": f"https://gitlab.example.com/{project}/-/pipelines/{pipeline_id}",
                    "created_at": self.EPOCH, "updated_at": self.EPOCH}
        self.gitlab[(project, pipeline_id)] = {"pipeline": pipeline, "bridges": [], "jobs": []}
        return pipeline

    def _gitlab_job(self, project: str, pipeline_id: int, name: str, stage: str, status: str,
                    archive: bytes | None) -> dict:
        job_id = next(self._ids)
        job = {"id": job_id, "name": name, "stage": stage, "status": status, "ref": "main", "tag": False,
               "allow_failure": False, "created_at": self.EPOCH, "started_at": self.EPOCH, "finished_at": self.EPOCH,
               "duration": 812.5, "queued_duration": 3.1, "coverage": None,
               "artifacts_expire_at": "2025-07-01T12:00:00Z", "tag_list": ["gpu"],
               "pipeline": {"id": pipeline_id, "project_id": 19378, "ref": "main",
                            "sha": "009b8a3a9ccbb128af87f9b1c0f4c62e8a304f6d", "status": status},
               "commit": {"id": "009b8a3a9ccbb128af87f9b1c0f4c62e8a304f6d", "short_id": "009b8a3a", "title": "t",
                          "message": "t", "author_name": "a", "author_email": "a@example.com", "created_at": self.EPOCH},
               "runner": None, "web_url": f"https://gitlab.example.com/{project}/-/jobs/{job_id}",
               "project": {"ci_job_token_scope_enabled": False},
               "user": {"id": 1, "name": "ci", "username": "ci", "state": "active"},
               "artifacts": [] if archive is None else [{"file_type": "archive", "size": len(archive),
                                                         "filename": "artifacts.zip", "file_format": "zip"}]}
        if archive is not None:
            job["artifacts_file"] = {"filename": "artifacts.zip", "size": len(archive)}
            self.job_archives[job_id] = archive
        if status == "failed":
            job["failure_reason"] = "script_failure"
        self.gitlab[(project, pipeline_id)]["jobs"].append(job)
        return job

    def gitlab_job(self, project: str, pipeline_id: int, name: str, stage: str, status: str,
                   archive: bytes | None = None) -> dict:
        return self._gitlab_job(project, pipeline_id, name, stage, status, archive)

    def gitlab_bridge(self, project: str, pipeline_id: int, name: str, downstream: int | None) -> dict:
        """A trigger job of ``pipeline_id``; ``downstream``: the child pipeline's id (made here), or None."""
        bridge = self._gitlab_job(project, pipeline_id, name, "functional", "success", None)
        self.gitlab[(project, pipeline_id)]["jobs"].remove(bridge)
        if downstream is not None:
            child = self.gitlab_pipeline(project, downstream)
            bridge["downstream_pipeline"] = {"id": downstream, "sha": child["sha"], "ref": "main", "status": "failed",
                                             "created_at": self.EPOCH, "updated_at": self.EPOCH,
                                             "web_url": child["web_url"], "project_id": 19378}
        else:
            bridge["downstream_pipeline"] = None
        self.gitlab[(project, pipeline_id)]["bridges"].append(bridge)
        return bridge

    # --- serving
    def _page(self, handler: Any, items: list, query: dict, *, github: bool) -> list:
        default, top = (30, 100) if github else (20, 100)
        per_page = max(1, min(int(query.get("per_page", default)), top))
        page = max(1, int(query.get("page", 1)))
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page: page * per_page]
        base = f"{self.url}{handler.path.split('?')[0]}"

        def link(n: int) -> str:
            return f"{base}?per_page={per_page}&page={n}"

        rels = ([(link(page + 1), "next"), (link(last), "last")] if page < last else []) + \
               ([(link(1), "first"), (link(page - 1), "prev")] if page > 1 else [])
        if not github:  # GitLab always sends first and last, and the X-* headers
            rels = ([(link(page + 1), "next")] if page < last else []) + [(link(1), "first"), (link(last), "last")]
        headers = {}
        if rels and self.link_headers:
            headers["Link"] = ", ".join(f'<{u}>; rel="{r}"' for u, r in rels)
        if not github:
            headers.update({"X-Page": str(page), "X-Per-Page": str(per_page), "X-Total": str(len(items)),
                            "X-Total-Pages": str(last), "X-Next-Page": str(page + 1) if page < last else "",
                            "X-Prev-Page": str(page - 1) if page > 1 else ""})
        handler.extra_headers = headers
        return chunk

    def _route(self, handler: Any, method: str) -> tuple[int, Any, dict[str, str]]:
        import urllib.parse

        path, _, raw_query = handler.path.partition("?")
        query = dict(urllib.parse.parse_qsl(raw_query))
        self.requests.append({"method": method, "path": path, "query": query,
                              "headers": {k.lower(): v for k, v in handler.headers.items()}})
        for pattern, status, headers, body in self.failures:
            if pattern.search(handler.path):
                return status, body if body is not None else {"message": "injected failure"}, headers
        if path.startswith("/api/v4/"):
            if self.TOKEN not in (handler.headers.get("PRIVATE-TOKEN"), handler.headers.get("JOB-TOKEN")):
                return 401, {"message": "401 Unauthorized"}, {}
            return self._gitlab_route(handler, path[len("/api/v4"):], query)
        if handler.headers.get("Authorization") not in (f"Bearer {self.TOKEN}", f"token {self.TOKEN}"):
            return 401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest",
                         "status": "401"}, {}
        return self._github_route(handler, method, path, query)

    def _github_route(self, handler: Any, method: str, path: str, query: dict) -> tuple[int, Any, dict[str, str]]:
        not_found = (404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest", "status": "404"}, {})
        if path == "/user":
            if self.token_user is None:
                return 403, {"message": "Resource not accessible by integration", "status": "403"}, {}
            return 200, {"login": self.token_user, "id": 7, "type": "User"}, {}
        if m := re.fullmatch(r"/repos/([^/]+/[^/]+)/actions/runs/(\d+)(/jobs|/artifacts)?", path):
            record = self.github_runs.get((m.group(1), int(m.group(2))))
            if record is None:
                return not_found
            if m.group(3) is None:
                return 200, record["run"], {}
            key = m.group(3)[1:]
            return 200, {"total_count": len(record[key]), key: self._page(handler, record[key], query, github=True)}, {}
        if m := re.fullmatch(r"/repos/([^/]+/[^/]+)/actions/artifacts/(\d+)/zip", path):
            artifact = next((a for r in self.github_runs.values() for a in r["artifacts"] if a["id"] == int(m.group(2))), None)
            if artifact is None:
                return not_found
            if artifact["expired"]:
                return 410, {"message": "Artifact has expired", "status": "410"}, {}
            return 302, b"", {"Location": f"{self.blob_url}/blobs/{artifact['id']}?sig=short-lived"}
        if m := re.fullmatch(r"/repos/([^/]+/[^/]+)/issues/(\d+)/comments", path):
            thread = self.comments.setdefault((m.group(1), int(m.group(2))), [])
            if method == "POST":
                comment = {"id": next(self._ids), "body": handler.json_body()["body"],
                           "user": {"login": self.token_user or "github-actions[bot]",
                                    "type": "User" if self.token_user else "Bot"}, "created_at": self.EPOCH,
                           "html_url": f"https://github.com/{m.group(1)}/pull/{m.group(2)}#issuecomment"}
                thread.append(comment)
                return 201, comment, {}
            return 200, self._page(handler, thread, query, github=True), {}
        if m := re.fullmatch(r"/repos/([^/]+/[^/]+)/issues/comments/(\d+)", path):
            comment = next((c for (repo, _), t in self.comments.items() if repo == m.group(1)
                            for c in t if c["id"] == int(m.group(2))), None)
            if comment is None or method != "PATCH":
                return not_found
            comment["body"] = handler.json_body()["body"]
            return 200, comment, {}
        return not_found

    def _gitlab_route(self, handler: Any, path: str, query: dict) -> tuple[int, Any, dict[str, str]]:
        import urllib.parse

        not_found = (404, {"message": "404 Not found"}, {})
        if m := re.fullmatch(r"/projects/([^/]+)/merge_requests/(\d+)/notes", path):
            if handler.command != "POST":
                return not_found
            form = dict(urllib.parse.parse_qsl(handler.rfile.read(int(handler.headers.get("Content-Length") or 0)).decode()))
            note = {"id": next(self._ids), "body": form.get("body", ""), "author": {"username": "project_bot"}}
            self.notes.setdefault((urllib.parse.unquote(m.group(1)), int(m.group(2))), []).append(note)
            return 201, note, {}
        m = re.fullmatch(r"/projects/([^/]+)/(pipelines|jobs)/(\d+)(/bridges|/jobs|/artifacts)?", path)
        if m is None:
            return not_found
        project, kind, number, tail = urllib.parse.unquote(m.group(1)), m.group(2), int(m.group(3)), m.group(4)
        if kind == "jobs" and tail == "/artifacts":
            archive = self.job_archives.get(number)
            if archive is None:
                return not_found
            return 200, archive, {"Content-Type": "application/zip",
                                  "Content-Disposition": "attachment; filename=artifacts.zip",
                                  "Content-Transfer-Encoding": "binary"}
        record = self.gitlab.get((project, number)) if kind == "pipelines" else None
        if record is None:
            return not_found
        if tail is None:
            return 200, record["pipeline"], {}
        if tail in ("/bridges", "/jobs"):
            return 200, self._page(handler, record[tail[1:]], query, github=False), {}
        return not_found

    def _api_handler(self) -> type:
        from http.server import BaseHTTPRequestHandler

        ci = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10

            def json_body(self) -> Any:
                return json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"null")

            def _answer(self, method: str) -> None:
                self.extra_headers = {}
                status, body, headers = ci._route(self, method)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json; charset=utf-8", **self.extra_headers,
                                    **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._answer("GET")

            def do_POST(self):
                self._answer("POST")

            def do_PATCH(self):
                self._answer("PATCH")

            def log_message(self, *args):
                pass

        return Handler

    def _blob_handler(self) -> type:
        from http.server import BaseHTTPRequestHandler

        ci = self

        class Blob(BaseHTTPRequestHandler):
            timeout = 10

            def do_GET(self):
                ci.blob_requests.append({k.lower(): v for k, v in self.headers.items()})
                m = re.fullmatch(r"/blobs/(\d+)", self.path.split("?")[0])
                data = ci.blobs.get(int(m.group(1))) if m else None
                self.send_response(200 if data is not None else 404)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(data or b"")))
                self.end_headers()
                self.wfile.write(data or b"")

            def log_message(self, *args):
                pass

        return Blob


# ---------------------------------------------------------------- a composite GitHub Action, run locally

_EXPRESSION_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>\d+(?:\.\d+)?)"
                               r"|(?P<op>==|!=|&&|\|\||!|\(|\))|(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*(?:\(\))?))")


def _loose_equal(a: Any, b: Any) -> bool:
    """GitHub's ``==``: strings case-insensitively; other mixes as numbers (null and '' are 0)."""
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()

    def number(x: Any) -> float:
        if x is None or x == "":
            return 0.0
        if isinstance(x, bool):
            return float(x)
        try:
            return float(x)
        except (TypeError, ValueError):
            return float("nan")
    return number(a) == number(b)


def evaluate_expression(text: str, contexts: Mapping[str, Any], failed: bool = False) -> Any:
    """A GitHub Actions expression (the subset composite actions use: contexts, string and number
    literals, ==, !=, &&, ||, !, parentheses, always()/success()/failure())."""
    tokens, at = [], 0
    while at < len(text.rstrip()):
        m = _EXPRESSION_TOKEN.match(text, at)
        if m is None or m.end() == at:
            raise ValueError(f"cannot read expression {text!r} at {at}")
        tokens.append((m.lastgroup, m.group(m.lastgroup)))
        at = m.end()
    position = 0

    def peek() -> str | None:
        return tokens[position][1] if position < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal position
        position += 1
        return tokens[position - 1]

    def primary() -> Any:
        kind, value = take()
        if value == "(":
            inner = either()
            take()
            return inner
        if kind == "str":
            return value[1:-1].replace("''", "'")
        if kind == "num":
            return float(value)
        functions = {"always()": True, "success()": not failed, "failure()": failed, "cancelled()": False}
        if value in functions:
            return functions[value]
        if value in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[value]
        found: Any = contexts
        for part in value.split("."):
            found = found.get(part) if isinstance(found, Mapping) else None
        return found

    def negation() -> Any:
        if peek() == "!":
            take()
            return not truthy(negation())
        left = primary()
        if peek() in ("==", "!="):
            op = take()[1]
            equal = _loose_equal(left, primary())
            return equal if op == "==" else not equal
        return left

    def both() -> Any:
        left = negation()
        while peek() == "&&":
            take()
            right = negation()
            left = right if truthy(left) else left
        return left

    def either() -> Any:
        left = both()
        while peek() == "||":
            take()
            right = both()
            left = left if truthy(left) else right
        return left

    return either()


def truthy(value: Any) -> bool:
    return value not in (None, False, "", 0, 0.0)


def substitute(text: Any, contexts: Mapping[str, Any], failed: bool = False) -> str:
    """``${{ expr }}`` in ``text`` replaced by the expression's value (null as '')."""
    def value(m: re.Match) -> str:
        found = evaluate_expression(m.group(1), contexts, failed)
        return "" if found is None else (str(found).lower() if isinstance(found, bool) else str(found))
    return re.sub(r"\$\{\{(.*?)\}\}", value, str(text))


class ActionRun:
    """Runs a composite action's steps here as GitHub's runner does, for a test: each ``run:``
    script in bash (``-eo pipefail``) with the step's ``env:`` evaluated, the inputs (given, else
    the action's defaults) in the ``inputs`` context, and GITHUB_STEP_SUMMARY / GITHUB_OUTPUT /
    GITHUB_ACTION_PATH / GITHUB_EVENT_PATH and the other GITHUB_* variables pointing at files
    and values under ``workdir``. ``uses:`` steps are not executed: their evaluated ``with:`` is
    recorded for the test to check. ``if:`` is evaluated (default ``success()``)."""

    def __init__(self, action: Path, workdir: Path, *, inputs: Mapping[str, str], event: Mapping[str, Any],
                 env: Mapping[str, str]):
        import yaml

        self.action_dir = action.parent
        self.spec = yaml.safe_load(action.read_text(encoding="utf-8"))
        self.workdir = workdir
        self.runner = workdir / ".runner"
        self.runner.mkdir(parents=True, exist_ok=True)
        self.summary = self.runner / "step_summary.md"
        self.summary.touch()
        (self.runner / "event.json").write_text(json.dumps(event))
        self.env = {**env, "GITHUB_ACTIONS": "true", "CI": "true", "GITHUB_WORKSPACE": str(workdir),
                    "GITHUB_ACTION_PATH": str(self.action_dir), "GITHUB_STEP_SUMMARY": str(self.summary),
                    "GITHUB_EVENT_PATH": str(self.runner / "event.json"), "RUNNER_TEMP": str(self.runner)}
        self.github = {"event": dict(event), "event_name": env.get("GITHUB_EVENT_NAME", ""),
                       "action_path": str(self.action_dir), "token": env.get("GITHUB_TOKEN", ""),
                       "repository": env.get("GITHUB_REPOSITORY", ""), "run_id": env.get("GITHUB_RUN_ID", "")}
        declared = self.spec.get("inputs") or {}
        unknown = set(inputs) - set(declared)
        if unknown:
            raise ValueError(f"inputs the action does not declare: {sorted(unknown)}")
        self.inputs = {name: inputs[name] if name in inputs else
                       substitute(spec.get("default", ""), {"github": self.github})
                       for name, spec in declared.items()}
        self.steps: dict[str, dict[str, Any]] = {}
        self.outcomes: list[dict[str, Any]] = []

    def contexts(self) -> dict[str, Any]:
        return {"inputs": self.inputs, "github": self.github, "steps": self.steps,
                "env": self.env, "runner": {"temp": str(self.runner)}}

    def run(self) -> ActionRun:
        failed = False
        for number, step in enumerate(self.spec["runs"]["steps"]):
            contexts = self.contexts()
            condition = str(step.get("if", "success()")).strip()
            condition = condition[3:-2] if condition.startswith("${{") else condition
            if not re.search(r"\b(success|failure|always|cancelled)\(\)", condition):
                condition = f"success() && ({condition})"  # GitHub's rule: no status function, success() implied
            outcome: dict[str, Any] = {"name": step.get("name"), "id": step.get("id"), "ran": False,
                                       "uses": step.get("uses"), "if": condition}
            self.outcomes.append(outcome)
            if not truthy(evaluate_expression(condition, contexts, failed)):
                continue
            outcome["ran"] = True
            if "uses" in step:
                outcome["with"] = {k: substitute(v, contexts, failed) for k, v in (step.get("with") or {}).items()}
                continue
            output_file = self.runner / f"output-{number}"
            output_file.write_text("")
            env = {**self.env, **{k: substitute(v, contexts, failed) for k, v in (step.get("env") or {}).items()},
                   "GITHUB_OUTPUT": str(output_file)}
            script = self.runner / f"step-{number}.sh"
            script.write_text(step["run"])
            done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=self.workdir,
                                  env=env, capture_output=True, text=True, timeout=300)
            outcome.update(returncode=done.returncode, stdout=done.stdout, stderr=done.stderr,
                           outputs=self._outputs(output_file.read_text()))
            if step.get("id"):
                self.steps[step["id"]] = {"outputs": outcome["outputs"],
                                          "outcome": "success" if done.returncode == 0 else "failure"}
            failed = failed or done.returncode != 0
        self.failed = failed
        return self

    @staticmethod
    def _outputs(text: str) -> dict[str, str]:
        """GITHUB_OUTPUT's ``name=value`` and ``name<<DELIMITER`` … ``DELIMITER`` forms."""
        found, lines = {}, iter(text.splitlines())
        for line in lines:
            if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
                name, delimiter = line.split("<<", 1)
                found[name] = "\n".join(iter(lambda: next(lines), delimiter))
            elif "=" in line:
                name, value = line.split("=", 1)
                found[name] = value
        return found

    def step(self, name: str) -> dict[str, Any]:
        return next(o for o in self.outcomes if o["name"] == name)

    def outputs(self) -> dict[str, str]:
        return {name: substitute(spec["value"], self.contexts()) for name, spec in (self.spec.get("outputs") or {}).items()}


# ---------------------------------------------------------------- Megatron's own test functions as the oracle

class _ClickStub:
    """Stands in for ``click`` (not installed: typer vendors its own) so Megatron's extraction module
    imports: its decorators leave the function as Megatron wrote it, called with keyword arguments."""

    @staticmethod
    def command(*_args: Any, **_kwargs: Any):
        return lambda function: function

    @staticmethod
    def option(*_args: Any, **_kwargs: Any):
        return lambda function: function



PYTHON_TEST_UTILS = "tests.functional_tests.python_test_utils"


@contextlib.contextmanager
def megatron_oracle(utils: Path) -> Iterator[types.SimpleNamespace]:
    """Megatron-LM's python_test_utils (the unmodified files in ``utils``), imported in-process as
    ``tests.functional_tests.python_test_utils`` from a throwaway package root. This suite's own
    ``tests`` package is set aside meanwhile and restored after, with the root logger (each test
    module calls ``logging.basicConfig``)."""
    import importlib.util
    import logging
    import shutil
    import tempfile

    root_dir = Path(tempfile.mkdtemp(prefix="mlm_oracle_"))
    package = root_dir / "tests" / "functional_tests" / "python_test_utils"
    package.mkdir(parents=True)
    for folder in (root_dir / "tests", root_dir / "tests" / "functional_tests", package):
        (folder / "__init__.py").write_text("")
    for source in Path(utils).glob("*.py"):
        shutil.copy(source, package / source.name)
    ours = lambda name: name == "tests" or name.startswith("tests.")
    saved = {name: sys.modules.pop(name) for name in list(sys.modules) if ours(name)}
    had_click = sys.modules.get("click")
    if had_click is None and importlib.util.find_spec("click") is None:
        sys.modules["click"] = _ClickStub()  # type: ignore[assignment]  (the extraction module's CLI only)
    root = logging.getLogger()
    saved_log = (root.level, list(root.handlers))
    sys.path.insert(0, str(root_dir))
    importlib.invalidate_caches()
    try:
        namespace = types.SimpleNamespace(
            common=importlib.import_module(f"{PYTHON_TEST_UTILS}.common"),
            regular=importlib.import_module(f"{PYTHON_TEST_UTILS}.test_pretraining_regular_pipeline"),
            resume=importlib.import_module(f"{PYTHON_TEST_UTILS}.test_pretraining_resume_checkpoint_pipeline"),
            inference=importlib.import_module(f"{PYTHON_TEST_UTILS}.test_inference_regular_pipeline"),
            extract=importlib.import_module(f"{PYTHON_TEST_UTILS}.get_test_results_from_tensorboard_logs"))
        logging.getLogger().setLevel(logging.CRITICAL)  # their per-metric INFO/ERROR lines
        yield namespace
    finally:
        sys.path.remove(str(root_dir))
        for name in [n for n in sys.modules if ours(n)]:
            del sys.modules[name]
        sys.modules.update(saved)
        if had_click is None and isinstance(sys.modules.get("click"), _ClickStub):
            sys.modules.pop("click")
        root.setLevel(saved_log[0])
        root.handlers[:] = saved_log[1]
        shutil.rmtree(root_dir, ignore_errors=True)


def _megatron_ran(call: Any) -> bool:
    """Megatron's test function returned (pass) or raised (an assert, or an error: CI fails either)."""
    try:
        call()
        return True
    except Exception:
        return False


def megatron_verdict(m: types.SimpleNamespace, config: Path, golden: Path, candidate: Path,
                     second: Path | None = None, *, allow_nondeterministic: bool | None = None) -> bool:
    """What Megatron's CI decides for a candidate of one case, test by test as run_ci_test.sh runs them:
    the regular pipeline (and, for ckpt-resume / frozen-resume, the resume pipeline on the candidate's
    ``_2nd`` file), or the inference pipeline (TEST_TYPE frozen-start, MODE inference). The flag and
    TRAIN_ITERS as the script derives them (here: ``goldens.megatron.case``, whose reading of the yq
    text is tested on its own); ``allow_nondeterministic`` overrides the flag."""
    import os

    from goldens.core.megatron import INFERENCE, RESUME
    from goldens.megatron.case import read_megatron_case

    case = read_megatron_case(config)
    flag = case.allow_nondeterministic if allow_nondeterministic is None else allow_nondeterministic
    verdict = True
    read = m.common.read_golden_values_from_json
    if INFERENCE in case.pipelines:
        os.environ.pop("ENABLE_LIGHTWEIGHT_MODE", None)
        return _megatron_ran(lambda: m.inference.test_inference_pipeline(
            golden_values_path=str(golden), test_values_path=str(candidate), model_config_path=str(config)))
    if "regular" in case.pipelines:
        verdict &= _megatron_ran(lambda: m.regular.test_regular_pipeline(
            compare_approximate_results=flag, golden_values=read(golden),
            actual_values=read(candidate), model_config_path=str(config)))
    if RESUME in case.pipelines:
        verdict &= second is not None and _megatron_ran(lambda: m.resume.test_resume_checkpoint_pipeline(
            compare_approximate_results=flag, actual_values_first_run=read(candidate),
            actual_values_second_run=read(second), train_iters=case.train_iters, model_config_path=str(config)))
    return verdict


# ---------------------------------------------------------------- Megatron case folders

def megatron_metric(values: Mapping[int, Any], interval: int = 1) -> dict:
    """One metric as Megatron's extractor writes it (values keyed by step, "nan" kept as a string)."""
    steps = sorted(values)
    return {"start_step": steps[0] if steps else 1, "end_step": steps[-1] if steps else 1, "step_interval": interval,
            "values": {str(s): values[s] for s in steps}}


def training_doc(steps: Sequence[int], metrics: Sequence[str] = ("lm loss", "num-zeros"), *, seed: int = 3) -> dict:
    """A training golden shaped like Megatron's: each metric on ``steps`` with realistic magnitudes."""
    rng = np.random.default_rng(seed)
    scale = {"lm loss": 10.0, "num-zeros": 2.0e3, "iteration-time": 0.8, "mem-allocated-bytes": 1.7e9,
             "mem-max-allocated-bytes": 3.0e9}
    doc = {}
    for name in metrics:
        values = scale.get(name, 5.0) * (1.0 + 0.01 * rng.standard_normal(len(steps)))
        if name.startswith(("num-zeros", "mem-")):
            values = np.round(values)
        doc[name] = megatron_metric({int(s): round(float(v), 5) for s, v in zip(steps, values)})
    return doc


def inference_doc(requests: int = 3, *, run_level: bool = True, routing: bool = False, as_run: bool = False,
                  seed: int = 5) -> dict:
    """An inference golden shaped like Megatron's dynamic-inference output: request id → record, plus
    throughput, peak memory and lifetime_prefill_token_count at the top level. With ``routing`` the
    golden keeps the MoE routing of a few tokens (and their indices) and the run (``as_run``) of all."""
    rng = np.random.default_rng(seed)
    doc: dict[str, Any] = {}
    for rid in range(requests):
        tokens = [int(t) for t in rng.integers(1, 50000, 12)]
        record: dict[str, Any] = {"input_prompt": f"prompt {rid}", "generated_text": f"generated text {rid} " * 3,
                                  "generated_tokens": tokens, "latency": float(rng.random()),
                                  "logprobs": [round(float(v), 6) for v in -rng.random(20)]}
        if routing:
            full = [[int(e) for e in rng.permutation(8)[:2]] for _ in range(6)]
            kept = [0, 2, 4]
            record["routing_indices"] = full if as_run else [full[i] for i in kept]
            if not as_run:
                record["routing_indices_token_indices"] = kept
        doc[str(rid * 32)] = record
    if run_level:
        doc["throughput"] = [round(float(v), 3) for v in 100 + 5 * rng.random(5)]
        doc["mem-max-allocated-bytes"] = 32380357632
        doc["lifetime_prefill_token_count"] = 4096
    return doc


def write_megatron_case(root: Path, name: str, config: str, goldens: Mapping[str, Any]) -> Path:
    """A Megatron case folder: ``model_config.yaml`` (the text given) and golden files (documents, or
    texts written as they are)."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_config.yaml").write_text(config)
    for filename, doc in goldens.items():
        (folder / filename).write_text(doc if isinstance(doc, str) else json.dumps(doc, indent=4))
    return folder


def tree_state(root: Path) -> dict[str, tuple[str, Any]]:
    """Every entry below ``root`` as it lies on disk, symlinks never followed: path → ("file", bytes),
    ("dir", None), ("link", target) or ("other", None). Equal before and after means nothing below
    ``root`` was written, deleted, moved or re-linked."""
    import stat

    state: dict[str, tuple[str, Any]] = {}
    for top, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            path = Path(top) / name
            mode = path.lstat().st_mode
            rel = path.relative_to(root).as_posix()
            if stat.S_ISLNK(mode):
                state[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(mode):
                state[rel] = ("dir", None)
            elif stat.S_ISREG(mode):
                state[rel] = ("file", path.read_bytes())
            else:
                state[rel] = ("other", None)
    return state


def one_line_refusal(result: Any, *words: str) -> None:
    """Exit 2 with one line on stderr (naming ``words``), as every input error."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


def fsck_problems(store: str, *args: str, env: Mapping[str, str | None] | None = None) -> tuple[int, list[dict]]:
    """``golden fsck --json`` on a store: its exit code (0 or 1, never anything else) and problems."""
    result = invoke("fsck", "--store", store, "--json", *args, env=env)
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)["problems"]


def invoke(*args: str, env: Mapping[str, str | None] | None = None) -> Any:
    """``golden ARGS`` in this process (typer's CliRunner). An exception that escapes the command — a
    traceback and exit 1 for a user — fails the test with that traceback."""
    import traceback

    from typer.testing import CliRunner

    from goldens.cli import app

    result = CliRunner().invoke(app, list(args), env=dict(env or {}))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        trace = "".join(traceback.format_exception(*result.exc_info))
        raise AssertionError(f"golden {' '.join(args)} raised instead of exiting:\n{trace}")
    return result


# ---------------------------------------------------------------- a hostile server on the loopback

class HostileServer:
    """A loopback HTTP server that answers each path with what a test scripts: ``route(path, fn)``,
    where ``fn(handler)`` writes the whole answer (status line, headers, body — lies included).
    ``requests`` records (path, headers) of every request; the server stops at ``stop()``."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.routes: dict[str, Any] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 30
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                path = self.path.split("?")[0]
                server.requests.append((path, {k.lower(): v for k, v in self.headers.items()}))
                if self.headers.get("Content-Length"):
                    self.rfile.read(int(self.headers["Content-Length"]))
                answer = server.routes.get(path)
                try:
                    if answer is None:
                        self.send(404, {"message": "Not Found"})
                    else:
                        answer(self)
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass
                self.close_connection = True

            do_GET = do_POST = do_PATCH = _any

            def send(self, status: int, body: Any, headers: Mapping[str, str] | None = None,
                     length: int | None = None) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data) if length is None else length))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def route(self, path: str, answer: Any) -> None:
        self.routes[path] = answer

    def json(self, path: str, body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> None:
        self.route(path, lambda h: h.send(status, body, headers))

    def reached(self, token: str) -> list[str]:
        """Paths of the requests that carried ``token`` in any header."""
        return [path for path, headers in self.requests if any(token in v for v in headers.values())]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def patched_zip(members: Mapping[str, bytes], *, method: int | None = None, flags: int | None = None,
                corrupt: bool = False) -> bytes:
    """A zip whose headers lie: every member's compression ``method`` and/or general-purpose
    ``flags`` (bit 0: encrypted) patched in the local and central headers; ``corrupt``: the deflate
    data of each member overwritten with bytes that are not deflate."""
    import io
    import struct
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    raw = bytearray(buffer.getvalue())
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as archive:
        infos = archive.infolist()
    for info in infos:
        local = info.header_offset
        name_len, extra_len = struct.unpack_from("<HH", raw, local + 26)
        if corrupt:
            start = local + 30 + name_len + extra_len
            raw[start:start + info.compress_size] = b"\xff" * info.compress_size
        if flags is not None:
            struct.pack_into("<H", raw, local + 6, flags)
        if method is not None:
            struct.pack_into("<H", raw, local + 8, method)
    central = raw.find(b"PK\x01\x02")
    while central != -1:
        if flags is not None:
            struct.pack_into("<H", raw, central + 8, flags)
        if method is not None:
            struct.pack_into("<H", raw, central + 10, method)
        central = raw.find(b"PK\x01\x02", central + 4)
    return bytes(raw)


def leftover_processes(run_dir: Path) -> list[int]:
    """Processes still carrying this run's marker (every launcher, rank and writer inherits it)."""
    import psutil  # the runner extra, as every test that runs a case

    from runner.launch import RUN_DIR_ENV

    alive = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(RUN_DIR_ENV) == str(run_dir) and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return alive
