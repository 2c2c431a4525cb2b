"""Structural drift between two sides: which metrics appeared or vanished, whose step grid
changed, and which recorded model arguments differ — computed with deepdiff, so the paths
are deepdiff's and nested arguments come out as ``a.b`` paths.

Informational: it explains a verdict (a changed ``--hidden-size`` explains a failing loss) but
does not decide it; a vanished metric already fails as ``missing``. deepdiff (which pulls in
pandas) is imported only when the recorded arguments differ: equal ones need no diff.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..model import MetricSeries, valued_span
from ..result import ArgChange, GridChange, StructuralDrift
from .sides import Side

_CHANGE_NAMES = {
    "values_changed": "changed", "type_changes": "type_changed",
    "dictionary_item_added": "added", "dictionary_item_removed": "removed",
    "iterable_item_added": "added", "iterable_item_removed": "removed",
    "attribute_added": "added", "attribute_removed": "removed",
    "set_item_added": "added", "set_item_removed": "removed",
}


def grid_of(series: MetricSeries) -> dict[str, Any]:
    """The shape of a metric's step grid: from its first to its last step that holds a value.

    Leading and trailing NaN steps are padding, not grid: Megatron's ``_2nd`` file spans the
    whole run (start 1 … end) with "nan" for the steps the resumed phase did not run, while a
    run's phase 2 lists only the steps it ran. Both describe the same grid. A NaN inside the
    span stays counted: it is a value (the comparison reports it), not a change of grid.
    The interval is the header's (Megatron's 1, 5, 10, … has gcd 1), else the steps' gcd.
    """
    steps = series.steps[valued_span(series.values)]
    interval = series.step_interval
    if interval is None and steps.size > 1:
        if int(steps[-1] - steps[0]) == steps.size - 1:
            interval = 1  # strictly increasing and as many steps as the span: every step
        else:
            gaps = np.diff(steps)
            interval = int(gaps[0]) if (gaps == gaps[0]).all() else int(np.gcd.reduce(gaps))  # one gap: its gcd
    return {"start_step": int(steps[0]) if steps.size else None,
            "end_step": int(steps[-1]) if steps.size else None,
            "step_interval": interval, "count": int(steps.size)}


def _plain(value: Any) -> Any:
    from deepdiff.helper import NotPresent

    return None if isinstance(value, NotPresent) else value


def _json_safe(value: Any) -> Any:
    """Keep argument values JSON-representable for the result file."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return repr(value)


def arg_changes(reference: Mapping[str, Any], candidate: Mapping[str, Any]) -> tuple[ArgChange, ...]:
    """Model/config arguments that differ, as readable paths (``--hidden-size``, ``opt.lr``)."""
    if repr(reference) == repr(candidate):  # the same arguments, written the same way: nothing to diff
        return ()
    from deepdiff import DeepDiff

    diff = DeepDiff(dict(reference), dict(candidate), view="tree", ignore_numeric_type_changes=True)
    changes = []
    for change_type, levels in diff.items():
        kind = _CHANGE_NAMES.get(change_type, change_type)
        for level in levels:
            path = ".".join(str(p) for p in level.path(output_format="list"))
            changes.append(ArgChange(path, kind, _json_safe(_plain(level.t1)), _json_safe(_plain(level.t2))))
    return tuple(sorted(changes, key=lambda c: c.name))


def structural_drift(reference: Side, candidate: Side) -> StructuralDrift:
    """Metrics added/removed and grid changes per phase, and model-argument changes."""
    def shape(side: Side) -> dict[str, dict[str, dict[str, Any]]]:
        doc = {f"phase {n}": {name: grid_of(s) for name, s in metrics.items()} for n, metrics in side.phases.items()}
        if side.scalars:
            doc.setdefault("phase 1", {}).update({name: {"scalar": True} for name in side.scalars})
        return doc

    ref_shape, cand_shape = shape(reference), shape(candidate)
    common = sorted(ref_shape.keys() & cand_shape.keys())
    added, removed, grids = [], [], {}
    for p in common:
        # Set differences, not DeepDiff: a phase with no metrics on one side is one whole-dict change there.
        phase = int(p.split()[1])
        suffix = "" if phase == 1 else f" (phase {phase})"
        ref_metrics, cand_metrics = ref_shape[p], cand_shape[p]
        added += [f"{name}{suffix}" for name in sorted(cand_metrics.keys() - ref_metrics.keys())]
        removed += [f"{name}{suffix}" for name in sorted(ref_metrics.keys() - cand_metrics.keys())]
        for name in ref_metrics.keys() & cand_metrics.keys():
            if ref_metrics[name] != cand_metrics[name]:
                grids[(phase, name)] = GridChange(name, phase, ref_metrics[name], cand_metrics[name])
    notes = []
    for p in sorted(ref_shape.keys() - cand_shape.keys()):
        notes.append(f"the candidate has no {p}")
    for p in sorted(cand_shape.keys() - ref_shape.keys()):
        notes.append(f"the reference has no {p}")
    args_compared = reference.model_args is not None and candidate.model_args is not None
    changes: tuple[ArgChange, ...] = ()
    if reference.model_args is not None and candidate.model_args is not None:
        changes = arg_changes(reference.model_args, candidate.model_args)
    else:
        missing = [label for label, side in (("reference", reference), ("candidate", candidate))
                   if side.model_args is None]
        notes.append(f"model arguments not compared: not recorded for the {' and the '.join(missing)}")
    return StructuralDrift(metrics_added=tuple(added), metrics_removed=tuple(removed),
                           grid_changes=tuple(grids[k] for k in sorted(grids)), arg_changes=changes,
                           args_compared=args_compared, notes=tuple(notes))
