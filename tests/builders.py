"""The test suite's builders: plain functions and classes that make what the tests start from.

Every test module takes its builders from here and its shared fixtures from ``conftest.py``;
no test module imports another. What is here, in order:

- series and golden sets: ``goldens.core.model`` objects from plain numbers;
- runs: artifacts in memory, and ``artifact.json`` files written as the runner writes them;
- synthetic golden stores in a folder, and a git repository whose store holds revisions;
- a small Megatron-style ``test_cases`` tree holding every oddity of the real one (``odd_tree``),
  and TensorBoard event files;
- results for the report tests (``goldens.core.result`` objects, numbers chosen by hand);
- a scripted ``ReviewIO`` for the review loop, and the worker the approval races start;
- readers the report tests share (an HTML collector, Markdown tables) and ``tree_bytes``;
- Megatron case folders and goldens shaped like Megatron's (``training_doc``, ``inference_doc``);
- ``invoke``, the CLI in this process with any escaping exception a failure, its checks, and
  ``tree_state`` (what a command left on disk);
- ``leftover_processes``: what a run left running.

Elsewhere: the services the tool talks to, faked on the loopback, are in ``tests/fakes/`` (a CI
server, a GitHub Actions runner, a hostile HTTP server); Megatron's own test functions as the
oracle are in ``tests/oracle.py``.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

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

Values = MetricSeries | Mapping[int, float] | Sequence[float] | np.ndarray
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


MODEL_CONFIG = ("ENV_VARS:\n  NVTE_ALLOW_NONDETERMINISTIC_ALGO: 0\nTEST_TYPE: regular\n"
                "MODEL_ARGS:\n  --train-iters: 20\n")


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


# ---------------------------------------------------------------- TensorBoard event files, as Megatron writes them

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


def loss_verdict(metric: str = "lm loss", *, fail: bool = False, phase: int = 1,
                 rule: Rule = APPROX_5PCT) -> MetricVerdict:
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
    for line in [*text.splitlines(), ""]:
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
        doc[name] = megatron_metric({int(s): round(float(v), 5) for s, v in zip(steps, values, strict=True)})
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


# ---------------------------------------------------------------- the CLI in this process, and what it left

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


# ---------------------------------------------------------------- processes a run left

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
