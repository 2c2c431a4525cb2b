"""``golden stats``: tolerances from repeated runs of one case — each metric's spread, the policy
recommended for it, and that policy as the YAML a person reviews.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.policy import preset
from ..core.stats import MetricSpread, Recommendation, recommend_all, render_policy_yaml, spread
from ..files.formats.artifact import read_artifact


@dataclass(frozen=True)
class Calibration:
    """What ``golden stats`` measured over repeated runs of one case: each metric's spread, the policy
    recommended for it (with its formula), and that policy as the YAML a person reviews."""

    case: str
    run_ids: tuple[str, ...]  # each with its seed, where the run recorded one
    spreads: tuple[MetricSpread, ...]
    recommendations: tuple[Recommendation, ...]
    policy_yaml: str

    def table_csv(self) -> str:
        """Every spread's per-step statistics and raw samples as one CSV (one header: the spreads share
        their columns)."""
        return "".join(sp.frame().to_csv(index=False, header=index == 0) for index, sp in enumerate(self.spreads))


def calibrate(runs: Sequence[Path], *, preset_name: str = "default", band: bool = False) -> Calibration:
    """Repeated runs (artifacts or run folders) → per-step spreads and a recommended policy per metric; the
    preset's metric kinds decide each metric's statistic; ``band``: per-step bands for per-step metrics."""
    artifacts = [read_artifact(p) for p in runs]
    policies = preset(preset_name)
    spreads = spread(artifacts)
    recommendations = recommend_all(spreads, policies)
    run_ids = tuple(a.run_id + (f" (seed {a.provenance['seed']})" if "seed" in a.provenance else "")
                    for a in artifacts)
    text = render_policy_yaml(recommendations, case=artifacts[0].case, run_ids=run_ids, preset=preset_name,
                              with_band=band, base_policies=policies)
    return Calibration(artifacts[0].case, run_ids, spreads, recommendations, text)
