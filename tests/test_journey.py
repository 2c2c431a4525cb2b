"""The whole CI journey against a loopback CI server, as a Megatron-LM maintainer runs it:
fetch a CI run's candidate goldens → judge them all in one process → reports → approve the one
that changed on purpose → every candidate now passes, and the history says who approved what and why.

The store is a Megatron-style test_cases tree in a git work tree (the git backend, Megatron's write
dialect); the CI run is GitHub Actions' REST API served on 127.0.0.1 (``fakes.ci_server.FakeCI``).
"""
from __future__ import annotations

import copy
import json

from typer.testing import CliRunner

from goldens.cli import app
from goldens.store import GoldenStore
from tests.builders import commit_all, git_repo, training_doc, write_megatron_case
from tests.fakes.ci_server import zip_bytes

REPO = "NVIDIA/Megatron-LM"
RUN = 20261129
CONFIG = "ENV_VARS:\n  NVTE_ALLOW_NONDETERMINISTIC_ALGO: 0\nTEST_TYPE: regular\nMODEL_ARGS:\n  --train-iters: 50\n"
FILE = "golden_values_dev_dgx_h100.json"
CASES = ("gpt/gpt3_mcore_te_tp2_pp2", "moe/gpt3_moe_tp2_ep4", "bert/bert_mcore_tp2_pp2")


def golden(*args: str, env: dict | None = None):
    return CliRunner().invoke(app, list(args), env={"CI": "", "GITHUB_STEP_SUMMARY": "", **(env or {})})


def test_fetch_judge_report_approve_then_everything_passes(fake_ci, tmp_path, monkeypatch):
    # The maintainers' tree: three cases, committed.
    repo = git_repo(tmp_path / "Megatron-LM")
    store = repo / "tests" / "functional_tests" / "test_cases"
    docs = {case: training_doc(range(1, 51), seed=i) for i, case in enumerate(CASES)}
    for case, doc in docs.items():
        model, name = case.split("/")
        write_megatron_case(store / model, name, CONFIG, {FILE: doc})
    commit_all(repo, "test cases")

    # CI ran them: the gpt case's loss moved on purpose (+8 %), the other two reproduce their goldens.
    changed = copy.deepcopy(docs[CASES[0]])
    changed["lm loss"]["values"] = {k: round(v * 1.08, 5) for k, v in changed["lm loss"]["values"].items()}
    fake_ci.github_run(REPO, RUN)
    for case, doc, conclusion in ((CASES[0], changed, "failure"), (CASES[1], docs[CASES[1]], "success"),
                                  (CASES[2], docs[CASES[2]], "success")):
        model, name = case.split("/")
        fake_ci.github_test(REPO, RUN, model, name, conclusion, {FILE: json.dumps(doc, indent=4)})
    fake_ci.github_artifact(REPO, RUN, "coverage", zip_bytes({"coverage.xml": "<coverage/>"}))
    env = {"GITHUB_TOKEN": fake_ci.TOKEN, "GITHUB_REPOSITORY": REPO, "GITHUB_API_URL": fake_ci.url}
    monkeypatch.chdir(repo)
    git_config = tmp_path / "gitconfig"
    git_config.write_text("[user]\n\tname = Ada Lovelace\n\temail = ada@example.com\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(git_config))

    # 1. fetch: the run's candidates, in Megatron's layout
    fetched = golden("fetch", "github", str(RUN), "--out", "candidates", env=env)
    assert fetched.exit_code == 0, fetched.output
    assert sorted(p.relative_to(repo / "candidates").as_posix() for p in (repo / "candidates").rglob("*.json")) == \
        sorted(f"{case}/{FILE}" for case in CASES)

    # 2. judge them all in one process, as Megatron's CI judges: one fails, two pass; reports written
    judged = golden("judge", "candidates", "--store", str(store), "--policy", "megatron", "--format", "json",
                    "--out", "report")
    assert judged.exit_code == 1, judged.output
    doc = json.loads(judged.stdout)
    assert {(r["case"], r["verdict"]) for r in doc["results"]} == {
        (CASES[0], "fail"), (CASES[1], "pass"), (CASES[2], "pass")}
    assert doc["findings"] == []
    report = (repo / "report" / "report.md").read_text()
    command = f"golden approve candidates/{CASES[0]}/{FILE} --case {CASES[0]} --env dev --platform dgx_h100"
    assert command in report  # the report says how to approve the failing case
    assert {p.name for p in (repo / "report").iterdir()} >= {"report.md", "report.html", "junit.xml", "report.json"}
    [staged] = json.loads(golden("pending", "--store", str(store), "--json").stdout)
    assert (staged["case"], staged["env"], staged["platform"]) == (CASES[0], "dev", "dgx_h100")

    # 3. approve the selected one (the staged candidate of the gpt case), with a reason
    approved = golden("approve", "--pending", "--case", "gpt/*", "--store", str(store),
                      "--reason", "loss moved with the new container (reviewed)")
    assert approved.exit_code == 0, approved.output
    assert json.loads(golden("pending", "--store", str(store), "--json").stdout) == []
    # written as Megatron's CI writes it: the approved file is the fetched file, byte for byte
    assert (store / CASES[0] / FILE).read_bytes() == (repo / "candidates" / CASES[0] / FILE).read_bytes()
    untouched = [(store / case / FILE).read_bytes() == json.dumps(docs[case], indent=4).encode() for case in CASES[1:]]
    assert untouched == [True, True]

    # 4. every candidate now passes, before and after the approval is committed
    again = golden("judge", "candidates", "--store", str(store), "--policy", "megatron")
    assert again.exit_code == 0, again.output
    commit_all(repo, "approve the new gpt golden")
    assert golden("judge", "candidates", "--store", str(store), "--policy", "megatron").exit_code == 0
    assert golden("fsck", "--store", str(store)).exit_code == 0

    # 5. the history says who approved what, from which run, and why
    newest = GoldenStore(store).history(CASES[0])[-1]
    assert newest.approver == "Ada Lovelace" and newest.reason == "loss moved with the new container (reviewed)"
    assert newest.source_run_id == staged["run_id"]
