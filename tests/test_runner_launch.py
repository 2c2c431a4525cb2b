"""Launcher pieces without training: naming failures, process-tree kills, logs, plans, artifacts."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from goldens.cli.extras import missing_reason

if missing_reason("runner"):
    pytest.skip(missing_reason("runner"), allow_module_level=True)

import psutil

from goldens.core.errors import RunError
from goldens.files.formats.artifact import artifact_to_json, parse_artifact, read_artifact
from runner.artifact import assemble, write
from runner.config import RunConfig, load_case_definition
from runner.faults import Fault, InjectedFault, maybe_inject
from runner.launch import (
    ForkLauncher,
    MetricsTail,
    PhaseOutcome,
    RunOptions,
    TorchrunLauncher,
    explain_failure,
    kill_tree,
    make_launcher,
    run_case,
)
from runner.plan import PhasePlan, checkpoint_dir, read_tracker
from runner.provenance import fingerprint, platform_name
from runner.status import RankState, RankStatus, one_line, read_states
from runner.torchrun import failure_records

REPO = Path(__file__).resolve().parents[1]
CASE_DIR = REPO / "cases" / "bert_mcore_tp2_pp2_resume_torch_dist_local_spec"


@pytest.fixture(scope="module")
def cfg():
    return load_case_definition(CASE_DIR).run_config()


def state(rank, st, step=None, error=None, t=0.0, failed_while=None):
    return RankState(rank, 1000 + rank, st, step, error, t, failed_while)


# ---------------------------------------------------------------- naming what went wrong

def test_a_signal_death_is_named_even_when_peers_report_connection_errors():
    states = {0: state(0, "failed", 3, "RuntimeError: Connection closed by peer [127.0.0.1]:1", 5.0, "training"),
              1: state(1, "training", 3), 2: state(2, "training", 2),
              3: state(3, "failed", 3, "RuntimeError: Connection reset", 5.1, "training")}
    outcome = {"status": "failed", "failures": [
        {"rank": 0, "exitcode": 1, "signal": None, "time": 5.0, "stopped": False},
        {"rank": 2, "exitcode": -9, "signal": "SIGKILL", "time": 5.2, "stopped": False},
        {"rank": 1, "exitcode": -15, "signal": "SIGTERM", "time": 5.3, "stopped": True}]}
    assert explain_failure(1, outcome, states) == "rank 2 died in phase 1 while training after step 2 (SIGKILL)"


def test_a_rank_with_its_own_error_is_the_root_cause():
    states = {1: state(1, "failed", None, "FileNotFoundError: no such shard", 4.0, "loading"),
              3: state(3, "failed", None, "RuntimeError: Connection closed by peer", 3.9, "loading")}
    outcome = {"status": "failed", "failures": [{"rank": 3, "exitcode": 1, "signal": None, "time": 3.9}]}
    assert explain_failure(2, outcome, states) == \
        "rank 1 failed in phase 2 while loading: FileNotFoundError: no such shard"


def test_only_peer_errors_name_the_earliest():
    states = {2: state(2, "failed", 1, "RuntimeError: gloo recv failed", 9.0, "training"),
              0: state(0, "failed", 1, "RuntimeError: Connection reset by peer", 8.0, "training")}
    outcome = {"status": "failed", "failures": [{"rank": 0, "exitcode": 1, "signal": None, "time": 8.0}]}
    assert explain_failure(1, outcome, states).startswith("rank 0 failed in phase 1 while training after step 1")


def test_a_silent_exit_and_a_bare_launcher_failure():
    outcome = {"status": "failed", "failures": [{"rank": 3, "exitcode": 7, "signal": None, "time": 1.0}]}
    assert explain_failure(1, outcome, {}) == "rank 3 exited with code 7 in phase 1 before reporting"
    assert explain_failure(2, {"status": "failed", "failures": [], "launcher_exit": 1}, {}) == \
        "phase 2 failed (launcher exit code 1)"


def test_a_timeout_names_the_rank_that_fell_behind():
    states = {0: state(0, "training", 4), 1: state(1, "training", 3), 2: state(2, "training", 4),
              3: state(3, "training", 4)}
    assert explain_failure(1, {"status": "timeout"}, states, timeout_s=30) == \
        "phase 1 timed out after 30 s: rank 1 stuck while training after step 3 (the others waited for it)"
    level = {r: state(r, "saving", 10) for r in range(4)}
    assert explain_failure(1, {"status": "timeout"}, level, timeout_s=5) == \
        "phase 1 timed out after 5 s: ranks 0,1,2,3 stuck while saving after step 10"
    assert "before any rank reported" in explain_failure(2, {"status": "timeout"}, {}, timeout_s=5)


# ---------------------------------------------------------------- status files, faults, plans

def test_rank_status_round_trip(tmp_path):
    status = RankStatus(tmp_path / "rank2.json", rank=2, phase=1)
    status.update("training", 5)
    try:
        raise ValueError("bad\nsecond line")
    except ValueError as exc:
        status.fail(exc)
    (tmp_path / "rank0.json").write_text("{torn")
    states = read_states(tmp_path)
    assert list(states) == [2]
    st = states[2]
    assert (st.state, st.step, st.error, st.activity, st.pid) == ("failed", 5, "ValueError: bad", "training",
                                                                  os.getpid())
    assert one_line(RunError("our own\nmessage")) == "our own"


def test_fault_spec_and_injection(monkeypatch):
    assert Fault.parse("2:1:step3:raise") == Fault(2, 1, "step3", "raise")
    with pytest.raises(ValueError, match="expected"):
        Fault.parse("2:x:step3:explode")
    monkeypatch.setenv("GOLDEN_RUNNER_FAULT", "2:1:step3:raise")
    maybe_inject("step3", phase=2, rank=0)  # other rank: nothing
    maybe_inject("step3", phase=1, rank=1)  # other phase: nothing
    with pytest.raises(InjectedFault):
        maybe_inject("step3", phase=2, rank=1)


def test_plan_round_trip_and_checks(cfg, tmp_path):
    plan = PhasePlan(run=cfg, run_dir=tmp_path, phase=2, first_step=11, last_step=20, resume_from=10,
                     load_optimizer=False)
    assert PhasePlan.read(plan.write()) == plan
    with pytest.raises(ValueError, match="must start at step 11"):
        PhasePlan(run=cfg, run_dir=tmp_path, phase=2, first_step=12, last_step=20, resume_from=10)
    assert checkpoint_dir(tmp_path, 50).name == "iter_0000050"
    assert read_tracker(tmp_path) is None
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("10\n")
    assert read_tracker(tmp_path) == 10


def test_metrics_tail_returns_only_complete_new_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    tail = MetricsTail(path)
    assert tail.new_steps() == []
    path.write_text(json.dumps({"event": "ready", "time": 1}) + "\n"
                    + json.dumps({"step": 1, "metrics": {"lm loss": 7.5}}) + "\n" + '{"step": 2, "metr')
    assert tail.new_steps() == [(1, {"lm loss": 7.5})]
    with path.open("a") as fh:
        fh.write('ics": {"lm loss": 7.25}}\n')
    assert tail.new_steps() == [(2, {"lm loss": 7.25})]


def test_torchrun_failure_records_mark_agent_stops():
    def failure(code):
        return SimpleNamespace(exitcode=code, timestamp=12, signal_name=lambda: {-9: "SIGKILL", -15: "SIGTERM"}[code])
    records = failure_records({2: failure(-9), 0: failure(-15)})
    assert records == [{"rank": 0, "exitcode": -15, "signal": "SIGTERM", "time": 12.0, "stopped": True},
                       {"rank": 2, "exitcode": -9, "signal": "SIGKILL", "time": 12.0, "stopped": False}]


def test_launcher_choice(cfg, tmp_path):
    assert isinstance(make_launcher("auto", cfg, run_dir=tmp_path), ForkLauncher)
    assert isinstance(make_launcher("torchrun", cfg, run_dir=tmp_path), TorchrunLauncher)
    assert isinstance(make_launcher("auto", cfg, run_dir=tmp_path, torchrun_args=("--rdzv-backend=static",)),
                      TorchrunLauncher)
    with pytest.raises(RunError, match="single-node CPU"):
        make_launcher("fork", cfg.replace(launch={"device": "cuda"}), run_dir=tmp_path)
    with pytest.raises(RunError, match="launcher must be one of"):
        make_launcher("mpirun", cfg, run_dir=tmp_path)


def test_torchrun_command_passes_multi_node_options_through(cfg, tmp_path):
    plan = PhasePlan(run=cfg, run_dir=tmp_path, phase=1, first_step=1, last_step=20, save_at=10)
    single = TorchrunLauncher(cfg).command(plan, tmp_path / "o.json")
    assert "--standalone" in single and single[single.index("--nproc-per-node") + 1] == "4"
    multi_cfg = cfg.replace(launch={"nnodes": 2})
    multi = TorchrunLauncher(multi_cfg, extra_args=("--rdzv-endpoint", "h:29400", "--rdzv-id=x"), node_rank=1)
    node_plan = PhasePlan(run=multi_cfg, run_dir=tmp_path, phase=1, first_step=1, last_step=20, save_at=10,
                          node_rank=1)
    cmd = multi.command(node_plan, tmp_path / "o.json")
    assert "--standalone" not in cmd and "--rdzv-id=x" in cmd
    assert cmd[cmd.index("--nproc-per-node") + 1] == "2" and cmd[cmd.index("--node-rank") + 1] == "1"
    assert "--rdzv-backend=static" in cmd  # node rank = group rank: node 0 hosts global rank 0
    assert "--rdzv-endpoint=h:29400" in cmd and cmd[-3:] == ["-m", "runner.worker", str(node_plan.plan_path)]
    assert node_plan.plan_path == tmp_path / "logs" / "phase1" / "node1" / "plan.json"
    phase2 = PhasePlan(run=multi_cfg, run_dir=tmp_path, phase=2, first_step=11, last_step=20, resume_from=10,
                       node_rank=1)
    assert "--rdzv-endpoint=h:29401" in multi.command(phase2, tmp_path / "o.json")  # its own store per phase


# ---------------------------------------------------------------- process trees

def test_kill_tree_reaches_descendants_in_their_own_sessions():
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    root = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    grandchild = int(root.stdout.readline())
    assert psutil.pid_exists(grandchild)
    killed = kill_tree(root.pid)
    root.wait(timeout=10)
    assert set(killed) == {root.pid, grandchild}
    deadline = time.monotonic() + 10
    while psutil.pid_exists(grandchild) and psutil.Process(grandchild).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not psutil.pid_exists(root.pid)


# ---------------------------------------------------------------- artifact and provenance

def _fake_phase_logs(run_dir: Path, phase: int, steps: range, loss0: float) -> None:
    log = run_dir / "logs" / f"phase{phase}"
    log.mkdir(parents=True)
    lines = [{"event": "ready", "time": 100.0}]
    # as the ranks log them: no iteration-time at a process's first step
    lines += [{"step": s, "phase": phase, "time": 0.0,
               "metrics": {"lm loss": loss0 - s / 3, "num-zeros": 2.0,
                           **({"iteration-time": 0.25} if s > steps[0] else {}),
                           "cpu-max-rss-anon-bytes": 3e8, "grad-norm": 1.5}} for s in steps]
    lines += [{"event": "save", "time": 101.0, "seconds": 0.5, "iteration": 2}, {"event": "done", "time": 104.0}]
    (log / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"step": 99, "met')


def test_artifact_from_logs_keeps_full_precision_and_both_phases(cfg, tmp_path):
    cfg = cfg.replace(schedule={"train_iters": 4, "save_interval": 2})
    _fake_phase_logs(tmp_path, 1, range(1, 5), 7.0)
    _fake_phase_logs(tmp_path, 2, range(3, 5), 7.0)
    env = {"device": {"type": "cpu", "model": "x", "isa": ["avx2"]}, "versions": {"torch": "t"}}
    (tmp_path / "logs" / "phase1" / "environment.json").write_text(json.dumps(env))
    outcomes = [PhaseOutcome(1, "ok", wall_s=9.0), PhaseOutcome(2, "ok", wall_s=5.0)]
    artifact = assemble(cfg, tmp_path, status="complete", error=None, outcomes=outcomes)
    read = read_artifact(write(artifact, tmp_path))
    assert read.status == "complete" and read.case == cfg.case and read.run_id == tmp_path.name
    one, two = read.phases[1], read.phases[2]
    assert (one.first_step, one.last_step, one.resumed_from) == (1, 4, None)
    assert (two.first_step, two.last_step, two.resumed_from) == (3, 4, 2)
    assert list(one.metrics) == ["lm loss", "num-zeros", "iteration-time", "cpu-max-rss-anon-bytes"]  # not grad-norm
    assert one.metrics["lm loss"].values.tolist() == [7.0 - s / 3 for s in range(1, 5)]  # bit-exact floats
    # iteration-time starts at each phase's second step, as Megatron's goldens ("start_step": 2)
    assert (one.metrics["iteration-time"].start_step, one.metrics["iteration-time"].steps.tolist()) == (2, [2, 3, 4])
    assert (two.metrics["iteration-time"].start_step, two.metrics["iteration-time"].steps.tolist()) == (4, [4])
    prov = read.provenance
    assert prov["fingerprint"] == fingerprint(env) and prov["fingerprint_fields"] == env
    assert (prov["device"], prov["platform"], prov["world_size"], prov["tp"], prov["pp"], prov["dp"]) == \
        ("cpu", "cpu", 4, 2, 2, 1)
    assert set(prov["versions"]) == {"python", "torch", "megatron-core", "goldens"}
    assert prov["timings"]["phase1"] == {"wall_s": 9.0, "save_s": 0.5, "steps_s": 3.5}
    assert prov["model_args"]["schedule"]["train_iters"] == 4


def test_a_run_that_recorded_no_phase_two_is_never_complete(cfg, tmp_path):
    _fake_phase_logs(tmp_path, 1, range(1, 21), 7.0)
    artifact = assemble(cfg, tmp_path, status="complete", error=None, outcomes=[])
    assert artifact.status == "incomplete" and not artifact.approvable
    assert "fingerprint" not in artifact.provenance  # rank 0 never reported its environment
    assert parse_artifact(json.loads(json.dumps(artifact_to_json(artifact)))).status == "incomplete"


def test_a_regular_case_is_complete_with_phase_one(cfg, tmp_path):
    regular = RunConfig.from_dict({**cfg.to_dict(), "test_type": "regular"})
    _fake_phase_logs(tmp_path, 1, range(1, 21), 7.0)
    artifact = assemble(regular, tmp_path, status="complete", error=None, outcomes=[])
    assert artifact.status == "complete" and list(artifact.phases) == [1]
    assert artifact.provenance["test_type"] == "regular"
    with pytest.raises(RunError, match="reusing phase 1 needs a ckpt-resume case"):
        run_case(regular, RunOptions(run_dir=tmp_path / "again", reuse_phase1_from=tmp_path))
    assert not (tmp_path / "again").exists()  # refused before anything is written


def test_fingerprint_is_order_independent_and_platform_names():
    assert fingerprint({"a": 1, "b": {"c": 2}}) == fingerprint({"b": {"c": 2}, "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    assert platform_name(None, "cpu") == "cpu"
    assert platform_name({"device": {"name": "NVIDIA H100 80GB HBM3"}}, "cuda") == "dgx_h100"
    assert platform_name({"device": {"name": "Tesla V100-SXM2"}}, "cuda") == "tesla_v100_sxm2"


def test_the_fork_server_refuses_to_fork_a_threaded_process(cfg, tmp_path):
    import threading

    from runner import forkserver

    plan = PhasePlan(run=cfg, run_dir=tmp_path, phase=1, first_step=1, last_step=20, save_at=10)
    plan.write()
    stop = threading.Event()
    helper = threading.Thread(target=stop.wait)
    helper.start()
    try:
        with pytest.raises(RuntimeError, match=r"refusing to fork: the launcher process has [2-9]"):
            forkserver.run_phase(plan.plan_path)
    finally:
        stop.set()
        helper.join()
    assert not list(tmp_path.glob("logs/phase1/rank*.json"))  # nothing was started


def test_forked_ranks_spread_over_the_allowed_cpus_tensor_partners_apart():
    from runner.forkserver import rank_cpus

    # 4 ranks (tensor-parallel fastest) on 2 CPUs: each TP pair (0,1), (2,3) on different CPUs
    assert [rank_cpus(r, 1, [0, 1]) for r in range(4)] == [{0}, {1}, {0}, {1}]
    assert [rank_cpus(r, 1, [2, 5, 7, 9]) for r in range(4)] == [{2}, {5}, {7}, {9}]
    assert [rank_cpus(r, 2, [0, 1, 2, 3]) for r in range(3)] == [{0, 1}, {2, 3}, {0, 1}]
