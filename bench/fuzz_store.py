"""Fuzz the golden store: damaged and hostile stores, every store command, three invariants.

Each trial copies a healthy store (two cases with history, a staged candidate, runs to approve)
into a sandbox beside a sentinel tree (``outside/``: files, folders, look-alike temp files and
blobs, a fake ``.pending``), damages it with 1–4 random mutations — ledger edits (bytes, fields,
forged entries with a valid chain naming paths outside, lone surrogates), reordered, repeated and
dropped lines, truncations, missing files, symlinks into ``outside/`` (dangling ones too), wrong
file types (a file for a folder, a folder for a file, a named pipe), long names, stray blobs, temp
files and intents, hostile pending records and goldens — then runs every store command on it
(validate, show, history, fsck, adopt, approve, reject, rollback, pending, prune, diff, review;
a random third of them again with ``CI`` set) and checks after each:

1. no traceback: the command exits 0, 1 or 2 and nothing escapes it (a hang of 20 s counts too);
2. nothing outside the store changed: every file, folder and link below the sandbox but outside
   ``cases/`` is as it was (in CI: nothing in the store changed either);
3. no blob lost that a ledger line references: every ``objects/<hash>.json`` that a line of the
   ledger (any line that parses as JSON) names and that held those bytes still does.

With ``--backend git`` the store lies in a git work tree (git is its history: versions are
commits, approval records sit beside the goldens) and the damage is to what that backend keeps —
approval records (bytes, fields, deleted), forged journals (paths outside, garbage, half-applied),
``.golden-store``, ``.approvals`` and golden files as symlinks or the wrong file type — besides the
pending records, goldens, temp files and long names both share. Invariant 3 there: the repository
(``.git``, and everything in the work tree outside the store) is unchanged, so no committed
history is lost.

    python bench/fuzz_store.py [--stores 5000] [--seed 0] [--hang-seconds 20] [--backend ledger|git]

Prints the stores, commands and violations; exit 1 on any violation.
tests/test_store_fuzz.py runs a few hundred stores.
"""
from __future__ import annotations

import argparse
import faulthandler
import hashlib
import json
import os
import random
import re
import shutil
import signal
import stat
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CASES = ("tiny", "other")
PLAIN = "golden_values_dev_cpu.json"
SECOND = "golden_values_dev_cpu_2nd.json"
HEX64 = re.compile(r"^[0-9a-f]{64}$")
HANG_SECONDS = 20


class Hang(BaseException):
    """A command ran past HANG_SECONDS (a BaseException: nothing inside the command catches it)."""


# ---------------------------------------------------------------- the healthy store, built once

def build_template(root: Path, *, cases: Path | None = None,
                   commit: Callable[[str], Any] = lambda message: None) -> None:
    """cases/ (tiny: 3 versions, other: a resume pair adopted then approved), a staged candidate
    for tiny, and runs/ holding runs for both cases. ``commit`` is called after each approval (a
    git store: the person commits it)."""
    import numpy as np

    from goldens import approve
    from goldens.core.model import Artifact, GoldenKey, GoldenSet, MetricSeries, Phase
    from goldens.files.formats.artifact import dumps_artifact
    from goldens.files.formats.golden import dumps_golden
    from goldens.store import GoldenStore

    steps = np.arange(1, 21, dtype=np.int64)

    def golden(factor: float) -> GoldenSet:
        return GoldenSet({"lm loss": MetricSeries("lm loss", steps, (10.0 - steps / 8) * factor, 1, 20, 1),
                          "num-zeros": MetricSeries("num-zeros", steps, 1000.0 + steps * factor, 1, 20, 1)})

    def run(case: str, run_id: str, factor: float, env: str = "dev", platform: str = "cpu") -> Path:
        g = golden(factor)
        artifact = Artifact(case=case, run_id=run_id, status="complete",
                            provenance={"fingerprint": "fp-run", "env": env, "platform": platform},
                            phases={1: Phase(1, dict(g.metrics), 1, 20)})
        path = root / "runs" / run_id / "artifact.json"
        path.parent.mkdir(parents=True)
        path.write_text(dumps_artifact(artifact))
        return path

    cases = cases or root / "cases"
    for case in CASES:
        (cases / case).mkdir(parents=True)
        (cases / case / "case.yaml").write_text(f"description: fuzz case {case}\n")
    store = GoldenStore(cases)
    for version, who in enumerate(("seed", "ada", "bob"), start=1):
        store.write("tiny", {GoldenKey("tiny", "dev", "cpu", 1): golden(1 + version / 100)}, approver=who,
                    reason=f"v{version}", source_run_id=f"run-{version}", fingerprint="fp")
        commit(f"tiny v{version}")
    halves = golden(1.0)
    second_half = np.where(steps > 10, halves.metrics["lm loss"].values, np.nan)
    resumed = GoldenSet({"lm loss": MetricSeries("lm loss", steps, second_half, 1, 20, 1)})
    (cases / "other" / PLAIN).write_text(dumps_golden(halves))
    (cases / "other" / SECOND).write_text(dumps_golden(resumed))
    store.adopt("other", approver="importer")
    commit("other adopted")
    store.write("other", {GoldenKey("other", "dev", "cpu", 1): golden(1.02)}, approver="carol", reason="v2")
    commit("other v2")
    staged = run("tiny", "staged-run", 1.2)
    approve.stage_candidate(store, staged, "dev", "cpu", ci=False)
    run("tiny", "run-tiny", 1.07)
    run("other", "run-other", 0.97)
    run("tiny", "run-long", 1.1, env="e" * 120, platform="p" * 120)


def git(repo: Path, *args: str) -> str:
    import subprocess

    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def build_git_template(root: Path) -> None:
    """repo/ (a git work tree) holding cases/: tiny approved three times (three commits), other a
    resume pair adopted then approved, a staged candidate for tiny; runs/ beside it."""
    repo = root / "repo"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "fuzz")
    git(repo, "config", "user.email", "fuzz@example.com")
    git(repo, "config", "commit.gpgsign", "false")
    build_template(root, cases=repo / "cases", commit=lambda message: (git(repo, "add", "-A", "."),
                                                                       git(repo, "commit", "-q", "-m", message)))
    from goldens.store import GoldenStore

    assert GoldenStore(repo / "cases").backend_name == "git", "the template must be a git store"


def build_outside(outside: Path) -> None:
    """The sentinel tree: what a store command must never change."""
    (outside / "dir" / "sub").mkdir(parents=True)
    (outside / "victim.json").write_text('{"lm loss": {"values": {"1": 1.0}}}')
    (outside / "dir" / "sub" / "golden_values_dev_cpu.json").write_text("{}")
    (outside / "dir" / ".golden_values_dev_cpu.json.abcdefgh.tmp").write_text("look-alike temp file")
    (outside / "dir" / f".{'a' * 64}.json.abcdefgh.tmp").write_text("look-alike blob temp file")
    blob = b'{"stray": 1}'
    (outside / "dir" / f"{hashlib.sha256(blob).hexdigest()}.json").write_bytes(blob)
    (outside / "pending" / "tiny").mkdir(parents=True)
    (outside / "pending" / "tiny" / "dev_cpu.json").write_text('{"schema": "golden.pending/1"}')
    (outside / "ledger.jsonl").write_text('{"version": 1, "ti')


# ---------------------------------------------------------------- mutations

@dataclass
class World:
    sandbox: Path
    rng: random.Random
    backend: str = "ledger"

    @property
    def cases(self) -> Path:
        return self.sandbox / ("repo/cases" if self.backend == "git" else "cases")

    @property
    def outside(self) -> Path:
        return self.sandbox / "outside"

    def case(self, name: str | None = None) -> Path:
        return self.cases / (name or self.rng.choice(CASES))

    def store_path(self) -> Path:
        """One store path, chosen at random among those a store keeps."""
        case = self.case()
        if self.backend == "git":
            store_dir, records = self.cases / ".golden-store", case / ".approvals"
            return self.rng.choice([store_dir, store_dir / "lock", store_dir / "journal.json", records,
                                    records / "dev_cpu.json", records / "dev_cpu_2nd.json", case / PLAIN, case / SECOND,
                                    self.cases / ".pending", self.cases / ".pending" / "tiny",
                                    self.cases / ".pending" / "tiny" / "dev_cpu.json"])
        history = case / ".golden"
        choices = [history, history / "objects", history / "ledger.jsonl", history / "lock",
                   history / "intent.json", history / "quarantine", case / PLAIN, case / SECOND,
                   self.cases / ".pending", self.cases / ".pending" / "tiny",
                   self.cases / ".pending" / "tiny" / "dev_cpu.json"]
        blobs = sorted((history / "objects").glob("*.json")) if (history / "objects").is_dir() else []
        return self.rng.choice(choices + blobs[:3])

    def outside_target(self) -> Path:
        return self.rng.choice([self.outside / "victim.json", self.outside / "dir", self.outside / "pending",
                                self.outside / "ledger.jsonl", self.outside / "dir" / "sub",
                                self.outside / "nowhere"])  # the last one: a dangling link


def _ledger(w: World) -> Path:
    return w.case() / ".golden" / "ledger.jsonl"


def _lines(path: Path) -> list[bytes]:
    try:
        return path.read_bytes().splitlines(keepends=True) if path.is_file() and not path.is_symlink() else []
    except OSError:
        return []


def _write_lines(path: Path, lines: list[bytes]) -> None:
    if _plain_file_or_absent(path):
        path.write_bytes(b"".join(lines))


def _plain_file_or_absent(path: Path) -> bool:
    """Whether the fuzzer itself may write ``path`` (never through a link, never into a pipe)."""
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except FileNotFoundError:
        return path.parent.is_dir() and not path.parent.is_symlink()
    except NotADirectoryError:  # a parent is a file
        return False


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def m_flip_byte(w: World) -> None:
    path = _ledger(w)
    data = bytearray(path.read_bytes()) if _plain_file_or_absent(path) and path.exists() else None
    if data:
        i = w.rng.randrange(len(data))
        data[i] = w.rng.choice(b'{}[]":,0a\\\n ') if w.rng.random() < 0.7 else w.rng.randrange(256)
        path.write_bytes(bytes(data))


def _entries(path: Path) -> list[dict]:
    """The ledger's lines as JSON objects ([] when one is not)."""
    out = []
    for line in _lines(path):
        try:
            entry = json.loads(line)
        except (ValueError, RecursionError):
            return []
        if not isinstance(entry, dict):
            return []
        out.append(entry)
    return out


def _rechain(entries: list[dict]) -> list[bytes]:
    from goldens.store import entry_hash_of
    from goldens.store.records import canonical_json

    previous = None
    lines = []
    for entry in entries:
        if isinstance(entry, dict):
            entry["prev_entry_hash"] = previous
            try:
                entry["entry_hash"] = entry_hash_of(entry)
                previous = entry["entry_hash"]
                lines.append(canonical_json(entry) + b"\n")
            except (TypeError, ValueError):
                lines.append(json.dumps(entry).encode() + b"\n")
    return lines


def m_edit_field(w: World) -> None:
    path = _ledger(w)
    entries = _entries(path)
    if not entries:
        return
    entry = w.rng.choice(entries)
    field_ = w.rng.choice(["reason", "approver", "version", "action", "time", "source_run_id", "files", "provenance"])
    entry[field_] = w.rng.choice(["rewritten", 7, None, -1, True, [], {}, "\ud800x", "x" * 300, 2**70, 1.5])
    _write_lines(path, _rechain(entries) if w.rng.random() < 0.5 else [json.dumps(e).encode() + b"\n" for e in entries])


HOSTILE_NAMES = ["../../../outside/victim.json", "../../outside/created.json", "/etc/passwd",
                 "golden_values_dev_cpu.json/../../x.json", "golden_values_" + "e" * 240 + "_cpu.json",
                 "not_a_golden.json", "", ".", "..", "golden_values_dev_cpu.json\x00", "golden_values_dév_cpu.json"]
HOSTILE_HASHES = ["../../../../outside/victim", "0" * 63, "Z" * 64, None, 5, "../" * 20 + "x", "a" * 64]


def m_forge_entry(w: World) -> None:
    """A forged head with a valid hash chain, naming paths or blobs outside the store."""
    path = _ledger(w)
    entries = _entries(path)
    if not entries:
        return
    head = dict(entries[-1])
    victim = w.outside / "victim.json"
    name = w.rng.choice([*HOSTILE_NAMES, str(victim)])
    blob = w.rng.choice([*HOSTILE_HASHES, hashlib.sha256(victim.read_bytes()).hexdigest()])
    previous = w.rng.choice([None, hashlib.sha256(victim.read_bytes()).hexdigest(), blob])
    head.update(version=len(entries) + 1, files={name: {"hash": blob, "previous_hash": previous, "summary": None}})
    entries.append(head)
    _write_lines(path, _rechain(entries))


def m_reorder(w: World) -> None:
    path = _ledger(w)
    lines = _lines(path)
    if len(lines) > 1:
        w.rng.shuffle(lines)
        _write_lines(path, lines)


def m_duplicate(w: World) -> None:
    path = _ledger(w)
    lines = _lines(path)
    if lines:
        i = w.rng.randrange(len(lines))
        lines.insert(i, lines[i])
        _write_lines(path, lines)


def m_drop_line(w: World) -> None:
    path = _ledger(w)
    lines = _lines(path)
    if lines:
        lines.pop(w.rng.randrange(len(lines)))
        _write_lines(path, lines)


def m_truncate(w: World) -> None:
    path = w.rng.choice([_ledger(w) if w.backend == "ledger" else _record(w), w.store_path()])
    if _plain_file_or_absent(path) and path.exists():
        data = path.read_bytes()
        path.write_bytes(data[: w.rng.randrange(len(data) + 1)] if data else b"")


def m_strip_newline(w: World) -> None:
    path = _ledger(w)
    if _plain_file_or_absent(path) and path.exists():
        data = path.read_bytes()
        if data.endswith(b"\n"):
            path.write_bytes(data[:-1])


def m_torn_tail(w: World) -> None:
    path = _ledger(w)
    lines = _lines(path)
    if lines and _plain_file_or_absent(path):
        with open(path, "ab") as fh:
            fh.write(lines[-1][: w.rng.randrange(1, len(lines[-1]))])


def m_garbage_line(w: World) -> None:
    path = _ledger(w)
    lines = _lines(path)
    junk = w.rng.choice([b"{not json\n", b"[]\n", b"\n", b'{"version": 1}\n', b"\xff\xfe\n", b'{"a": "\\ud800"}\n',
                         b"[" * 5000 + b"\n"])
    lines.insert(w.rng.randrange(len(lines) + 1), junk)
    _write_lines(path, lines)


def m_delete(w: World) -> None:
    path = w.store_path()
    if path.exists() or path.is_symlink():
        _remove(path)


def m_symlink(w: World) -> None:
    path = w.store_path()
    if not path.parent.is_dir() or path.parent.is_symlink():
        return
    target = w.outside_target()
    if path.exists() or path.is_symlink():
        _remove(path)
    os.symlink(target, path)


def m_wrong_type(w: World) -> None:
    path = w.store_path()
    if not path.parent.is_dir() or path.parent.is_symlink():
        return
    was_dir = path.is_dir() and not path.is_symlink()
    if path.exists() or path.is_symlink():
        _remove(path)
    kind = w.rng.choice(["fifo", "file" if was_dir else "dir"])
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dir":
        path.mkdir()
    else:
        path.write_text("not a folder")


def m_long_name(w: World) -> None:
    case = w.case()
    name = w.rng.choice(["golden_values_" + "e" * 200 + "_" + "p" * 30 + ".json",
                         "golden_values_dev_" + "p" * (255 - 23) + ".json",
                         "golden_values_dev_" + "p" * 220 + "_2nd.json"])
    source = next((p for p in (case / PLAIN, case / SECOND) if _plain_file_or_absent(p) and p.exists()), None)
    if _plain_file_or_absent(case / name):
        (case / name).write_bytes(source.read_bytes() if source else b"{}")


def m_stray(w: World) -> None:
    objects = w.case() / ".golden" / "objects"
    if not objects.is_dir() or objects.is_symlink():
        return
    data = w.rng.choice([b'{"stray": 2}', b"", b"\x00" * 10])
    name = w.rng.choice([f"{hashlib.sha256(data).hexdigest()}.json", f"{'b' * 64}.json", "notes.txt",
                         f".{hashlib.sha256(data).hexdigest()}.json.abcdefgh.tmp", ".weird.tmp"])
    if _plain_file_or_absent(objects / name):
        (objects / name).write_bytes(data)


def m_intent(w: World) -> None:
    history = w.case() / ".golden"
    if not history.is_dir() or history.is_symlink():
        return
    ledger = _entries(history / "ledger.jsonl")
    head = ledger[-1].get("entry_hash") if ledger and isinstance(ledger[-1], dict) else None
    blobs = [p.stem for p in (history / "objects").glob("*.json")] if (history / "objects").is_dir() else []
    doc = w.rng.choice([
        {"schema": "golden.intent/1", "base": head, "blobs": w.rng.sample(blobs, min(len(blobs), 2))},
        {"schema": "golden.intent/1", "base": None, "blobs": blobs},
        {"schema": "golden.intent/1", "base": head, "blobs": ["../../../outside/victim"]},
        "not an intent", {"schema": "golden.intent/1", "base": "x", "blobs": 3}])
    target = history / "intent.json"
    if _plain_file_or_absent(target):
        target.write_text(json.dumps(doc))


def m_temp_files(w: World) -> None:
    case = w.case()
    for folder, name in ((case, f".{PLAIN}.abcd1234.tmp"),
                         (case / ".golden" / "objects", f".{'c' * 64}.json.zz99xx00.tmp"),
                         (case / ".golden", ".intent.json.q1w2e3r4.tmp")):
        if folder.is_dir() and not folder.is_symlink() and _plain_file_or_absent(folder / name):
            (folder / name).write_text("half")


def m_pending_record(w: World) -> None:
    pending = w.cases / ".pending" / w.rng.choice(["tiny", "other", "x" * 200, "nope"])
    if pending.parent.exists() and (pending.parent.is_symlink() or not pending.parent.is_dir()):
        return
    if pending.is_symlink() or (pending.exists() and not pending.is_dir()):
        return
    try:
        pending.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    doc = {"schema": "golden.pending/1", "case": w.rng.choice(["tiny", "../x", "other"]),
           "env": w.rng.choice(["dev", "e" * 150]), "platform": w.rng.choice(["cpu", "p" * 150, "a/b"]),
           "run_id": "r", "artifact": w.rng.choice([str(w.outside / "victim.json"), str(w.outside / "dir"),
                                                    str(w.sandbox / "runs" / "run-tiny" / "artifact.json"),
                                                    "/dev/zero"]),
           "base_version": w.rng.choice([0, 3, None, -1, "x"]), "metrics": []}
    name = w.rng.choice(["dev_cpu.json", "lts_cpu.json", "x" * 250 + ".json"])
    if _plain_file_or_absent(pending / name):
        (pending / name).write_text(json.dumps(doc) if w.rng.random() < 0.8 else "{broken")


def m_plain_golden(w: World) -> None:
    path = w.case() / w.rng.choice([PLAIN, SECOND, "golden_values_lts_cpu.json"])
    if not _plain_file_or_absent(path):
        return
    big = 2**53
    path.write_text(w.rng.choice([
        json.dumps({"lm loss": {"start_step": 1, "end_step": 20, "step_interval": 1, "values": {"1": 9.0}}}),
        '{"\\ud800x": {"start_step": 1, "end_step": 1, "step_interval": 1, "values": {"1": 1.0}}}',
        json.dumps({"lm loss": {"start_step": big, "step_interval": big, "values": [1.0] * 2048}}),
        json.dumps({"lm loss": {"start_step": 1, "end_step": big, "step_interval": 1, "values": {"1": 1.0}}}),
        "{not json", "", json.dumps({"lm loss": {"values": {"1": 1.0, "01": 2.0}}})]))


def _record(w: World) -> Path:
    return w.case() / ".approvals" / w.rng.choice(["dev_cpu.json", "dev_cpu_2nd.json"])


def m_record_byte(w: World) -> None:
    path = _record(w)
    if _plain_file_or_absent(path) and path.exists() and path.stat().st_size:
        data = bytearray(path.read_bytes())
        data[w.rng.randrange(len(data))] = w.rng.choice(b'{}[]":,0a\\\n ')
        path.write_bytes(bytes(data))


def m_record_field(w: World) -> None:
    path = _record(w)
    try:
        doc = json.loads(path.read_bytes()) if _plain_file_or_absent(path) and path.exists() else None
    except ValueError:
        return
    if isinstance(doc, dict) and doc:
        key = w.rng.choice(sorted(doc))
        doc[key] = w.rng.choice(["rewritten", None, -1, [], {}, "x" * 300, "../../../outside/victim.json",
                                 "golden_values_dev_cpu.json", "0" * 64, 2**70])
        path.write_text(json.dumps(doc))


def m_forge_journal(w: World) -> None:
    """A journal as a crash leaves it — or forged: paths outside, a record for another file, garbage."""
    store_dir = w.cases / ".golden-store"
    if store_dir.is_symlink() or (store_dir.exists() and not store_dir.is_dir()):
        return  # a link (dangling too) or a file there: the fuzzer never writes through it
    store_dir.mkdir(exist_ok=True)
    valid = {f"tiny/{PLAIN}": (w.cases / "tiny" / PLAIN).read_text() if _plain_file_or_absent(w.cases / "tiny" / PLAIN)
             and (w.cases / "tiny" / PLAIN).exists() else "{}", "other/.approvals/dev_cpu_2nd.json": None}
    hostile = w.rng.choice(["../../outside/victim.json", str(w.outside / "victim.json"),
                            "tiny/../../../outside/created.json", "tiny/.approvals/../../../outside/dir/sub",
                            "tiny/golden_values_dev_cpu.json/../../x.json", "../repo/.git/config"])
    doc = w.rng.choice([{"schema": "golden.journal/1", "files": valid},
                        {"schema": "golden.journal/1", "files": {**valid, hostile: w.rng.choice([None, "{}"])}},
                        {"schema": "golden.journal/1", "files": {hostile: None}},
                        {"schema": "golden.journal/1", "files": []}, "not a journal", {"files": valid}])
    target = store_dir / "journal.json"
    if _plain_file_or_absent(target):
        target.write_text(json.dumps(doc) if w.rng.random() < 0.9 else '{"schema": "golden.journal/1", "fi')


def m_git_temp_files(w: World) -> None:
    case = w.case()
    for folder, name in ((case, f".{PLAIN}.abcd1234.tmp"), (case, f".{PLAIN}.tmp"),
                         (case / ".approvals", ".dev_cpu.json.zz99xx00.tmp"),
                         (w.cases / ".golden-store", ".journal.json.q1w2e3r4.tmp"),
                         (w.cases / ".golden-store", ".notes.q1w2e3r4.tmp")):
        if folder.is_dir() and not folder.is_symlink() and _plain_file_or_absent(folder / name):
            (folder / name).write_text("half")


GIT_MUTATIONS: dict[str, Callable[[World], None]] = {
    "flip a record byte": m_record_byte, "edit a record field": m_record_field, "forge a journal": m_forge_journal,
    "temp files": m_git_temp_files,
}


MUTATIONS: dict[str, Callable[[World], None]] = {
    "flip a ledger byte": m_flip_byte, "edit a ledger field": m_edit_field, "forge a ledger entry": m_forge_entry,
    "reorder ledger lines": m_reorder, "repeat a ledger line": m_duplicate, "drop a ledger line": m_drop_line,
    "truncate a file": m_truncate, "strip the last newline": m_strip_newline, "torn ledger tail": m_torn_tail,
    "garbage ledger line": m_garbage_line, "delete a store path": m_delete, "symlink a store path": m_symlink,
    "wrong file type": m_wrong_type, "long file name": m_long_name, "stray file in objects": m_stray,
    "write intent": m_intent, "temp files": m_temp_files, "hostile pending record": m_pending_record,
    "hostile plain golden": m_plain_golden,
}

SHARED = ("truncate a file", "delete a store path", "symlink a store path", "wrong file type", "long file name",
          "hostile pending record", "hostile plain golden")


def mutations(backend: str) -> dict[str, Callable[[World], None]]:
    """The damage a store of this backend can take."""
    if backend == "git":
        return {**{name: MUTATIONS[name] for name in SHARED}, **GIT_MUTATIONS}
    return MUTATIONS


# ---------------------------------------------------------------- commands and invariants

def commands(w: World) -> list[tuple[str, list[str]]]:
    s = ["--store", str(w.cases)]
    runs = w.sandbox / "runs"
    if w.backend == "git":
        version = lambda: w.rng.choice(["HEAD~1", "HEAD~2", "HEAD~9", "v1", "main"])
    else:
        version = lambda: f"v{w.rng.randint(1, 4)}"
    return [
        ("validate", ["validate", *s]),
        ("show", ["show", w.rng.choice(CASES), *s]),
        ("show a version", ["show", f"{w.rng.choice(CASES)}@{version()}", *s]),
        ("history", ["history", w.rng.choice(CASES), *s]),
        ("fsck --no-repair", ["fsck", "--no-repair", *s]),
        ("pending", ["pending", *s]),
        ("diff run", ["diff", str(runs / w.rng.choice(["run-tiny", "run-other", "run-long"]) / "artifact.json"), *s]),
        ("diff versions", ["diff", f"tiny@{version()}", f"tiny@{version()}", *s]),
        ("review", ["review", *s]),
        ("prune --check", ["prune", "--check", *s]),
        ("approve run", ["approve", str(runs / w.rng.choice(["run-tiny", "run-other", "run-long"]) / "artifact.json"),
                         *s, "--reason", "fuzz"]),
        ("approve --pending", ["approve", "--pending", *s, "--reason", "fuzz"]),
        ("rollback", ["rollback", w.rng.choice(CASES), "--to", version(), *s, "--reason", "fuzz"]),
        ("adopt", ["adopt", w.rng.choice(CASES), *s]),
        ("reject --pending", ["reject", "--pending", *s]),
        ("prune", ["prune", *s]),
        ("fsck", ["fsck", *s]),
    ]


def tree(root: Path, skip: Path | None = None) -> dict[str, tuple]:
    """Every entry below ``root`` (not below ``skip``) as it lies on disk, links never followed."""
    state: dict[str, tuple] = {}
    for top, dirs, files in os.walk(root):
        if skip is not None and Path(top) == skip.parent:
            dirs[:] = [d for d in dirs if Path(top) / d != skip]
        for name in dirs + files:
            path = Path(top) / name
            mode = path.lstat().st_mode
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(mode):
                state[rel] = ("link", os.readlink(path))
            elif stat.S_ISREG(mode):
                state[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
            else:
                state[rel] = ("dir" if stat.S_ISDIR(mode) else "other",)
    return state


def referenced_blobs(cases: Path) -> dict[Path, bytes]:
    """Blob → its bytes, for every blob a ledger line (any line that parses as JSON) names and that
    lies, whole, in a case's real objects folder."""
    found: dict[Path, bytes] = {}
    for case in CASES:
        history = cases / case / ".golden"
        ledger, objects = history / "ledger.jsonl", history / "objects"
        if any(p.is_symlink() for p in (history, ledger, objects)) or not ledger.is_file() or not objects.is_dir():
            continue
        for line in ledger.read_bytes().splitlines():
            try:
                files = json.loads(line).get("files")
            except (ValueError, AttributeError, RecursionError):
                continue
            for record in (files.values() if isinstance(files, dict) else ()):
                for digest in (record.get("hash"), record.get("previous_hash")) if isinstance(record, dict) else ():
                    blob = objects / f"{digest}.json"
                    if isinstance(digest, str) and HEX64.match(digest) and blob.is_file() and not blob.is_symlink():
                        data = blob.read_bytes()
                        if hashlib.sha256(data).hexdigest() == digest:
                            found[blob] = data
    return found


@dataclass
class FuzzStats:
    stores: int = 0
    commands: int = 0
    exit_codes: Counter = field(default_factory=Counter)
    mutations: Counter = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    kinds: Counter = field(default_factory=Counter)

    def count(self, kind: str, message: str) -> None:
        self.kinds[kind] += 1
        if len(self.violations) < 50:
            self.violations.append(message)


def _alarm(signum: int, frame: Any) -> None:
    raise Hang()


@contextmanager
def command_built_once() -> Iterator[None]:
    """typer's CliRunner builds the click command from the app on every invoke (most of a store
    command's time here); build it once for the whole run."""
    import typer.testing

    from goldens.cli import app

    build = getattr(typer.testing, "_get_command", None)
    if build is None:
        yield
        return
    built = build(app)
    typer.testing._get_command = lambda given: built if given is app else build(given)
    try:
        yield
    finally:
        typer.testing._get_command = build


def run_command(args: list[str], env: dict[str, str | None]) -> tuple[int | None, str]:
    """(exit code, "" or the traceback) of ``golden ARGS`` in this process. A command still running
    after HANG_SECONDS is stopped (SIGALRM) and counted; one that cannot even be stopped ends the
    whole run with every thread's stack (faulthandler), never a silent wait."""
    from typer.testing import CliRunner

    from goldens.cli import app

    signal.alarm(HANG_SECONDS)
    faulthandler.dump_traceback_later(HANG_SECONDS * 3, exit=True)
    try:
        result = CliRunner().invoke(app, args, env=env)
    except Hang:
        return None, f"hung for {HANG_SECONDS} s"
    finally:
        signal.alarm(0)
        faulthandler.cancel_dump_traceback_later()
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return None, "".join(traceback.format_exception(*result.exc_info))[-2000:]
    return result.exit_code, ""


def trial(template: Path, work: Path, rng: random.Random, stats: FuzzStats, number: int,
          backend: str = "ledger") -> None:
    sandbox = work / f"store-{number}"
    shutil.copytree(template, sandbox, symlinks=True)
    w = World(sandbox, rng, backend)
    applied = []
    damage = mutations(backend)
    for _ in range(rng.randint(1, 4)):
        name = rng.choice(list(damage))
        damage[name](w)
        applied.append(name)
        stats.mutations[name] += 1
    outside = tree(sandbox, skip=w.cases)
    plan = commands(w)
    rng.shuffle(plan)
    for label, args in plan:
        for ci in ((True, False) if rng.random() < 1 / 3 else (False,)):  # CI first: the damage still there
            env = {"CI": "true" if ci else None, "GOLDEN_STORE": None, "COLUMNS": "200"}
            store_before = tree(w.cases) if ci else None
            blobs = referenced_blobs(w.cases)
            code, trace = run_command(args, env)
            stats.commands += 1
            where = f"store {number} ({', '.join(applied)}): golden {label}{' [CI]' if ci else ''}"
            stats.exit_codes[code] += 1
            if code not in (0, 1, 2):
                stats.count("traceback or hang", f"{where}: exit {code}\n{trace}")
            if tree(sandbox, skip=w.cases) != outside:
                stats.count("changed outside the store", f"{where}: changed something outside the store")
                outside = tree(sandbox, skip=w.cases)
            if ci and tree(w.cases) != store_before:
                stats.count("wrote in CI", f"{where}: wrote to the store with CI set")
            lost = [p.name for p, data in blobs.items()  # (a git store's history is in .git, checked above)
                    if not p.is_file() or p.is_symlink() or p.read_bytes() != data]
            if lost:
                stats.count("lost a referenced blob", f"{where}: lost referenced blob(s) {lost}")
    stats.stores += 1
    shutil.rmtree(sandbox, ignore_errors=True)


def run_fuzz(stores: int, *, seed: int = 0, progress: bool = False, backend: str = "ledger") -> FuzzStats:
    rng = random.Random(seed)
    stats = FuzzStats()
    previous = signal.signal(signal.SIGALRM, _alarm)
    saved_cwd = os.getcwd()
    try:
        with tempfile.TemporaryDirectory(prefix="golden-fuzz-") as tmp, command_built_once():
            template = Path(tmp) / "template"
            (build_git_template if backend == "git" else build_template)(template)
            build_outside(template / "outside")
            os.chdir(tmp)  # a command that looked for runs/ or cases/ in the working folder finds nothing
            for number in range(stores):
                trial(template, Path(tmp), rng, stats, number, backend)
                if progress and (number + 1) % 250 == 0:
                    print(f"  {number + 1} stores, {stats.commands} commands, "
                          f"{sum(stats.kinds.values())} violations", flush=True)
    finally:
        os.chdir(saved_cwd)
        signal.signal(signal.SIGALRM, previous)
    return stats


def main() -> int:
    global HANG_SECONDS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", choices=("ledger", "git"), default="ledger",
                        help="the store's history: a ledger beside the goldens, or the git work tree it lies in")
    parser.add_argument("--hang-seconds", type=int, default=HANG_SECONDS,
                        help="a command running this long counts as a hang (and is stopped)")
    args = parser.parse_args()
    HANG_SECONDS = args.hang_seconds
    os.environ.pop("CI", None)
    os.environ.pop("GOLDEN_STORE", None)
    started = time.perf_counter()
    stats = run_fuzz(args.stores, seed=args.seed, progress=True, backend=args.backend)
    print(f"{args.backend} backend: {stats.stores} damaged stores, {stats.commands} commands "
          f"in {time.perf_counter() - started:.0f} s")
    print("exit codes: " + ", ".join(f"{code}: {n}" for code, n in sorted(stats.exit_codes.items(), key=str)))
    print("mutations: " + ", ".join(f"{name} {n}" for name, n in stats.mutations.most_common()))
    total = sum(stats.kinds.values())
    print(f"{total} violations" + (": " + ", ".join(f"{k} {n}" for k, n in stats.kinds.items()) if total else
                                    " (no traceback or hang, nothing outside the store changed, nothing written in "
                                    "CI, no referenced blob lost)"))
    for violation in stats.violations[:20]:
        print("  " + violation.replace("\n", "\n    "))
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
