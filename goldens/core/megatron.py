"""Megatron-LM's golden-value conventions as data: one row per generation, each with the PR that set it.

A generation is what Megatron's CI does with golden values from a given change on: which metrics have
thresholds and what they are, how many failing steps are allowed and how that is checked, how values
are rounded before they are compared, how its extraction writes them (rounded or at full precision,
with or without the ``value_precision`` marker), what its linter (``tools/check_golden_values.py``)
rejects, and how a case's CI mode (exact or approximate) is decided. The megatron policy preset and
the Megatron write dialect read their row; ``goldens.megatron.detect`` picks the row from a tree.

When Megatron changes its conventions again, add one row here (newest last) and its test in
tests/test_megatron_generations.py; docs/megatron.md says how.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import GoldenError

# Megatron's CHECK_THRESHOLDS (tests/functional_tests/python_test_utils/test_pretraining_regular_pipeline.py),
# unchanged by every PR in the table: metric → (has a DeterministicTest, the ApproximateTest's rtol). atol is 0.
CHECK_THRESHOLDS: Mapping[str, tuple[bool, float]] = {
    "iteration-time": (False, 0.05),
    "mem-allocated-bytes": (False, 0.05),
    "mem-max-allocated-bytes": (False, 0.05),
    "lm loss": (True, 0.05),
    "mtp_1 loss": (True, 0.05),
    "mtp_2 loss": (True, 0.05),
    "num-zeros": (True, 0.20),
    "generated_tokens": (True, 0.05),
    "logprobs": (True, 0.05),
    "total loss": (True, 0.05),
}

# common.py pipeline(): A = min(max(T // 100, 1), 50) failing steps, checked as
# np.mean(is_close) >= 1 - A / T (float64), all steps when T == 1 (PR #4238 made the count honest in
# intent; the float check is what the code does).
ALLOWANCE: Mapping[str, Any] = {"fraction": 0.01, "at_least": 1, "at_most": 50, "rule": "megatron"}

# run_ci_test.sh: --allow-nondeterministic-algo (approximate only) iff ENV_VARS.NVTE_ALLOW_NONDETERMINISTIC_ALGO
# or NON_DETERMINSTIC_RESULTS prints "1"; otherwise the DeterministicTest runs too (goldens.megatron.case).
CI_MODES = ("exact: DeterministicTest and ApproximateTest (the default)",
            "approx: ApproximateTest only (ENV_VARS NVTE_ALLOW_NONDETERMINISTIC_ALGO or NON_DETERMINSTIC_RESULTS is 1)")

PRECISION_MARKER = ("value_precision", "full")

# The files of a Megatron checkout that decide how goldens are judged, written and linted, by their
# path relative to the checkout.
COMPARATOR_FILES = (
    "tests/functional_tests/python_test_utils/common.py",
    "tests/functional_tests/python_test_utils/test_pretraining_regular_pipeline.py",
    "tests/functional_tests/python_test_utils/test_pretraining_resume_checkpoint_pipeline.py",
    "tests/functional_tests/python_test_utils/get_test_results_from_tensorboard_logs.py",
    "tests/functional_tests/shell_test_utils/run_ci_test.sh",
    "tools/check_golden_values.py",
)


@dataclass(frozen=True)
class Generation:
    """One generation of Megatron's golden-value conventions (a row of ``GENERATIONS``)."""

    name: str
    pr: int | None                 # the pull request that started it (None: the baseline commit)
    since: str                     # merge date (ISO) of that PR, or the baseline commit's date
    commit: str | None             # the commit the row was read from, where the code was at hand
    what_changed: str
    thresholds: Mapping[str, tuple[bool, float]] = field(default_factory=lambda: CHECK_THRESHOLDS)
    allowance: Mapping[str, Any] = field(default_factory=lambda: ALLOWANCE)
    # Rounding before comparing (Python round, both sides): approximate checks; and deterministic
    # checks of a golden block without the full-precision marker. None: values compared as read.
    approx_decimals: int | None = None
    legacy_exact_decimals: int | None = None
    # How its extraction writes a golden: values rounded to this many decimals (None: full precision),
    # and the marker it puts on every metric block (None: none).
    written_decimals: int | None = 5
    marker: tuple[str, str] | None = None
    # What tools/check_golden_values.py rejects in a changed golden file.
    lint_finite: bool = True                 # any NaN or infinity, anywhere in the file
    lint_requires_marker: bool = False       # a changed block of a deterministic case without the marker
    ci_modes: tuple[str, ...] = CI_MODES
    # How the tree's own comparator files are recognised: their sha256 (path → digest, every file
    # listed must match), or strings they hold (all of them, in any comparator file).
    digests: Mapping[str, str] = field(default_factory=dict)
    markers: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.name} ({f'PR #{self.pr}' if self.pr else 'baseline'}, {self.since})"

    def rounding(self) -> dict[str, Any]:
        """The policy keys this generation adds to every metric of the megatron preset."""
        return {"round_decimals": self.approx_decimals} if self.approx_decimals is not None else {}


GENERATIONS: tuple[Generation, ...] = (
    Generation(
        name="legacy", pr=None, since="2026-08-22", commit="d98e8a64",
        what_changed="the baseline this toolkit first followed: extraction rounds every value to 5 decimals "
                     "(round(x, 5)); the comparator compares the values as read; the linter rejects NaN and "
                     "infinity (PR #4238's num-zeros rtol 0.20 and allowance are in it)",
        digests={
            "tests/functional_tests/python_test_utils/common.py":
                "b57270c51ae44172f85a09600c347c8b3e118a7d909f1107ff33fe95690cbf56",
            "tests/functional_tests/python_test_utils/test_pretraining_regular_pipeline.py":
                "8a7e8635821507a0437a98b932106de466add3423df5833365f92bb6af8f0e36",
            "tests/functional_tests/python_test_utils/test_pretraining_resume_checkpoint_pipeline.py":
                "7445bd7675113237d8415f1be3974828bb2a0cfdb99dce32c4780a540f2046ea",
            "tests/functional_tests/python_test_utils/get_test_results_from_tensorboard_logs.py":
                "34cac6f7c9374b2b2c6ca5e131439a444b9daa8645e78d2194b480434df81c98",
            "tests/functional_tests/shell_test_utils/run_ci_test.sh":
                "cd5b0ffb647518fc54ae7dd6645c62e6a7657f8ae87126637d68a2af4ce77a89",
            "tools/check_golden_values.py":
                "56d60ac5ea959d7fe7d98d4b91fdd67662bc88219e8686b705eb6dc305a0fbce",
        }),
    Generation(
        name="pr7087", pr=7087, since="2026-09-04", commit=None,
        what_changed="extraction keeps full precision and marks every new block \"value_precision\": \"full\"; "
                     "approximate checks round both sides to 5 decimals; deterministic checks compare raw "
                     "values for a block marked full and 5-decimal values for an unmarked (legacy) one; "
                     "existing goldens were not rewritten",
        approx_decimals=5, legacy_exact_decimals=5, written_decimals=None, marker=PRECISION_MARKER,
        markers=("value_precision",)),
    Generation(
        name="pr7217", pr=7217, since="2026-09-10", commit=None,
        what_changed="tools/check_golden_values.py also rejects a changed metric block of a deterministic "
                     "case without \"value_precision\": \"full\" (finite-value checks kept; the pipeline's "
                     "opt-outs honoured; --allow-legacy-precision overrides locally)",
        approx_decimals=5, legacy_exact_decimals=5, written_decimals=None, marker=PRECISION_MARKER,
        lint_requires_marker=True, markers=("value_precision", "allow-legacy-precision")),
)

GENERATION_ENV = "GOLDEN_MEGATRON_GENERATION"
NEWEST = GENERATIONS[-1]
LEGACY = GENERATIONS[0]
FOLLOWED_UP_TO = "PR #7217 (2026-09-10); PR #7321 (open) for failure diagnostics"


def generation(name: str) -> Generation:
    """A row by its name (``legacy``, ``pr7087``, …); also accepts ``7087`` and ``#7087``."""
    wanted = name.strip().lower().lstrip("#")
    for row in GENERATIONS:
        if wanted in (row.name, str(row.pr), f"pr{row.pr}", f"pr#{row.pr}"):
            return row
    raise GoldenError(f"unknown Megatron generation {name!r} (known: {', '.join(g.name for g in GENERATIONS)})")


@dataclass(frozen=True)
class Detection:
    """The generation a tree follows, the line that says why, and a warning to show once (or None)."""

    generation: Generation
    why: str
    warning: str | None = None

    @property
    def line(self) -> str:
        return f"Megatron generation {self.generation.label}: {self.why}"


# ---------------------------------------------------------------- one case, as Megatron's CI reads it

DEFAULT_METRICS = ("lm loss", "num-zeros")  # test_pretraining_regular_pipeline.py, when METRICS is absent
RESUME_TEST_TYPES = ("ckpt-resume", "frozen-resume")

REGULAR, RESUME, INFERENCE = "regular", "resume", "inference"


@dataclass(frozen=True)
class MegatronCase:
    """What Megatron's CI does with one case, each choice with the line that says where it came from."""

    config: str                        # the model_config.yaml
    pipelines: tuple[str, ...]         # REGULAR, RESUME, INFERENCE in the order CI runs them; () = none
    metrics: tuple[Any, ...]           # what METRICS selects, in its order (as YAML gave it)
    allow_nondeterministic: bool       # --allow-nondeterministic-algo
    train_iters: int | None            # --train-iters of the resume test (None: not a number)
    test_type: str
    mode: str
    metrics_origin: str
    regime_origin: str
    pipeline_origin: str
    unsupported: str | None = None     # a test this toolkit does not reproduce (MODE rl)
    model_args: Any = None             # MODEL_ARGS, as recorded (the structural-drift section reads it)

    @property
    def choices(self) -> tuple[str, ...]:
        """The lines a result carries: which file decided, and the test type, metrics and regime it gave."""
        return (f"rules from {self.config} (as Megatron's CI reads it)", self.pipeline_origin, self.metrics_origin,
                f"regime: {self.regime_origin}")
