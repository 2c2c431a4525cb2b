"""Benchmark judging in bulk: every golden file of a real-sized Megatron tree in one process, against
Megatron's own pipeline looped in one process over the same pairs (the baseline, measured in the
same run), with identical verdicts.

The tree is synthetic, shaped like Megatron-LM's ``tests/functional_tests/test_cases`` (the real one
under ../shared is a sample of 60 files): 300 cases under bert/, gpt/, moe/, hybrid/, t5/ — regular
ones, ckpt-resume ones (with their ``_2nd`` files), memory_speed ones listing five METRICS, a few
inference ones; three env/platform goldens each, 100 steps and 5 metrics per training golden, about
20 % of the cases approximate (NVTE_ALLOW_NONDETERMINISTIC_ALGO: 1). The candidates tree mirrors it:
most candidates equal to their golden, others 1 % off, one step spiked, memory 6 % up — run 2 of every
resume candidate beside it, as CI writes it.

Two baselines from Megatron (its python_test_utils from ../shared, imported in-process), the flag
and TRAIN_ITERS given as run_ci_test.sh derives them: its test functions as CI calls them per
candidate (the regular one reads both files and the model_config and calls ``common.pipeline``; the
resume one for resume cases; the inference one) — and, stricter, ``common.pipeline`` alone looped,
the checks of each case built once beforehand. Ours: ``goldens.workflow.bulk.judge_bulk`` on the
candidates folder — finding, pairing, reading, judging, all of it. Target: ours at least as fast as
the stricter baseline, every verdict identical.

    python bench/bench_bulk.py [--cases 300] [--repeat 3]
"""
from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from goldens.megatron.case import read_megatron_case  # noqa: E402
from goldens.workflow.bulk import judge_bulk  # noqa: E402
from tests.builders import inference_doc, training_doc, write_megatron_case  # noqa: E402
from tests.oracle import megatron_oracle, megatron_verdict  # noqa: E402

UTILS = REPO.parent / "shared" / "fixtures" / "megatron" / "python_test_utils"
MODELS = ("bert", "gpt", "moe", "hybrid", "t5")
TARGETS = ("dev_dgx_h100", "dev_dgx_a100", "lts_dgx_a100")
FIVE = ("lm loss", "num-zeros", "iteration-time", "mem-allocated-bytes", "mem-max-allocated-bytes")


ARGS = (  # the MODEL_ARGS of a real BERT case (bert_mcore_tp2_pp2), the usual length of a model_config.yaml
    ("num-layers", 24), ("hidden-size", 1024), ("num-attention-heads", 16), ("log-params-norm", "true"),
    ("log-num-zeros-in-grad", "true"), ("log-validation-ppl-to-tensorboard", "true"),
    ("log-timers-to-tensorboard", "true"), ("log-memory-to-tensorboard", "true"),
    ("tensorboard-dir", "${TENSORBOARD_PATH}"), ("micro-batch-size", 4), ("global-batch-size", 128),
    ("seq-length", 512), ("max-position-embeddings", 512), ("train-iters", 100), ("timing-log-level", 0),
    ("lr-decay-iters", 990000), ("save", "${CHECKPOINT_SAVE_PATH}"), ("load", "${CHECKPOINT_LOAD_PATH}"),
    ("data-path", "${DATA_PATH}/text/common_pile/v01_filtered_data/my-bert_00_text_sentence"),
    ("vocab-file", "${DATA_PATH}/text/common_pile/v01_filtered_data/vocab.txt"), ("split", "949,50,1"),
    ("distributed-backend", "nccl"), ("lr", 0.0001), ("min-lr", 0.00001), ("lr-warmup-fraction", 0.01),
    ("log-interval", 1), ("save-interval", 10000), ("eval-interval", 1000), ("eval-iters", 10),
    ("tensor-model-parallel-size", 2), ("pipeline-model-parallel-size", 2), ("deterministic-mode", "true"),
    ("no-gradient-accumulation-fusion", "true"), ("data-cache-path", "${DATA_CACHE_PATH}"), ("bf16", "true"),
    ("ckpt-format", "torch"), ("attention-backend", "unfused"))


def config(kind: str, approx: bool) -> str:
    """A model_config.yaml shaped like a real one (45 lines for a regular case)."""
    env = ("ENV_VARS:\n  CUDA_DEVICE_MAX_CONNECTIONS: 1\n"
           f"  NVTE_ALLOW_NONDETERMINISTIC_ALGO: {1 if approx else 0}\n  NCCL_ALGO: Ring\n"
           "  CUBLAS_WORKSPACE_CONFIG: :4096:8\n")
    args = "MODEL_ARGS:\n" + "".join(f"  --{k}: {v}\n" for k, v in ARGS)
    tail = "LAUNCHER: ft_launcher\n"
    if kind == "inference":
        return env + args + "TEST_TYPE: frozen-start\nMODE: inference\nMETRICS: [generated_tokens, logprobs]\n" + tail
    if kind == "memory":
        return env + args + "TEST_TYPE: regular\nMETRICS:\n" + "".join(f"  - {m}\n" for m in FIVE) + tail
    return env + args + f"TEST_TYPE: {'ckpt-resume' if kind == 'resume' else 'regular'}\n" + tail


def second_run(doc: dict) -> dict:
    """Run 2 as the current extractor writes it: steps 51..100."""
    return {name: {"start_step": 51, "end_step": 100, "step_interval": 1,
                   "values": {k: v for k, v in m["values"].items() if int(k) > 50}} for name, m in doc.items()}


def perturbed(doc: dict, rng: np.random.Generator) -> dict:
    """Most candidates equal their golden; others 1 % off, one step spiked, or memory 6 % up."""
    out = copy.deepcopy(doc)
    roll = rng.random()
    if roll < 0.6:
        return out
    metric, factor, steps = (("lm loss", 1.01, None) if roll < 0.8 else ("lm loss", 1.5, {"37"}) if roll < 0.9
                             else ("mem-allocated-bytes", 1.06, None))
    if metric in out:
        out[metric]["values"] = {k: v * factor if steps is None or k in steps else v
                                 for k, v in out[metric]["values"].items()}
    return out


def build_tree(root: Path, cases: int, seed: int = 0) -> tuple[Path, Path, int]:
    """(store, candidates, golden files in the store)."""
    store, candidates = root / "test_cases", root / "candidates"
    return store, candidates, write_synthetic_cases(store, candidates, cases, seed)


def write_synthetic_cases(store: Path, candidates: Path, cases: int, seed: int = 0, *, long_every: int = 0,
                          long_steps: int = 4000, requests: int | None = None) -> int:
    """Synthetic Megatron cases (regular, resume with ``_2nd``, memory, inference) and a perturbed
    candidate of each; ``long_every``: every so many regular case is a release-size series of
    ``long_steps`` steps; ``requests``: requests per inference golden (the builder's default if None).
    Returns the number of golden files written."""
    rng = np.random.default_rng(seed)
    files = 0
    for i in range(cases):
        kind = ("inference" if i % 30 == 29 else "memory" if i % 7 == 3 else "resume" if i % 6 == 1 else "regular")
        long = bool(long_every) and kind == "regular" and i % long_every == 0
        model = MODELS[i % len(MODELS)]
        name = f"{model}_case_{i:03d}_{'release' if long else kind}"
        approx = rng.random() < 0.2
        goldens, runs = {}, {}
        for j, target in enumerate(TARGETS[:1] if kind == "inference" else TARGETS):
            steps = range(1, long_steps + 1) if long else range(1, 101)
            doc = (inference_doc(seed=i, **({} if requests is None else {"requests": requests}))
                   if kind == "inference" else training_doc(steps, FIVE, seed=i * 3 + j))
            goldens[f"golden_values_{target}.json"] = doc
            runs[f"golden_values_{target}.json"] = doc if kind == "inference" else perturbed(doc, rng)
            if kind == "resume":
                runs[f"golden_values_{target}_2nd.json"] = second_run(runs[f"golden_values_{target}.json"])
                if j == 0:
                    goldens[f"golden_values_{target}_2nd.json"] = second_run(doc)
        write_megatron_case(store / model, name, config(kind, approx), goldens)
        folder = candidates / model / name
        folder.mkdir(parents=True)
        for filename, doc in runs.items():
            (folder / filename).write_text(json.dumps(doc, indent=4))
        files += len(goldens)
    return files


def candidate_pairs(store: Path, candidates: Path) -> Iterator[tuple[str, str, Path, Path, Path, Path | None]]:
    """Each phase-1 candidate with what judging it needs: (case path, env_platform, its case's
    model_config.yaml, the store's golden, the candidate, the candidate's ``_2nd`` file or None)."""
    for path in sorted(candidates.rglob("golden_values_*.json")):
        if path.name.endswith("_2nd.json"):
            continue
        relative = path.parent.relative_to(candidates)
        second = path.with_name(path.stem + "_2nd.json")
        yield (relative.as_posix(), path.stem.removeprefix("golden_values_"), store / relative / "model_config.yaml",
               store / relative / path.name, path, second if second.is_file() else None)


def megatron_loop(m, store: Path, candidates: Path) -> tuple[float, dict]:
    """Megatron's test functions, one candidate after another, in this process."""
    todo = list(candidate_pairs(store, candidates))
    start = time.perf_counter()
    verdicts = {(case, target): megatron_verdict(m, config, golden, path, second)
                for case, target, config, golden, path, second in todo}
    return time.perf_counter() - start, verdicts


def pipeline_loop(m, store: Path, candidates: Path) -> tuple[float, dict]:
    """The stricter baseline: ``common.pipeline`` alone, looped — each pair read with Megatron's
    reader, the checks of each case built once beforehand (no YAML per call, unlike its test
    functions); for a resume case run 1 against run 2 after train_iters // 2 as its resume test
    filters them, for an inference case its inference test (there is no pipeline for those)."""
    thresholds = m.regular.CHECK_THRESHOLDS
    todo = []
    for name, target, config, golden, path, second in candidate_pairs(store, candidates):
        case = read_megatron_case(config)
        checks = {metric: thresholds[metric] for metric in case.metrics}
        todo.append((name, target, case, config, checks, golden, path, second))
    read = m.common.read_golden_values_from_json

    def verdict(case, config, checks, golden, path, second) -> bool:
        try:
            if "inference" in case.pipelines:
                m.inference.test_inference_pipeline(str(golden), str(path), str(config))
                return True
            m.common.pipeline(case.allow_nondeterministic, read(golden), read(path), checks)
            if second is not None:
                half = case.train_iters // 2
                first, later = read(path), read(second)
                for values in (first, later):
                    for metric in checks:
                        values[metric].values = {k: v for k, v in values[metric].values.items() if k > half}
                m.common.pipeline(case.allow_nondeterministic, first, later, checks)
            return True
        except Exception:
            return False

    start = time.perf_counter()
    verdicts = {(name, target): verdict(*rest) for name, target, *rest in todo}
    return time.perf_counter() - start, verdicts


def ours(store: Path, candidates: Path) -> tuple[float, dict]:
    start = time.perf_counter()
    bulk = judge_bulk([candidates], store_root=store, policy="megatron", stage=False)
    elapsed = time.perf_counter() - start
    if bulk.findings:
        raise SystemExit(f"unexpected findings: {[f.message for f in bulk.findings[:3]]}")
    return elapsed, {(j.case, f"{j.env}_{j.platform}"): j.passed for j in bulk.judgements}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not UTILS.is_dir():
        raise SystemExit(f"{UTILS} is absent: the baseline is Megatron's own code (../shared)")
    root = Path(tempfile.mkdtemp(prefix="bench_bulk_"))
    try:
        store, candidates, files = build_tree(root, args.cases)
        read_megatron_case(next(store.rglob("model_config.yaml")))  # yaml's C loader, imported outside the timing
        with megatron_oracle(UTILS) as m:
            megatron_verdict_count = 0
            theirs_best = bare_best = ours_best = float("inf")
            for _ in range(args.repeat):
                t_theirs, theirs = megatron_loop(m, store, candidates)
                t_bare, bare = pipeline_loop(m, store, candidates)
                t_ours, mine = ours(store, candidates)
                theirs_best = min(theirs_best, t_theirs)
                bare_best = min(bare_best, t_bare)
                ours_best = min(ours_best, t_ours)
                megatron_verdict_count = len(theirs)
        same = theirs == mine == bare
        failing = sum(not v for v in theirs.values())
        print(f"tree: {args.cases} cases, {files} golden files in the store; {megatron_verdict_count} candidates "
              f"({failing} failing by Megatron's verdict)")
        print(f"Megatron's pipeline looped in one process: {theirs_best:.2f} s "
              f"({1000 * theirs_best / megatron_verdict_count:.1f} ms per candidate)")
        print(f"Megatron's common.pipeline alone looped (checks built once per case): {bare_best:.2f} s "
              f"({1000 * bare_best / megatron_verdict_count:.1f} ms per candidate)")
        print(f"golden judge (judge_bulk) in one process: {ours_best:.2f} s "
              f"({1000 * ours_best / megatron_verdict_count:.1f} ms per candidate)")
        print(f"ratio Megatron's test functions / ours: {theirs_best / ours_best:.2f}×; common.pipeline alone / "
              f"ours: {bare_best / ours_best:.2f}× (target >= 1: {'OK' if ours_best <= bare_best else 'SLOWER'})")
        print(f"verdicts identical: {same} ({sum(theirs.get(k) == v == bare.get(k) for k, v in mine.items())} of "
              f"{len(theirs)} equal, Megatron's test functions, its pipeline alone and ours)")
        if not same:
            raise SystemExit(1)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
