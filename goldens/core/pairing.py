"""Pairing candidate files with the store's goldens, for judging in bulk: a pure function.

A candidate is a golden_values file as Megatron's CI writes it (with its ``_2nd`` pair, the same
run's second phase) or a run artifact. Its case is the folder it was found in, relative to the folder
it was given in — a candidates tree mirrors ``test_cases/<model>/<case>/`` — matched with the store's
case paths; where that path is not one, the folder's own name, if exactly one store case has it. An
artifact declares its case. With env and platform (from the file name, or the artifact's
provenance) that is the target, paired with the store's golden of (case, env, platform).

Whatever cannot be paired is a ``Finding`` — never an exception: a ``_2nd`` file without its run-1
file, a folder no store case matches (or several do), a second candidate for a target already
taken, a target the store has no golden for. Files and the store are read by the caller
(``goldens.workflow.bulk.judge_bulk``); here are only names.
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

GOLDEN, ARTIFACT = "golden", "artifact"


@dataclass(frozen=True)
class CandidateFile:
    """One file found among the candidates.

    ``folder``: where it was found, relative to the path it was given in (posix, ``""`` at the top —
    then ``top`` names that folder); ``case``: the case an artifact declares. ``phase`` 2 is a
    ``_2nd`` file."""

    path: str
    kind: str  # GOLDEN | ARTIFACT
    env: str | None
    platform: str | None
    phase: int = 1
    folder: str = ""
    top: str = ""
    case: str | None = None


@dataclass(frozen=True)
class Finding:
    """Something among the candidates that was not judged, and why (one line)."""

    path: str
    kind: str  # unpaired | no-case | ambiguous | duplicate | no-golden | broken | not-a-candidate | empty
    message: str
    case: str | None = None
    env: str | None = None
    platform: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "message": self.message, "case": self.case, "env": self.env,
                "platform": self.platform}


@dataclass(frozen=True)
class Target:
    """A candidate run paired with the store's golden of (case, env, platform)."""

    case: str
    env: str
    platform: str
    path: str                  # the run-1 golden_values file, or the artifact
    kind: str
    second: str | None = None  # the _2nd file beside a golden_values file


@dataclass(frozen=True)
class Pairing:
    targets: tuple[Target, ...] = ()
    findings: tuple[Finding, ...] = field(default=())


def case_names(cases: Collection[str]) -> dict[str, list[str]]:
    """Each case's last name → the cases with it (what ``resolve_case`` falls back to)."""
    names: dict[str, list[str]] = {}
    for case in sorted(cases):
        names.setdefault(case.rsplit("/", 1)[-1], []).append(case)
    return names


def resolve_case(folder: str, top: str, cases: Collection[str],
                 names: Mapping[str, list[str]] | None = None) -> tuple[str | None, str]:
    """The store case a candidate folder stands for, and why not when there is none: the folder's
    path (relative to the given folder) as a case path; else its last name, if one case has it.
    ``names``: ``case_names(cases)``, when the caller resolves many folders."""
    wanted = folder.strip("/") or top
    if wanted in cases:
        return wanted, ""
    name = wanted.rsplit("/", 1)[-1]
    matches = (case_names(cases) if names is None else names).get(name, [])
    if len(matches) == 1:
        return matches[0], ""
    if matches:
        return None, f"ambiguous: {len(matches)} store cases are named {name!r} ({', '.join(matches[:4])})"
    return None, f"no store case {wanted!r}" + (f" (nor one named {name!r})" if name != wanted else "")


def pair_candidates(files: Sequence[CandidateFile], cases: Collection[str],
                    goldens: Mapping[str, Collection[tuple[str, str]]] | Callable[[str], Collection[tuple[str, str]]]
                    ) -> Pairing:
    """Targets and findings for ``files``. ``cases``: the store's case paths; ``goldens``: for a case,
    the (env, platform) pairs it has a phase-1 golden for (a case absent from it has none), as a
    mapping or a function of the case. Files are taken in the order given; the first candidate for a
    target wins."""
    has = goldens if callable(goldens) else (lambda case: goldens.get(case, ()))
    cases = set(cases)
    names = case_names(cases)
    findings: list[Finding] = []
    targets: list[Target] = []
    seconds = {(f.folder, f.top, f.env, f.platform): f for f in files if f.kind == GOLDEN and f.phase == 2}
    used_seconds: set[str] = set()
    taken: dict[tuple[str, str, str], str] = {}
    resolved: dict[tuple[str, str], tuple[str | None, str]] = {}
    for f in files:
        if f.kind == GOLDEN and f.phase == 2:
            continue
        if f.env is None or f.platform is None:
            findings.append(Finding(f.path, "unpaired", "no env and platform: not named golden_values_<env>_<platform>"
                                                        ".json, and no provenance saying them"))
            continue
        key = (f.case, f.case) if f.kind == ARTIFACT and f.case is not None else (f.folder, f.top)
        if key not in resolved:
            resolved[key] = resolve_case(*key, cases, names)
        case, why = resolved[key]
        second = seconds.get((f.folder, f.top, f.env, f.platform)) if f.kind == GOLDEN else None
        if second is not None:
            used_seconds.add(second.path)
        if case is None:
            findings.append(Finding(f.path, "ambiguous" if why.startswith("ambiguous") else "no-case", why,
                                    None, f.env, f.platform))
            continue
        target = (case, f.env, f.platform)
        if target in taken:
            findings.append(Finding(f.path, "duplicate", f"a second candidate for {case} {f.env}/{f.platform} "
                                                         f"(judged: {taken[target]})", case, f.env, f.platform))
            continue
        taken[target] = f.path
        if (f.env, f.platform) not in has(case):
            findings.append(Finding(f.path, "no-golden", f"case {case} has no golden for {f.env}/{f.platform}",
                                    case, f.env, f.platform))
        targets.append(Target(case, f.env, f.platform, f.path, f.kind, None if second is None else second.path))
    for f in files:
        if f.kind == GOLDEN and f.phase == 2 and f.path not in used_seconds:
            findings.append(Finding(f.path, "unpaired", "a _2nd file without its run-1 golden_values file beside it",
                                    None, f.env, f.platform))
    return Pairing(tuple(targets), tuple(findings))
