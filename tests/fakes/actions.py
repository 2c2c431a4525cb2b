"""A fake GitHub Actions runner: a composite action's steps run here, in bash, as GitHub's runner runs them.

Why: the repository's action (``.github/actions/golden/action.yml``) is tested without GitHub.
``ActionRun`` evaluates GitHub's expressions (``${{ }}``, ``if:``), gives each ``run:`` script the
step's ``env:`` and the GITHUB_* files and variables, and records what ``uses:`` steps would be given.
"""
from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

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
        declared = self.spec.get("outputs") or {}
        return {name: substitute(spec["value"], self.contexts()) for name, spec in declared.items()}
