"""Beyond one machine: the shared run folder, the Slurm plan and verdicts (fast), and end to end
two torchrun "nodes" on this machine over loopback and the seed case through a real Slurm
started by ci/slurm_up.sh (slow). Both multi-node runs must equal the single-node run bit for bit."""
from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from goldens.cli.extras import missing_reason

if missing_reason("runner"):
    pytest.skip(missing_reason("runner"), allow_module_level=True)


from goldens.core.errors import RunError
from goldens.files.formats.artifact import read_artifact
from runner import run_folder, slurm
from runner.config import load_case_definition
from runner.launch import RunOptions, run_case
from tests.builders import leftover_processes

REPO = Path(__file__).resolve().parents[1]
CASE = "bert_mcore_tp2_pp2_resume_torch_dist_local_spec"
STORE = REPO / "cases"
DETERMINISTIC = ("lm loss", "sop loss", "num-zeros")


@pytest.fixture(scope="module")
def cfg():
    return load_case_definition(STORE / CASE).run_config()


def two_node(cfg):
    return cfg.replace(launch={"nnodes": 2})


# ---------------------------------------------------------------- the shared run folder

def test_node_zero_creates_and_the_others_join_once_each(cfg, tmp_path):
    run_dir = tmp_path / "run"
    multi = two_node(cfg)
    run_folder.create(run_dir, multi)
    run_folder.register_node(run_dir, 0)
    run_folder.join(run_dir, multi, timeout_s=1)
    run_folder.register_node(run_dir, 1)
    with pytest.raises(RunError, match="node rank 1 has already joined the run"):
        run_folder.register_node(run_dir, 1)
    with pytest.raises(RunError, match="already exists and is not empty"):  # node 0 never joins a used folder
        run_folder.create(run_dir, multi)
    run_folder.finish_node(run_dir, 1, status="failed", error="boom", walls={1: 2.5})
    records = run_folder.node_records(run_dir)
    assert sorted(records) == [0, 1] and records[1]["status"] == "failed" and records[1]["phase_wall_s"] == {"1": 2.5}
    assert records[0]["host"] and "status" not in records[0]


def test_a_joining_node_waits_for_node_zero_and_checks_the_configuration(cfg, tmp_path):
    run_dir = tmp_path / "run"
    started = time.monotonic()
    with pytest.raises(RunError, match=r"waited 0.5 s for node 0 to create the run folder"):
        run_folder.join(run_dir, two_node(cfg), timeout_s=0.5)
    assert time.monotonic() - started >= 0.5 and not run_dir.exists()  # a joiner never creates the run
    run_folder.create(run_dir, two_node(cfg))
    with pytest.raises(RunError, match="holds another configuration than this node's"):
        run_folder.join(run_dir, two_node(cfg).replace(determinism={"seed": 7}), timeout_s=1)
    (run_dir / "artifact.json").write_text("{}")
    with pytest.raises(RunError, match="holds a finished run"):
        run_folder.join(run_dir, two_node(cfg), timeout_s=1)


def test_a_node_rank_outside_the_run_is_refused_before_anything_is_written(cfg, tmp_path):
    with pytest.raises(RunError, match=r"--node-rank must be in \[0, 1\]"):
        run_case(two_node(cfg), RunOptions(run_dir=tmp_path / "run", node_rank=2,
                                           torchrun_args=("--rdzv-endpoint=h:1",)))
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- Slurm: the plan and the verdicts

def test_the_two_node_slurm_plan(cfg, tmp_path, monkeypatch):
    """What each srun task of a 2-node job does, from Slurm's variables alone: node rank from
    SLURM_NODEID, static rendezvous on the first host's address, port from the job id."""
    multi = two_node(cfg)
    command = slurm.srun_command(multi, tmp_path, ("--partition=gpu",))
    assert command[:5] == ["srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    assert "--cpus-per-task=2" in command and "--partition=gpu" in command  # 2 ranks × 1 thread per node
    assert command[-3:] == ["-m", "runner.slurm", str(tmp_path)]
    assert "--cpus-per-task=2" not in slurm.srun_command(multi, tmp_path, ("--cpus-per-task=8",))
    run_folder.create(tmp_path / "run", multi)
    asked, started = [], []
    monkeypatch.setattr(slurm, "_tool", lambda *cmd: asked.append(cmd) or
                        ("node7\nnode8\n" if cmd[1] == "show" else "10.0.0.7\n"))
    monkeypatch.setattr("runner.slurm.run_case", lambda cfg, options: started.append((cfg, options)))
    monkeypatch.delenv("GOLDEN_RDZV_PORT", raising=False)
    for node in ("0", "1"):
        monkeypatch.setenv("SLURM_NODEID", node)
        monkeypatch.setenv("SLURM_NNODES", "2")
        monkeypatch.setenv("SLURM_JOB_ID", "12345")
        monkeypatch.setenv("SLURM_JOB_NODELIST", "node[7-8]")
        assert slurm.node_main(tmp_path / "run") == 0
    assert asked[0] == ("scontrol", "show", "hostnames", "node[7-8]")
    assert asked[1] == ("sinfo", "--noheader", "--Node", "--nodes=node7", "--format=%o")
    for rank, (node_cfg, options) in enumerate(started):
        assert node_cfg == multi and options.node_rank == rank and options.join and options.launcher == "torchrun"
        assert options.torchrun_args == (f"--rdzv-endpoint=10.0.0.7:{20000 + 2345 * 2}",)
    monkeypatch.setenv("SLURM_NNODES", "3")
    assert slurm.node_main(tmp_path / "run") == 1  # a step of the wrong size starts nothing


DONE = {"status": "complete", "error": None, "host": "a"}


@pytest.mark.parametrize("records, kwargs, expected", [
    ({0: DONE, 1: DONE}, {}, ("complete", None)),
    ({0: DONE, 1: DONE}, {"state": "CANCELLED"}, ("incomplete", "slurm job 9 CANCELLED: cancelled (scancel)")),
    ({0: DONE, 1: {"status": "incomplete", "error": "terminated (SIGTERM)"}}, {"state": "TIMEOUT"},
     ("incomplete", "slurm job 9 TIMEOUT: its time limit was reached")),
    ({0: {"host": "a"}, 1: DONE}, {"state": "NODE_FAIL", "srun_exit": 1},
     ("incomplete", "slurm job 9 NODE_FAIL: a node was lost")),
    ({0: {"host": "a"}, 1: DONE}, {"state": "FAILED", "srun_exit": 1},
     ("incomplete", "node 0 (a) ended without reporting (srun exit code 1; slurm job 9 FAILED; see logs/slurm.log)")),
    ({0: {"status": "failed", "error": "rank 1 failed in phase 1: gloo connection closed"},
      1: {"status": "failed", "error": "rank 3 failed in phase 1 while training: ValueError: bad"}},
     {"state": "FAILED", "srun_exit": 1},
     ("failed", "node 1: rank 3 failed in phase 1 while training: ValueError: bad")),
    ({}, {"srun_exit": 1, "srun_said": "Unable to create step for job 9: More processors requested than permitted"},
     ("failed", "srun exited with code 1 before any node started: Unable to create step for job 9: More "
                "processors requested than permitted")),
    ({0: DONE, 1: DONE}, {"stopped": "terminated (SIGTERM)", "state": "CANCELLED"},
     ("incomplete", "terminated (SIGTERM) (slurm job 9 CANCELLED)")),
])
def test_how_a_slurm_job_ended_decides_the_run(records, kwargs, expected):
    kwargs = {"srun_exit": 0, "state": "COMPLETED", "job_id": "9", **kwargs}
    assert slurm.judge_job(records, 2, **kwargs) == expected


# ---------------------------------------------------------------- end to end (slow)


@pytest.fixture(scope="module")
def single_node(cfg, tmp_path_factory):
    """The reference: the same case and layout on one node (fork launcher)."""
    return run_case(cfg, RunOptions(run_dir=tmp_path_factory.mktemp("single") / "run")).artifact


def assert_same_metrics(artifact, reference):
    assert artifact.status == "complete", artifact.error
    for phase in (1, 2):
        for name in DETERMINISTIC:
            assert artifact.phases[phase].metrics[name].values.tobytes() == \
                reference.phases[phase].metrics[name].values.tobytes(), (phase, name)
    for name in DETERMINISTIC:  # the resume is bit-exact: phase 2 repeats phase 1's last steps
        first = artifact.phases[2].first_step
        assert artifact.phases[2].metrics[name].values.tobytes() == \
            artifact.phases[1].metrics[name].values[first - 1:].tobytes(), name


def free_port_pair() -> int:
    import socket

    for _ in range(50):
        port = random.randrange(30000, 60000, 2)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two free ports")


def golden(*args: str, env: dict | None = None, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "goldens", "run", CASE, "--store", str(STORE), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})}, **popen)


@pytest.mark.slow
def test_two_torchrun_nodes_over_loopback_share_one_run_folder(single_node, tmp_path):
    """`golden run --nnodes 2 --node-rank R --rdzv-endpoint 127.0.0.1:P --out SHARED` on two "nodes":
    node 1 started first (it waits for node 0's folder); one artifact, every node in it."""
    run_dir = tmp_path / "shared"
    endpoint = f"127.0.0.1:{free_port_pair()}"
    nodes = [golden("--out", str(run_dir), "--nnodes", "2", "--node-rank", str(rank), "--rdzv-endpoint", endpoint,
                    cwd=tmp_path) for rank in (1, 0)]
    outputs = [node.communicate(timeout=900)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    for output in outputs:  # every node reports the one artifact
        assert f"artifact: {run_dir / 'artifact.json'} (complete)" in output
    artifact = read_artifact(run_dir)
    assert_same_metrics(artifact, single_node)
    assert [n["node_rank"] for n in artifact.provenance["nodes"]] == [0, 1]
    assert artifact.provenance["fingerprint_fields"]["layout"]["nnodes"] == 2
    for phase in (1, 2):
        for rank in (0, 1):
            assert (run_dir / "logs" / f"phase{phase}" / f"node{rank}" / "torchrun.log").is_file()
    assert sorted(p.name for p in (run_dir / "logs" / "phase1").glob("rank*.json")) == \
        [f"rank{r}.json" for r in range(4)]
    assert not leftover_processes(run_dir.resolve())


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A real Slurm: the one .ci/run started (GOLDEN_SLURM_CONF; then it must answer), else one
    started here by ci/slurm_up.sh and stopped by ci/slurm_down.sh; skipped where it cannot start."""
    given = os.environ.get("GOLDEN_SLURM_CONF")
    if given:
        yield {"SLURM_CONF": given}
        return
    state = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "GOLDEN_SLURM_PORT_BASE": str(random.randrange(17100, 17900, 10))}
    up = subprocess.run([str(REPO / "ci" / "slurm_up.sh"), str(state)], capture_output=True, text=True, env=env,
                        timeout=180)
    try:
        if up.returncode != 0:
            said = up.stderr.strip().splitlines()[-1] if up.stderr.strip() else up.returncode
            pytest.skip(f"Slurm cannot start here: {said}")
        yield {"SLURM_CONF": up.stdout.strip()}
    finally:
        subprocess.run([str(REPO / "ci" / "slurm_down.sh"), str(state)], capture_output=True, timeout=120)


def slurm_nodes(env: dict) -> int:
    out = subprocess.run(["sinfo", "--noheader", "--Node", "--format=%N"], capture_output=True, text=True,
                         env={**os.environ, **env}, timeout=30).stdout.split()
    return len(set(out))


@pytest.mark.slow
def test_the_seed_case_runs_through_a_real_slurm(slurm_cluster, single_node, tmp_path):
    nodes = min(2, slurm_nodes(slurm_cluster))  # two slurmd on this host where the build allows it
    run_dir = tmp_path / "slurm"
    proc = golden("--out", str(run_dir), "--launcher", "slurm", "--nnodes", str(nodes), env=slurm_cluster,
                  cwd=tmp_path)
    output = proc.communicate(timeout=900)[0]
    assert proc.returncode == 0, output[-3000:]
    artifact = read_artifact(run_dir)
    assert_same_metrics(artifact, single_node)
    assert artifact.provenance["launcher"] == "slurm" and artifact.provenance["slurm"]["srun_exit"] == 0
    records = artifact.provenance["nodes"]
    assert [r["node_rank"] for r in records] == list(range(nodes))
    assert {r["slurm"]["job_id"] for r in records} == {artifact.provenance["slurm"]["job_id"]}
    assert len({r["slurm"]["node_name"] for r in records}) == nodes  # one task on each Slurm node
    assert not leftover_processes(run_dir.resolve())


def start_on_slurm(slurm_cluster, run_dir: Path, nodes: int) -> tuple[subprocess.Popen, dict]:
    """`golden run --launcher slurm` started; returns once the last node has joined (its record)."""
    proc = golden("--out", str(run_dir), "--launcher", "slurm", "--nnodes", str(nodes), env=slurm_cluster,
                  cwd=run_dir.parent)
    record = run_dir / "nodes" / f"node{nodes - 1}.json"
    deadline = time.monotonic() + 300
    while not (record.is_file() and run_folder.read_node_record(record)) and proc.poll() is None:
        assert time.monotonic() < deadline, f"the job's node {nodes - 1} never started"
        time.sleep(0.2)
    return proc, run_folder.read_node_record(record)


@pytest.mark.slow
def test_a_cancelled_slurm_job_ends_incomplete_with_the_reason(slurm_cluster, tmp_path):
    nodes = min(2, slurm_nodes(slurm_cluster))
    run_dir = tmp_path / "cancelled"
    proc, record = start_on_slurm(slurm_cluster, run_dir, nodes)
    job_id = record["slurm"]["job_id"]
    subprocess.run(["scancel", job_id], env={**os.environ, **slurm_cluster}, check=True, timeout=30)
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 2, output[-3000:]
    artifact = read_artifact(run_dir)
    assert artifact.status == "incomplete"
    assert artifact.error == f"slurm job {job_id} CANCELLED: cancelled (scancel)"
    assert f"error: slurm job {job_id} CANCELLED" in output
    assert not leftover_processes(run_dir.resolve())
    assert not list(run_dir.glob("*.tmp")) and not list(run_dir.glob(".artifact*"))


@pytest.mark.slow
def test_a_node_lost_mid_run_ends_incomplete_naming_it(slurm_cluster, tmp_path):
    """The last node's task dies outright (SIGKILL, as when its host goes away): the run ends
    ``incomplete`` naming that node, and nothing of the run is left on any node."""
    nodes = min(2, slurm_nodes(slurm_cluster))
    run_dir = tmp_path / "lost"
    proc, record = start_on_slurm(slurm_cluster, run_dir, nodes)
    os.kill(record["pid"], 9)
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 2, output[-3000:]
    artifact = read_artifact(run_dir)
    assert artifact.status == "incomplete"
    # the lost node is named; so may be a node srun stopped because of it before it could report
    # (under load node 0 is often still mid-step when srun tears the step down)
    named, _, rest = artifact.error.partition(" ended without reporting (srun exit code")
    assert rest, artifact.error
    assert f"node {nodes - 1} ({record['host']})" in named.split(", "), artifact.error
    deadline = time.monotonic() + 30  # what the lost task had started dies with it (PR_SET_PDEATHSIG)
    while leftover_processes(run_dir.resolve()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not leftover_processes(run_dir.resolve())
