"""A Megatron-LM functional-test case as Megatron's CI reads it: ``model_config.yaml`` → which
metrics are checked, exact or approximate, and which test functions run.

Two readers decide in Megatron, and each is reproduced as it reads:

- ``run_ci_test.sh`` reads settings with ``yq`` and compares the printed text: the
  ``--allow-nondeterministic-algo`` flag is set iff ``ENV_VARS.NVTE_ALLOW_NONDETERMINISTIC_ALGO``
  prints ``1`` or ``ENV_VARS.NON_DETERMINSTIC_RESULTS // "0"`` prints ``1`` (so ``1`` and ``"1"``
  turn it on; ``true``, ``1.0`` and ``01`` do not). ``TEST_TYPE``, ``MODE // "pretraining"`` and
  ``TRAIN_ITERS`` (``MODEL_ARGS."--train-iters" // "100"``; ``--exit-interval`` for release tests)
  are read the same way. Here the text yq prints is the YAML scalar as written (``yaml.compose``).
- The pytest functions read ``METRICS`` with ``yaml.safe_load``: absent → ``[lm loss, num-zeros]``
  for pretraining; absent is an error for inference, where null or ``[]`` checks nothing.

Which tests run (``run_ci_test.sh``): MODE pretraining runs the regular pipeline (golden vs run 1)
and, for TEST_TYPE ckpt-resume and frozen-resume, the resume pipeline (run 1 vs run 2);
checkpoint-consistency compares no golden values. MODE inference with TEST_TYPE frozen-start runs
the inference pipeline; other inference test types run no check. MODE rl runs a GRPO test this
toolkit does not reproduce. ``ENV_VARS.SKIP_PYTEST: 1`` or lightweight mode skip every check.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.errors import FormatError
from ..core.megatron import DEFAULT_METRICS, INFERENCE, REGULAR, RESUME, RESUME_TEST_TYPES, MegatronCase
from ..files.bounded import short, yaml_document

MODEL_CONFIG = "model_config.yaml"


def find_model_config(folder: Path) -> Path | None:
    """The folder's model_config.yaml, if it is a Megatron case."""
    path = Path(folder) / MODEL_CONFIG
    return path if path.is_file() else None


def read_megatron_case(path: Path) -> MegatronCase:
    """Read a model_config.yaml as Megatron's CI does; a setting Megatron's test itself errors on
    (METRICS null or not a list) is a FormatError naming it — Megatron's job fails there too."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(f"cannot read: {exc}", path=path) from None
    doc, node = yaml_document(text, path)
    if not isinstance(doc, dict):
        raise FormatError("expected a mapping at the top level (Megatron's test indexes it)", path=path)
    return megatron_case(doc, node, str(path))


def megatron_case(doc: dict[str, Any], node: Any, config: str) -> MegatronCase:
    """The case from its parsed YAML (``doc``, as safe_load gives it) and its node tree (``node``,
    whose scalars are the text yq prints)."""
    name = Path(config).name
    test_type = yq_text(node, "TEST_TYPE")
    mode = yq_text(node, "MODE", default="pretraining")
    skip = yq_text(node, "ENV_VARS", "SKIP_PYTEST") == "1"
    lightweight = yq_text(node, "ENV_VARS", "ENABLE_LIGHTWEIGHT_MODE", default="false") == "true"
    unsupported = None
    if skip or lightweight:
        pipelines: tuple[str, ...] = ()
        why = "ENV_VARS.SKIP_PYTEST is 1" if skip else "ENV_VARS.ENABLE_LIGHTWEIGHT_MODE is true"
        what = f"{why}: Megatron's CI runs no check"
    elif mode == "pretraining" and test_type == "checkpoint-consistency":
        pipelines, what = (), "Megatron's CI compares optimizer gradients, no golden values"
    elif mode == "pretraining":
        pipelines = (REGULAR, RESUME) if test_type in RESUME_TEST_TYPES else (REGULAR,)
        what = ("regular pipeline (golden vs run 1), then the resume pipeline (run 1 vs run 2)"
                if RESUME in pipelines else "regular pipeline (golden vs run)")
    elif mode == "inference" and test_type == "frozen-start":
        pipelines, what = (INFERENCE,), "inference pipeline (golden vs run, request by request)"
    elif mode == "rl" and test_type == "frozen-start":
        pipelines, what = (), "Megatron's CI runs test_grpo_training_loop.py"
        unsupported = f"MODE rl, TEST_TYPE frozen-start in {config}: Megatron judges it with " \
                      f"test_grpo_training_loop.py, which the megatron preset does not reproduce"
    else:
        pipelines, what = (), "Megatron's CI runs no golden-value check for it"
    pipeline_origin = f"test type: TEST_TYPE {test_type}, MODE {mode}: {what}"

    metrics, metrics_origin = _metrics(doc, config, name, inference=INFERENCE in pipelines)
    nvte = yq_text(node, "ENV_VARS", "NVTE_ALLOW_NONDETERMINISTIC_ALGO")
    nondet = yq_text(node, "ENV_VARS", "NON_DETERMINSTIC_RESULTS", default="0")
    allow = nvte == "1" or nondet == "1"
    if INFERENCE in pipelines:
        regime_origin = "none (Megatron's inference test takes no --allow-nondeterministic-algo)"
    else:
        flag = ("approx: --allow-nondeterministic-algo, DeterministicTest skipped" if allow
                else "exact: DeterministicTest runs (and the approximate test)")
        regime_origin = (f"ENV_VARS.NVTE_ALLOW_NONDETERMINISTIC_ALGO={nvte}, NON_DETERMINSTIC_RESULTS={nondet} in "
                         f"{name} ({flag}; CI compares the text to \"1\")")
    iters_key = "--exit-interval" if test_type == "release" else "--train-iters"
    iters_text = yq_text(node, "MODEL_ARGS", iters_key, default="100")
    train_iters = int(iters_text) if iters_text.isascii() and iters_text.isdigit() and len(iters_text) <= 18 else None
    return MegatronCase(config=config, pipelines=pipelines, metrics=metrics, allow_nondeterministic=allow,
                        train_iters=train_iters, test_type=test_type, mode=mode, metrics_origin=metrics_origin,
                        regime_origin=regime_origin, pipeline_origin=pipeline_origin, unsupported=unsupported,
                        model_args=doc.get("MODEL_ARGS"))


def _metrics(doc: dict[str, Any], config: str, name: str, *, inference: bool) -> tuple[tuple[Any, ...], str]:
    if "METRICS" not in doc:
        if inference:
            raise FormatError("no METRICS: Megatron's inference test reads it (KeyError, the test fails)",
                              path=config)
        return DEFAULT_METRICS, f"metrics: Megatron's default {list(DEFAULT_METRICS)} ({name} has no METRICS)"
    raw = doc["METRICS"]
    if raw is None or raw == []:
        if not inference and raw is None:
            raise FormatError("METRICS is null: Megatron's pretraining test iterates it (TypeError, the "
                              "test fails)", path=config)
        return (), f"metrics: none (METRICS is {'null' if raw is None else '[]'} in {name}: nothing is checked)"
    if not isinstance(raw, list):
        raise FormatError(f"METRICS must be a list of metric names, got {type(raw).__name__}", path=config)
    odd = [m for m in raw if not isinstance(m, str)][:1]
    if odd and not inference:
        raise FormatError(f"METRICS holds {short(odd[0])}, not a metric name: Megatron's test has no threshold for it "
                          f"(KeyError, the test fails)", path=config)
    names = tuple(dict.fromkeys(m for m in raw if isinstance(m, str)))  # inference: other entries match nothing
    return names, f"metrics: METRICS {short(raw)} in {name}"


def yq_text(node: Any, *keys: str, default: str | None = None) -> str:
    """What ``yq '.K1.K2 // "default"'`` prints: the scalar as written; ``null`` when absent (or the
    default when one is given and the value is absent, null or false)."""
    current = node
    for key in keys:
        current = _child(current, key)
        if current is None:
            return default if default is not None else "null"
    if current.id != "scalar":
        return f"<{current.id}>"
    is_null = current.tag == "tag:yaml.org,2002:null"
    is_false = current.tag == "tag:yaml.org,2002:bool" and current.value.lower() in ("false", "no", "off", "n")
    if default is not None and (is_null or is_false):
        return default
    if is_null:
        return "null"
    return current.value


def _child(node: Any, key: str) -> Any:
    if node is None or getattr(node, "id", None) != "mapping":
        return None
    found = None
    for key_node, value_node in node.value:
        if getattr(key_node, "value", None) == key:
            found = value_node  # a repeated key: the last one wins, as in safe_load
    return found
