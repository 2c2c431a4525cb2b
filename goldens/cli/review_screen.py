"""The terminal side of approval: pending tables, the review screen, its key source.

rich lives here (an edge), never in ``goldens.approve``; ``TerminalReviewIO`` is the real key
source and a test passes its own ``ReviewIO`` instead. The commands import this module inside
their bodies (it loads numpy and rich), so it imports everything at its top.
"""
from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from typing import Any

import numpy as np
import typer
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from ..approve import REVIEW_KEYS, Candidate, CandidateView, MetricView, Outcome, ReviewSummary

VERDICT_STYLE = {"pass": "green", "fail": "bold red", "missing": "red", "new": "cyan", "skipped": "dim"}


def _plain(value: str, style: str = "") -> Any:
    """User data (names, explanations) as literal text: a '[' in a metric name is not markup."""
    return Text(value, style=style)


def _one_line(value: str, style: str = "") -> Any:
    """Literal text kept to one line: cut with … where its column is narrower."""
    text = _plain(" ".join(value.split()), style)
    text.no_wrap, text.overflow = True, "ellipsis"
    return text


def _verdict(verdict: str) -> Any:
    return _plain(verdict, VERDICT_STYLE.get(verdict, ""))


def pending_table(candidates: Sequence[Candidate]) -> Any:
    table = Table(title=f"{len(candidates)} pending candidate(s)", title_justify="left")
    for column in ("case", "env", "platform", "run", "verdict", "failing", "against", "staged"):
        table.add_column(column)
    for c in candidates:
        failing = sorted(f"{m}" + (f" (p{p})" if p != 1 else "") for p, names in c.failing().items() for m in names)
        table.add_row(*(_plain(x) for x in (c.case, c.env, c.platform, c.run_id)), _verdict(c.verdict),
                      _plain(", ".join(failing) or "-"),
                      _plain(_against(c)), _plain(c.created))
    return table


def _against(c: Candidate) -> str:
    """What a candidate was compared against: a ledger version, a golden's bytes (git), or nothing."""
    if c.base_version:
        return f"v{c.base_version}"
    held = sorted(h for h in (c.base_files or {}).values() if h)
    return f"golden {held[0][:8]}" if held else "no golden"


def _largest_change(m: MetricView) -> str:
    delta = np.abs(m.run - m.golden)
    if not np.isfinite(delta).any():
        return "-"
    i = int(np.nanargmax(np.where(np.isfinite(delta), delta, np.nan)))
    g = m.golden[i]
    pct = f" ({100 * delta[i] / abs(g):.3g}%)" if g else ""
    return f"{delta[i]:.6g}{pct} @ {int(m.steps[i])}"


FAILING = frozenset({"fail", "missing"})   # the verdicts a reviewer must see first
FAILING_ONLY_KEY = "f"                       # the screen's own key: failing rows only / every row
SCREEN_CHROME = 2                            # the rule above a panel and the key prompt under it


def candidate_panel(view: CandidateView, index: int, total: int, *, failing_only: bool = False,
                    size: tuple[int, int] | None = None) -> Any:
    """One candidate on the screen: failing metrics first, one line each. ``size`` (width, height) of
    the terminal: the panel fits it — passing rows are left out (and counted) before a failing
    one would scroll off. ``failing_only``: the failing rows alone (the f key)."""
    failing = [m for m in view.metrics if m.verdict in FAILING]
    rows = failing if failing_only else failing + [m for m in view.metrics if m.verdict not in FAILING]
    if size is None:
        return _panel(view, index, total, rows, len(view.metrics) - len(rows), failing_only, 32)
    width, height = size
    measure = Console(width=width, height=height, color_system=None, legacy_windows=False)
    spark = max(6, min(32, (width - 80) // 2))
    shown = len(rows)
    while True:
        panel = _panel(view, index, total, rows[:shown], len(view.metrics) - shown, failing_only, spark)
        if shown == 0 or len(measure.render_lines(panel, measure.options, pad=False)) + SCREEN_CHROME <= height:
            return panel
        shown -= 1


def _panel(view: CandidateView, index: int, total: int, rows: Sequence[MetricView], hidden: int,
           failing_only: bool, spark: int) -> Any:
    c = view.candidate
    base = "no golden yet" if _against(c) == "no golden" else f"staged against {_against(c)}"
    header = Text.assemble((f"[{index + 1}/{total}] {c.case}", "bold"), f" {c.env}/{c.platform} · run {c.run_id} · ",
                           _verdict(c.verdict), f" · {base}", no_wrap=True, overflow="ellipsis")
    table = Table(show_edge=False, pad_edge=False)
    for column in ("", "phase", "metric", "verdict", "golden", "run", "largest |Δ|", "why"):
        # metric and why give way to a narrow terminal (rich shrinks wrappable columns first); every
        # cell is one line, cut with … rather than wrapped, so a row is one line of the screen
        table.add_column(column, no_wrap=column not in ("metric", "why"), overflow="ellipsis",
                         max_width=28 if column == "metric" else None)
    for m in rows:
        lo, hi = finite_range(m.golden, m.run)
        table.add_row("✓" if m.selected else " ", str(m.phase), _one_line(m.metric), _verdict(m.verdict),
                      _plain(sparkline(m.golden, lo, hi, spark), "yellow"),
                      _plain(sparkline(m.run, lo, hi, spark), "cyan"),
                      _largest_change(m), _one_line(m.explanation, "dim"))
    parts: list[Any] = [header, table]
    if hidden:
        failing_hidden = sum(m.verdict in FAILING for m in view.metrics) - sum(m.verdict in FAILING for m in rows)
        among = f", {failing_hidden} of them failing" if failing_hidden else ""
        parts.append(Text(f"… {hidden} metric(s) not shown{among} (a taller terminal shows more)", style="yellow",
                          no_wrap=True, overflow="ellipsis"))
    if view.problem:
        parts.append(Text(f"cannot be accepted: {view.problem}", style="bold red"))
    keys = " · ".join(f"{k} {v}" for k, v in REVIEW_KEYS.items())
    toggle = "every row" if failing_only else "failing only"
    parts.append(Text(f"✓ = taken from the run if accepted · {keys} · {FAILING_ONLY_KEY} {toggle}", style="dim"))
    return Group(*parts)


def summary_lines(summary: ReviewSummary) -> list[str]:
    lines = [f"accepted {len(summary.accepted)} · rejected {len(summary.rejected)} · "
             f"skipped {len(summary.skipped)} · refused {len(summary.refused)}"]
    lines += [accepted_line(o) for o in summary.accepted if o.entry is not None]
    lines += [f"refused {c.target}: {why}" for c, why in summary.refused]
    return lines


def accepted_line(outcome: Outcome) -> str:
    c = outcome.candidate
    if outcome.entry is None:
        return f"{c.target}: {outcome.note}"
    version = outcome.entry
    where = "in the work tree (commit it with its record)" if version.ref == "worktree" else f"as {version.label}"
    line = f"approved {c.target} {where} from run {c.run_id}"
    if outcome.plan is not None and outcome.plan.selection.partial:
        taken = sorted({n for ch in outcome.plan.changes for n in (*ch.replaced, *ch.added)})
        kept = sorted({n for ch in outcome.plan.changes for n in ch.kept})
        line += f" {took_and_kept(taken, kept)}"
    return line


def took_and_kept(taken: Sequence[str], kept: Sequence[str]) -> str:
    """A selective approval in a few words: what came from the run, what the golden kept."""
    return f"(took {', '.join(taken) or 'nothing'}; kept {', '.join(kept) or 'nothing'})"


def review_commands(candidates: Sequence[Candidate], store_option: str) -> list[str]:
    """What to type instead of the interactive review (no terminal to read keys from)."""
    lines = []
    for c in candidates:
        where = f"--case {shlex.quote(c.case)} --env {shlex.quote(c.env)} --platform {shlex.quote(c.platform)}"
        lines.append(f"# {c.target}: run {c.run_id} ({c.verdict})")
        lines.append(f"golden approve --pending {where}{store_option} --reason 'WHY'")
        lines.append(f"golden reject --pending {where}{store_option}")
    return lines


class TerminalReviewIO:
    """Keys from the terminal, one press at a time (typer.getchar: no Enter needed). The screen
    fits the terminal; its own key f shows the failing rows only (or every row again)."""

    def __init__(self, console: Any):
        self.console = console
        self.failing_only = False
        self.shown: tuple[CandidateView, int, int] | None = None

    def show(self, view: CandidateView, index: int, total: int) -> None:
        self.shown = (view, index, total)
        self.console.rule()
        self.console.print(candidate_panel(view, index, total, failing_only=self.failing_only,
                                           size=(self.console.size.width, self.console.size.height)))

    def key(self) -> str:
        while True:
            self.console.print(f"[bold]a/r/s/A/R/q/{FAILING_ONLY_KEY}[/] ", end="")
            key = typer.getchar()
            self.console.print(key)
            if key in ("\x03", "\x04"):
                raise EOFError
            if key != FAILING_ONLY_KEY or self.shown is None:
                return key
            self.failing_only = not self.failing_only
            self.show(*self.shown)

    def reason(self) -> str | None:
        return self.console.input("reason for accepting (recorded with the version): ")

    def note(self, message: str) -> None:
        self.console.print(message, style="yellow", markup=False)


def sparkline(values: Any, lo: float, hi: float, width: int = 32) -> str:
    """Values as ▁▂▃▄▅▆▇█ on a shared [lo, hi] scale (a blank where there is no value)."""
    bars = "▁▂▃▄▅▆▇█"
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return ""
    buckets = np.array_split(values, min(width, values.size))
    out = []
    for bucket in buckets:
        finite = bucket[np.isfinite(bucket)]
        if finite.size == 0:
            out.append(" ")
            continue
        v = float(finite.mean())
        level = 0 if hi <= lo else round((v - lo) / (hi - lo) * (len(bars) - 1))
        out.append(bars[min(max(level, 0), len(bars) - 1)])
    return "".join(out)


def finite_range(*arrays: Any) -> tuple[float, float]:
    finite = [a[np.isfinite(a)] for a in arrays]
    finite = [a for a in finite if a.size]
    if not finite:
        return (math.nan, math.nan)
    both = np.concatenate(finite)
    return float(both.min()), float(both.max())
