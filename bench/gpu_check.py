"""The prepared GPU check of the seed case: does the CUDA path start and resume on a plain GPU host?

NOT RUN YET: it was written and checked for syntax on a CPU-only machine; no GPU host was at hand.
Run it on one and keep its output (and --out) with the issue.

What it does, in order (each step prints one line; the summary goes to --out as JSON):

1. the host: torch and its CUDA build, the GPUs, and which of Apex's extensions and triton import;
2. the kernel decisions (runner/kernels.py) for the `cuda-smoke` and `full` profiles: what the
   case asks for, what runs, and why — the same table the artifact's fingerprint fields carry;
3. `golden run CASE --profile cuda-smoke` (one GPU, nccl, bf16, TP1 x PP1, both phases);
4. the seed's `full` profile (TP2 x PP2, bf16, 100 steps, save at 50, resume): `golden run --profile
   full` with 8 GPUs (data parallel 2, as Megatron's CI); with 4 to 7 GPUs the same layout on 4
   (data parallel 1, through the library: the CLI has no world-size option); fewer: skipped, said so;
5. the three family cases (GPT, MoE, T5 in cases/) at TP1 x PP1 on one GPU: train, resume
   bit-exactly, and name the Adam megatron-core chose (kernels.optimizer in the fingerprint);
6. the real-data guard: `golden check` of a Megatron GPT case folder on CUDA exits 2 with its reason;
7. per run: status complete, phase 2 bit-identical to phase 1 on the resumed steps (lm loss,
   sop loss, num-zeros), iteration-time starting at steps 2 and save_interval + 2, the memory
   metrics present (mem-allocated-bytes, mem-max-allocated-bytes), the checkpoint in the case's
   format (torch: iter_0000050/mp_rank_XX_YYY/model_optim_rng.pt), and the kernel decisions as run.

    python bench/gpu_check.py [--out gpu-check.json] [--skip-full]

Exit 0 when every run that was possible passed, 1 otherwise.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CASE = "bert_mcore_tp2_pp2_resume_torch_dist_local_spec"
DETERMINISTIC = ("lm loss", "sop loss", "num-zeros")


def say(line: str) -> None:
    print(line, flush=True)


def host() -> dict:
    import torch

    found = {name: importlib.util.find_spec(name) is not None
             for name in ("apex", "scaled_masked_softmax_cuda", "fused_weight_gradient_mlp_cuda", "triton",
                          "transformer_engine")}
    devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "devices": devices, "modules": found}


def decisions(definition, profile: str) -> dict:
    from runner import kernels

    cfg = definition.run_config(profile)
    return kernels.record(kernels.decide(cfg))


def judge(run_dir: Path, cfg) -> dict:
    """What the run must show; returns {check: passed} plus notes."""
    from goldens.files.formats.artifact import read_artifact

    artifact = read_artifact(run_dir)
    checks = {"complete": artifact.status == "complete"}
    if artifact.status != "complete":
        return {"checks": checks, "error": artifact.error}
    one, two = artifact.phases[1], artifact.phases[2]
    save = cfg.schedule.save_interval
    checks["resume bit-identical"] = all(
        two.metrics[n].values.tobytes() == one.metrics[n].values[save:].tobytes() for n in DETERMINISTIC)
    checks["iteration-time from steps 2 and save+2"] = (
        int(one.metrics["iteration-time"].steps[0]) == 2 and int(two.metrics["iteration-time"].steps[0]) == save + 2)
    checks["memory metrics"] = all(n in one.metrics and float(one.metrics[n].values.min()) > 0
                                   for n in ("mem-allocated-bytes", "mem-max-allocated-bytes"))
    if cfg.checkpoint.format == "torch":
        files = sorted(p.relative_to(run_dir / "checkpoints").as_posix()
                       for p in (run_dir / "checkpoints").rglob("model_optim_rng.pt"))
        tp, pp = cfg.parallelism.tensor_model_parallel_size, cfg.parallelism.pipeline_model_parallel_size
        expected = sorted(f"iter_{save:07d}/mp_rank_{t:02d}" + (f"_{p:03d}" if pp > 1 else "") + "/model_optim_rng.pt"
                          for t in range(tp) for p in range(pp))
        checks["legacy checkpoint layout"] = files == expected
    prov = artifact.provenance
    return {"checks": checks, "kernels": prov.get("fingerprint_fields", {}).get("kernels"),
            "determinism": prov.get("fingerprint_fields", {}).get("determinism"),
            "timings": prov.get("timings"), "device": prov.get("device")}


def cli_run(profile: str, work: Path) -> tuple[Path, int, float]:
    run_dir = work / profile
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "goldens", "run", CASE, "--store", str(REPO / "cases"),
                           "--profile", profile, "--out", str(run_dir)], cwd=work, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    (work / f"{profile}.log").write_text(proc.stdout)
    if proc.returncode:
        say(proc.stdout[-3000:])
    return run_dir, proc.returncode, time.monotonic() - started


FAMILY_CASES = ("gpt3_mcore_tp1_pp2_resume_torch_dist", "gpt3_mcore_tp2_pp2_resume_torch_dist_te_2experts",
                "t5_mcore_tp1_pp1_vp1_resume_torch")


def family_on_cuda(case: str, work: Path) -> dict:
    """A family case's cpu-tiny shrink on one GPU (nccl, fp32, fusions as decided): it trains and
    resumes bit-exactly; its fingerprint names the optimizer megatron-core chose."""
    from goldens.core.errors import GoldenError
    from runner.config import load_case_definition
    from runner.launch import RunOptions, run_case

    cfg = load_case_definition(REPO / "cases" / case).run_config("cpu-tiny")
    par = cfg.parallelism
    if par.world_size > 1:  # one GPU: the family's model at TP1 x PP1 x EP1
        cfg = cfg.replace(parallelism={"tensor_model_parallel_size": 1, "pipeline_model_parallel_size": 1,
                                       "expert_model_parallel_size": 1, "sequence_parallel": False,
                                       "world_size": 1})
    cfg = cfg.replace(launch={"device": "cuda"})
    run_dir = work / f"family-{case}"
    result: dict = {}
    try:
        report = run_case(cfg, RunOptions(run_dir=run_dir))
        result["exit"] = 0
        artifact = report.artifact
        first, second = artifact.phases[1].metrics, artifact.phases[2].metrics
        result["resume_exact"] = all(
            dict(zip(first[n].steps.tolist(), first[n].values.tolist(), strict=True)).get(s) == v
            for n in ("lm loss", "num-zeros")
            for s, v in zip(second[n].steps.tolist(), second[n].values.tolist(), strict=True))
        result["optimizer"] = artifact.provenance.get("fingerprint_fields", {}).get("kernels", {}).get("optimizer")
    except GoldenError as exc:
        result.update(exit=2, error=str(exc))
    return result


def real_data_guard(work: Path) -> dict:
    """`golden check` of a Megatron case folder against its real-data GPU golden (dgx_h100) must be
    refused (exit 2) instead of failing on lm loss 10.5 vs 6.2; the guard is the same on any device,
    so the run is the case's cpu-tiny shrink. Uses ../shared's GPT case where present."""
    folder = REPO.parent / "shared" / "fixtures" / "megatron" / "test_cases" / "gpt"
    folder /= "gpt3_mcore_tp4_pp1_resume_torch_dist"
    if not folder.is_dir():
        return {"refused": True, "line": f"skipped: {folder} is absent"}
    proc = subprocess.run([sys.executable, "-m", "goldens", "check", str(folder), "--platform", "dgx_h100",
                           "--out", str(work / "guard")], cwd=REPO, capture_output=True, text=True)
    line = (proc.stderr.strip().splitlines() or [""])[-1]
    return {"refused": proc.returncode == 2 and "real data" in line, "exit": proc.returncode, "line": line}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu-check.json"))
    parser.add_argument("--skip-full", action="store_true", help="only the one-GPU cuda-smoke profile")
    args = parser.parse_args()

    from runner.config import load_case_definition

    definition = load_case_definition(REPO / "cases" / CASE)
    summary: dict = {"host": host(), "decisions": {p: decisions(definition, p) for p in ("cuda-smoke", "full")},
                     "runs": {}}
    say(f"host: {json.dumps(summary['host'])}")
    for profile, table in summary["decisions"].items():
        for name, choice in table.items():
            say(f"decision {profile} {name}: {choice}")
    gpus = len(summary["host"]["devices"])
    ok = True
    with tempfile.TemporaryDirectory(dir=os.environ.get("GPU_CHECK_WORK")) as tmp:
        work = Path(tmp)
        if gpus < 1:
            say("cuda-smoke: skipped, no GPU visible")
            ok = False
        else:
            run_dir, code, wall = cli_run("cuda-smoke", work)
            result = {"exit": code, "wall_s": wall}
            if (run_dir / "artifact.json").is_file():
                result.update(judge(run_dir, definition.run_config("cuda-smoke")))
            summary["runs"]["cuda-smoke"] = result
            passed = code == 0 and all(result.get("checks", {}).values())
            ok &= passed
            say(f"cuda-smoke: {'PASS' if passed else 'FAIL'} {json.dumps(result.get('checks'))} ({wall:.0f} s)")
        if args.skip_full:
            say("full: skipped (--skip-full)")
        elif gpus >= 8:
            run_dir, code, wall = cli_run("full", work)
            result = {"exit": code, "wall_s": wall, "world_size": 8}
            if (run_dir / "artifact.json").is_file():
                result.update(judge(run_dir, definition.run_config("full")))
            summary["runs"]["full"] = result
            passed = code == 0 and all(result.get("checks", {}).values())
            ok &= passed
            say(f"full (8 GPUs): {'PASS' if passed else 'FAIL'} {json.dumps(result.get('checks'))} ({wall:.0f} s)")
        elif gpus >= 4:
            from goldens.core.errors import GoldenError
            from runner.launch import RunOptions, run_case

            cfg = definition.run_config("full").replace(parallelism={"world_size": 4})
            run_dir = work / "full-4"
            started = time.monotonic()
            result = {"world_size": 4}
            try:
                run_case(cfg, RunOptions(run_dir=run_dir))
                result["exit"] = 0
            except GoldenError as exc:
                result.update(exit=2, error=str(exc))
            result["wall_s"] = time.monotonic() - started
            if (run_dir / "artifact.json").is_file():
                result.update(judge(run_dir, cfg))
            summary["runs"]["full-4"] = result
            passed = result["exit"] == 0 and all(result.get("checks", {}).values())
            ok &= passed
            say(f"full (TP2 x PP2 on 4 GPUs, data parallel 1): {'PASS' if passed else 'FAIL'} "
                f"{json.dumps(result.get('checks'))} ({result['wall_s']:.0f} s)")
        else:
            say(f"full: skipped, TP2 x PP2 needs 4 GPUs and this host has {gpus}")
        if gpus >= 1:
            for case in FAMILY_CASES:
                result = family_on_cuda(case, work)
                summary["runs"][case] = result
                passed = result["exit"] == 0 and result.get("resume_exact", False)
                ok &= passed
                say(f"{case} (cpu-tiny on one GPU): {'PASS' if passed else 'FAIL'} {json.dumps(result)}")
        guard = real_data_guard(work)
        summary["runs"]["real-data-guard"] = guard
        ok &= guard["refused"]
        say(f"real-data guard: {'PASS' if guard['refused'] else 'FAIL'} {guard['line']}")
    args.out.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    say(f"summary: {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
