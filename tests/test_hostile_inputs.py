"""A hostile pull request and a hostile CI server, on the loopback only: bounded parsing of every
YAML and JSON input, one CI client that keeps the token on its origin, deadlines and caps, one
line and exit 2 for every refusal (a finding in a batch), sanitised output, the approve race.
Hand-made cases for each attack found, and hypothesis for their neighbours; well within a minute.
The longer run of the same generators is bench/fuzz_inputs.py."""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from goldens.core.errors import FormatError
from goldens.core.sanitize import line, markdown, markdown_code, text
from goldens.fetch import FetchError
from goldens.fetch.http import Api, Limits
from goldens.fetch.land import Archive, Staging
from goldens.files.bounded import Bounds, load_json_bytes, load_yaml_text, yaml_document
from goldens.files.formats.golden import parse_golden
from goldens.files.formats.jsontext import load_json_text
from goldens.megatron.case import read_megatron_case
from tests.builders import (
    commit_all,
    git_repo,
    invoke,
    make_store,
    one_line_refusal,
    seed,
    shifted,
    training_doc,
    write_megatron_case,
    write_run,
)
from tests.fakes.ci_server import zip_bytes
from tests.fakes.hostile_server import HostileServer, patched_zip

REPO = Path(__file__).resolve().parents[1]
TOKEN = "hostile-test-token-7f3a"
QUICK = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def billion_laughs(levels: int = 9) -> str:
    """The classic: each level an anchored list of nine aliases of the level before (9**levels 'lol's)."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    names = "abcdefghijklmnopqrstuvwxyz"
    for i in range(1, levels):
        lines.append(f"{names[i]}: &{names[i]} [" + ",".join([f"*{names[i - 1]}"] * 9) + "]")
    return "MODE: pretraining\nTEST_TYPE: regular\n" + "\n".join(lines) + f"\nMETRICS: *{names[levels - 1]}\n"


# ---------------------------------------------------------------- 1. YAML bombs and bounds

def test_the_yaml_bomb_is_refused_in_under_a_second_and_200_mb(tmp_path):
    config = tmp_path / "model_config.yaml"
    config.write_text(billion_laughs())
    assert len(config.read_bytes()) < 600
    import yaml  # noqa: F401 - imported before the clock starts, as in any run that reads a case
    started = time.perf_counter()
    with pytest.raises(FormatError):
        read_megatron_case(config)
    took = time.perf_counter() - started
    tracemalloc.start()
    with pytest.raises(FormatError) as refused:
        read_megatron_case(config)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert took < 1.0 and peak < 200 << 20, (took, peak)
    assert "aliases counted expanded" in str(refused.value) and str(config) in str(refused.value)
    assert len(str(refused.value)) < 300


def megatron_pair(root: Path, config: str) -> tuple[Path, Path]:
    """A store with one Megatron case (``config`` as its model_config.yaml) and a candidate for it."""
    doc = training_doc([1, 2, 3, 4])
    write_megatron_case(root / "store" / "gpt", "case_a", config, {"golden_values_dev_dgx_h100.json": doc})
    candidate = root / "cand" / "gpt" / "case_a" / "golden_values_dev_dgx_h100.json"
    candidate.parent.mkdir(parents=True)
    candidate.write_text(json.dumps(doc))
    return root / "store", candidate


@pytest.mark.parametrize("config, words", [
    (billion_laughs(), ["aliases counted expanded"]),
    ("METRICS: [lm loss, null]\n", ["METRICS holds None"]),                       # Megatron: KeyError
    ("MODEL_ARGS:\n  --train-iters: " + "9" * 5000 + "\n", ["5,000 characters"]),
    ("METRICS: " + "[" * 5000 + "\n", ["nest"]),                                  # libyaml's own limit first
    ("METRICS:\n" + "".join(" " * i + "- \n" for i in range(1, 200)), ["nested deeper than 64"]),
])
def test_a_hostile_model_config_is_one_line_in_judge_and_diff(tmp_path, config, words):
    store, candidate = megatron_pair(tmp_path, config)
    started = time.perf_counter()
    diff = invoke("diff", str(candidate), "--store", str(store), "--policy", "megatron")
    one_line_refusal(diff, "model_config.yaml", *words)
    judged = invoke("judge", str(tmp_path / "cand"), "--store", str(store), "--policy", "megatron", "--format", "json")
    assert judged.exit_code in (1, 2), judged.output
    assert "Traceback" not in judged.output and all(w in judged.output for w in words), judged.output
    assert time.perf_counter() - started < 20


def test_validate_refuses_the_bomb_it_once_called_ok(tmp_path):
    store, _ = megatron_pair(tmp_path, billion_laughs())
    out = invoke("validate", str(store / "gpt" / "case_a" / "model_config.yaml"))
    assert out.exit_code != 0 and "aliases counted expanded" in out.output, out.output


def test_a_train_iters_no_int_can_be_is_not_a_number(tmp_path):
    store, _ = megatron_pair(tmp_path, 'TEST_TYPE: ckpt-resume\nMODEL_ARGS:\n  --train-iters: "²"\n')
    case = read_megatron_case(store / "gpt" / "case_a" / "model_config.yaml")
    assert case.train_iters is None
    from goldens.core.errors import GoldenError
    from goldens.files.case import load_yaml
    from runner.megatron_case import import_model_config

    config = store / "gpt" / "case_a" / "model_config.yaml"
    with contextlib.suppress(GoldenError):  # imported, or refused; any other exception fails the test
        import_model_config(load_yaml(config), name="case_a", path=config)


@pytest.mark.parametrize("text, key", [
    ("a: " + "7" * 100, "a"), ("a: {b: [1, 2, {c: " + "1" * 70 + "}]}", "a.b[2].c"),
    ("a: &x [1]\n" + "\n".join(f"k{i}: *x" for i in range(70)), "k64"),
])
def test_yaml_bounds_name_the_key(text, key):
    with pytest.raises(FormatError) as refused:
        load_yaml_text(text, "f.yaml")
    assert f"key '{key}'" in str(refused.value)


def test_yaml_keeps_what_safe_load_gives():
    import yaml

    sample = "a: 1\nb: [x, 'y', 2.5, null, true]\nc: &c {d: e}\nf: *c\n<<: {g: 1}\nt: 2001-12-14\n"
    assert load_yaml_text(sample) == yaml.safe_load(sample)
    doc, node = yaml_document(sample)
    assert node.id == "mapping" and doc["f"] == {"d": "e"}


yaml_text = st.recursive(
    st.sampled_from(["a", "1", "-1.5e3", "null", "*a", "&a x", "'q'", "\"\\u0000\"", "!!python/object:os.system",
                     "9" * 80, "[", "{", ":", "? ", "<<: *a", "\t", "\x1b", "\ufeff"]),
    lambda inner: st.builds(lambda k, v: f"{k}: {v}", inner, inner) | st.lists(inner, max_size=4).map(
        lambda items: "[" + ", ".join(items) + "]") | st.lists(inner, max_size=4).map("\n".join),
    max_leaves=30)


@QUICK
@given(st.one_of(yaml_text, st.text(max_size=300)))
def test_any_yaml_is_a_document_or_one_format_error(source):
    try:
        load_yaml_text(source, "f.yaml", Bounds(max_nodes=5000))
    except FormatError as exc:
        refusal = str(exc)
    else:
        refusal = ""
    assert "\n" not in refusal and len(refusal) < 400


# ---------------------------------------------------------------- JSON bounds and golden digits

@pytest.mark.parametrize("data, words", [
    (b"[" * 200_000, "nested deeper"), (b"[" * 40 + b"]" * 40, "nested deeper"),
    (b"1" * 5000, "5,000 characters"), (b'{"a": 1e' + b"9" * 100 + b"}", "characters"),
    (b"\xff", "not UTF-8"), (b"", "not JSON"), (b"x" * 100, "not JSON"),
])
def test_api_json_is_bounded(data, words):
    with pytest.raises(FormatError) as refused:
        load_json_bytes(data)
    assert words in str(refused.value)


@QUICK
@given(st.one_of(st.binary(max_size=200), st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=40).map(lambda d: json.dumps(d).encode())))
def test_any_json_is_a_document_or_one_format_error(data):
    try:
        load_json_bytes(data, bounds=Bounds(max_depth=8))
    except FormatError as exc:
        refusal = str(exc)
    else:
        refusal = ""
    assert "\n" not in refusal


def test_a_step_key_of_4400_digits_is_one_line_and_a_finding_in_a_batch(tmp_path):
    bad = '{"lm loss": {"start_step": 1, "end_step": 2, "step_interval": 1, "values": {"' + "1" * 4400 + '": 1.0}}}'
    with pytest.raises(FormatError) as refused:
        parse_golden(load_json_text(bad), path="g.json")
    assert "4,400 digits" in str(refused.value) and "'lm loss.values'" in str(refused.value)
    doc = training_doc([1, 2, 3])
    for case in ("a", "b"):
        write_megatron_case(tmp_path / "store", case, "TEST_TYPE: regular\n", {"golden_values_dev_cpu.json": doc})
        (tmp_path / "cand" / case).mkdir(parents=True)
        (tmp_path / "cand" / case / "golden_values_dev_cpu.json").write_text(bad if case == "a" else json.dumps(doc))
    judged = invoke("judge", str(tmp_path / "cand"), "--store", str(tmp_path / "store"), "--format", "json")
    assert judged.exit_code == 1, judged.output
    report = json.loads(judged.stdout)
    assert [r["case"] for r in report["results"]] == ["b"]          # the batch went on
    assert [f["kind"] for f in report["findings"]] == ["broken"] and "digits" in report["findings"][0]["message"]


def test_a_golden_of_200k_metrics_is_refused_not_compared_for_minutes(tmp_path):
    doc = {f"m{i}": 1.0 for i in range(200_000)}
    started = time.perf_counter()
    with pytest.raises(FormatError) as refused:
        parse_golden(doc, path="g.json")
    assert "200,000 entries" in str(refused.value) and time.perf_counter() - started < 1


@QUICK
@given(st.dictionaries(st.text(max_size=6), st.one_of(
    st.floats(), st.text(max_size=6), st.none(),
    st.fixed_dictionaries({"values": st.dictionaries(st.text("0123456789²", max_size=30),
                                                     st.floats() | st.text(max_size=4), max_size=4)},
                          optional={"start_step": st.integers() | st.text(max_size=5),
                                    "step_interval": st.integers()})),
    max_size=4))
def test_any_golden_document_is_read_or_one_format_error(doc):
    try:
        parse_golden(load_json_text(json.dumps(doc), "g.json"), path="g.json")
    except FormatError as exc:
        refusal = str(exc)
    else:
        refusal = ""
    assert "\n" not in refusal


# ---------------------------------------------------------------- 2. the token stays on its origin

@pytest.fixture
def servers():
    api, other = HostileServer(), HostileServer()
    yield api, other
    api.stop()
    other.stop()


def client(server: HostileServer, **limits) -> Api:
    return Api("GitHub", server.url, {"Authorization": f"Bearer {TOKEN}"}, limits=Limits(**limits))


def test_a_json_redirect_to_another_origin_is_refused_and_the_token_stays(servers):
    api, other = servers
    api.route("/x", lambda h: h.send(302, b"", {"Location": f"{other.url}/steal"}))
    other.json("/steal", {"ok": 1})
    with pytest.raises(FetchError, match="another origin"):
        client(api).json("/x")
    assert other.requests == [] and api.reached(TOKEN) == ["/x"]


def test_a_same_origin_redirect_keeps_the_token(servers):
    api, _ = servers
    api.route("/old", lambda h: h.send(301, b"", {"Location": "/new"}))
    api.json("/new", {"ok": 1})
    assert client(api).json("/old") == {"ok": 1} and api.reached(TOKEN) == ["/old", "/new"]


@pytest.mark.parametrize("target", ["{other}/page2", "file:///etc/passwd", "ftp://127.0.0.1/x",
                                    "https://example.invalid/page2", "//127.0.0.1:1/x", "data:application/json,[{{}}]"])
def test_a_link_next_off_the_origin_is_refused(servers, target):
    api, other = servers
    other.json("/page2", [{"id": 2}])
    api.json("/list", [{"id": 1}], headers={"Link": f'<{target.format(other=other.url)}>; rel="next"'})
    if target.startswith("data:"):  # its comma splits the Link header: no rel="next" is left to follow
        assert list(client(api).pages("/list")) == [{"id": 1}]
    else:
        with pytest.raises(FetchError, match="Link rel=\"next\""):
            list(client(api).pages("/list"))
    assert other.requests == []


def test_a_download_redirect_reaches_the_blob_host_without_the_token(servers, tmp_path):
    api, other = servers
    api.route("/zip", lambda h: h.send(302, b"", {"Location": f"{other.url}/blob?sig=1"}))
    other.route("/blob", lambda h: h.send(200, b"PK-bytes", {"Content-Type": "application/zip"}))
    client(api).download("/zip", tmp_path / "a.zip")
    assert (tmp_path / "a.zip").read_bytes() == b"PK-bytes"
    assert other.reached(TOKEN) == [] and [p for p, _ in other.requests] == ["/blob"]


def test_a_post_is_never_redirected(servers):
    api, other = servers
    api.route("/c", lambda h: h.send(307, b"", {"Location": f"{other.url}/c"}))
    with pytest.raises(FetchError, match="307"):
        client(api).send("POST", "/c", {"body": "x"})
    assert other.requests == []


def test_plain_http_only_to_loopback_when_the_api_is_loopback():
    with pytest.raises(FetchError, match="https"):
        Api("GitHub", "http://example.com", {})
    api = Api("GitHub", "https://api.example.com", {})
    with pytest.raises(FetchError, match="not https"):
        api._check_target("http://127.0.0.1:1/x", "a redirect", other_origin=True)


# ---------------------------------------------------------------- 3. one line for every broken answer

def trickle(handler, seconds: float = 0.3) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", "100000")
    handler.end_headers()
    for _ in range(100):
        handler.wfile.write(b" ")
        handler.wfile.flush()
        time.sleep(seconds)


@pytest.mark.parametrize("answer, limits, words", [
    (lambda h: h.send(200, b"[" * 200_000), {}, "nested deeper"),
    (lambda h: h.send(200, b'{"a": 1}', length=500), {}, "short of its Content-Length"),
    (lambda h: h.send(200, b"[]" + b" " * 5000), {"page_bytes": 1000}, "more than the 1,000 allowed"),
    (lambda h: h.send(200, b"[]", length=10**12), {"page_bytes": 1000}, "1,000,000,000,000 bytes"),
    (lambda h: h.send(200, {"message": "x"}), {}, "no a list"),
    (trickle, {"request_s": 1.5}, "deadline"),
    (lambda h: h.send(200, b"\x1b]0;pwned\x07\n::error::x"), {}, "unusable"),
])
def test_a_hostile_answer_is_one_fetch_error(servers, answer, limits, words):
    api, _ = servers
    api.route("/list", answer)
    started = time.perf_counter()
    with pytest.raises(FetchError) as refused:
        list(client(api, **limits).pages("/list"))
    assert time.perf_counter() - started < 10
    assert words in str(refused.value), refused.value


def test_the_fetch_deadline_spans_requests(servers):
    api, _ = servers
    api.route("/slow", lambda h: (time.sleep(0.4), h.send(200, [{}])))
    session = client(api, fetch_s=1.0)

    def ten_requests() -> None:
        for _ in range(10):
            session.json("/slow")

    with pytest.raises(FetchError, match="deadline"):
        ten_requests()


def test_a_download_over_its_cap_stops_while_it_arrives(servers, tmp_path):
    api, _ = servers

    def endless(h):
        h.send_response(200)
        h.end_headers()  # no Content-Length: the cap is checked on what arrives
        for _ in range(10_000):
            h.wfile.write(b"\0" * 65536)
    api.route("/big", endless)
    with pytest.raises(FetchError, match="more than the 1,048,576 bytes"):
        client(api, download_bytes=1 << 20).download("/big", tmp_path / "big.zip")
    assert (tmp_path / "big.zip").stat().st_size <= 1 << 20


@pytest.mark.parametrize("archive, words", [
    (patched_zip({"golden_values_dev_x.json": b"{}"}, flags=1), "RuntimeError"),  # "is encrypted"
    (patched_zip({"golden_values_dev_x.json": b"{}"}, method=9), "NotImplementedError"),
    (patched_zip({"golden_values_dev_x.json": b"{}" * 1000}, corrupt=True), "cannot be read"),
    (zip_bytes({"golden_values_dev_x.json": "{}"})[:-30], "not a readable"),
])
def test_a_damaged_zip_member_is_one_line(tmp_path, archive, words):
    path = tmp_path / "a.zip"
    path.write_bytes(archive)

    def read_every_member() -> None:
        with Archive(path, "artifact x") as opened:
            for name in opened.names:
                opened.read(name)

    with pytest.raises(FetchError, match=words):
        read_every_member()


def test_members_and_landed_bytes_are_capped(tmp_path):
    path = tmp_path / "many.zip"
    path.write_bytes(zip_bytes({f"f{i}.json": "{}" for i in range(50)}))
    with pytest.raises(FetchError, match="50 entries"):
        Archive(path, "artifact x", Limits(members=10))
    with Staging(tmp_path / "out", Limits(landed_bytes=1000)) as staging:
        from pathlib import PurePosixPath
        staging.add(PurePosixPath("a/1.json"), b"x" * 600, "job 1")
        with pytest.raises(FetchError, match="more than 1,000 bytes"):
            staging.add(PurePosixPath("a/2.json"), b"x" * 600, "job 2")
    assert not (tmp_path / "out").exists()


def test_limits_come_from_the_environment_and_refuse_nonsense():
    assert Limits.from_env({"GOLDEN_FETCH_PAGE_BYTES": "1234", "GOLDEN_FETCH_REQUEST_S": "2.5"}).page_bytes == 1234
    for bad in ("-1", "x", "9" * 50, "0"):
        with pytest.raises(FetchError, match=r"GOLDEN_FETCH_MEMBERS|members"):
            Limits.from_env({"GOLDEN_FETCH_MEMBERS": bad})


UNSET = dict.fromkeys(("GITHUB_TOKEN", "GH_TOKEN", "GITHUB_REPOSITORY", "GITHUB_API_URL", "GITLAB_TOKEN",
                       "RO_API_TOKEN", "CI_JOB_TOKEN", "CI_PROJECT_ID", "CI_API_V4_URL", "GITLAB_ENDPOINT"))


def test_fetch_of_hostile_names_and_members_is_one_line_or_a_note_never_a_command(fake_ci, tmp_path):
    repo, run = "o/r", 7
    fake_ci.github_run(repo, run)
    fake_ci.github_job(repo, run, "gpt/t1 - latest", "failure")
    fake_ci.github_artifact(repo, run, "logs-t1-7-x\n::error::pwned\x1b[31m @admin", zip_bytes({"a": "b"}))
    env = {**UNSET, "GITHUB_TOKEN": fake_ci.TOKEN, "GITHUB_REPOSITORY": repo, "GITHUB_API_URL": fake_ci.url}
    out = invoke("fetch", "github", str(run), "--out", str(tmp_path / "c"), env=env)
    assert out.exit_code == 0, out.output
    assert not any(printed.lstrip().startswith("::") for printed in out.output.splitlines())
    assert "\x1b" not in out.output
    # GitLab: an iteration folder of 5,000 digits is no iteration (a note), never a ValueError
    fake_ci.gitlab_pipeline("g/p", 9)
    fake_ci.gitlab_job("g/p", 9, "t1", "functional", "failed", zip_bytes({
        f"results/iteration={'9' * 5000}/r/assets/basic/t1/golden_values_dev_x.json": "{}"}))
    env = {**UNSET, "GITLAB_TOKEN": fake_ci.TOKEN, "CI_PROJECT_ID": "g/p", "CI_API_V4_URL": fake_ci.gitlab_url}
    out = invoke("fetch", "gitlab", "9", "--out", str(tmp_path / "g"), env=env)
    assert out.exit_code == 0 and "no results/iteration=* folder" in out.output, out.output


def test_fetch_of_a_zip_bomb_of_members_lands_nothing(fake_ci, tmp_path):
    repo, run = "o/r", 8
    fake_ci.github_run(repo, run)
    files = {f"golden_values_dev_x{i}.json": b"0" * (200 << 10) for i in range(30)}
    fake_ci.github_test(repo, run, "gpt", "t1", "failure", files)
    env = {**UNSET, "GITHUB_TOKEN": fake_ci.TOKEN, "GITHUB_REPOSITORY": repo, "GITHUB_API_URL": fake_ci.url,
           "GOLDEN_FETCH_LANDED_BYTES": str(1 << 20)}
    one_line_refusal(invoke("fetch", "github", str(run), "--out", str(tmp_path / "c"), env=env), "1,048,576 bytes")
    assert not (tmp_path / "c").exists()


# ---------------------------------------------------------------- 4. the PR comment

def comment(env: dict, report: Path) -> subprocess.CompletedProcess:
    script = REPO / ".github" / "actions" / "golden" / "pr_comment.py"
    return subprocess.run([sys.executable, str(script), str(report)], capture_output=True, text=True, timeout=60,
                          check=False, env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), **env})


@pytest.fixture
def report(tmp_path) -> Path:
    path = tmp_path / "report.md"
    path.write_text("## Golden check failed\n\ncase by @octocat and @NVIDIA/team\n")
    return path


@pytest.mark.parametrize("hostile", ["redirect", "link", "object", "null"])
def test_the_pr_comment_never_leaks_the_token_nor_fails_the_job(servers, report, hostile):
    api, other = servers
    thread = "/repos/o/r/issues/5/comments"
    if hostile == "redirect":
        api.route(thread, lambda h: h.send(302, b"", {"Location": f"{other.url}{thread}"}))
    elif hostile == "link":
        api.json(thread, [], headers={"Link": f'<{other.url}{thread}?page=2>; rel="next"'})
    else:
        api.json(thread, {"message": "x"} if hostile == "object" else [None])
    other.json(thread, [])
    done = comment({"GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": "o/r", "PR_NUMBER": "5", "GITHUB_API_URL": api.url},
                   report)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("::warning::the pull-request comment was not posted")
    assert "Traceback" not in done.stderr
    assert done.stdout.count("\n") == 1
    assert other.reached(TOKEN) == [] and other.requests == []


def test_the_pr_comment_edits_only_its_own_user_s_comment(fake_ci, report):
    repo = "o/r"
    fake_ci.comments[(repo, 5)] = [{"id": 99, "body": "<!-- golden-report -->\nmallory's",
                                    "user": {"login": "mallory"}}]
    env = {"GITHUB_TOKEN": fake_ci.TOKEN, "GITHUB_REPOSITORY": repo, "PR_NUMBER": "5", "GITHUB_API_URL": fake_ci.url}
    first = comment(env, report)
    assert first.returncode == 0 and "commented on" in first.stdout, first.stdout + first.stderr
    mallory, ours = fake_ci.comments[(repo, 5)]
    assert mallory["body"] == "<!-- golden-report -->\nmallory's"
    assert ours["user"]["login"] == "github-actions[bot]"
    assert "&#64;octocat" in ours["body"] and "@octocat" not in ours["body"] and "@NVIDIA" not in ours["body"]
    assert "updated the comment" in comment(env, report).stdout
    assert len(fake_ci.comments[(repo, 5)]) == 2 and mallory["body"].endswith("mallory's")
    fake_ci.token_user = "octo-bot"  # a personal token: GET /user says who it is
    assert "commented on" in comment(env, report).stdout
    assert [c["user"]["login"] for c in fake_ci.comments[(repo, 5)]] == ["mallory", "github-actions[bot]", "octo-bot"]


# ---------------------------------------------------------------- 5. sanitising

def test_the_sanitiser():
    hostile = "a\nb\x1b]8;;http://x\x07link\x1b]8;;\x07\x1b[2J\x9b31m\r::error::x\u202e @admin `x` [l](u)"
    assert line(hostile) == "a⏎blink⏎:\u2060:error:\u2060:x @admin `x` [l](u)"
    assert "\x1b" not in text(hostile) and not any(shown.startswith("::") for shown in text(hostile).splitlines())
    assert markdown("@admin [l](u) *b*") == "&#64;admin \\[l\\]\\(u\\) \\*b\\*"
    assert markdown_code("--a`b") == "``--a`b``"
    assert "::" not in line(":::x::::") and line("a:b") == "a:b"  # found by bench/fuzz_inputs.py


@QUICK
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=80))
def test_sanitised_text_holds_no_control_and_no_command(value):
    shown = line(value)
    assert "\n" not in shown and not any(ord(c) < 32 or 0x7f <= ord(c) <= 0x9f for c in shown)
    assert "::" not in shown and "::" not in text(value)
    assert "@" not in markdown(value).replace("&#64;", "") or not any(
        c.isalnum() for c in markdown(value).split("@", 1)[1][:1])


def test_history_prints_no_escape_from_an_approval_reason(tmp_path):
    from tests.builders import LOSS
    store = make_store(tmp_path / "cases")
    seed(store, "tiny", {"lm loss": LOSS})
    run = write_run(tmp_path / "runs", "tiny", "r1", {"lm loss": shifted(LOSS, 1.1)})
    approved = invoke("approve", str(run), "--store", str(store.root), "--approver", "me",
                      "--reason", "ok\x1b]0;owned\x07 ::warning::x")
    assert approved.exit_code == 0, approved.output
    shown = invoke("history", "tiny", "--store", str(store.root))
    assert shown.exit_code == 0 and "\x1b" not in shown.output and "\x07" not in shown.output
    assert "::warning::" not in shown.output and "reason: ok" in shown.output


def test_judge_markdown_escapes_finding_paths(tmp_path):
    doc = training_doc([1, 2])
    write_megatron_case(tmp_path / "store", "a", "TEST_TYPE: regular\n", {"golden_values_dev_cpu.json": doc})
    weird = tmp_path / "cand" / "x` [link](http://e) @admin" / "golden_values_dev_cpu.json"
    weird.parent.mkdir(parents=True)
    weird.write_text(json.dumps(doc))
    out = invoke("judge", str(tmp_path / "cand"), "--store", str(tmp_path / "store"), "--format", "md")
    assert out.exit_code == 1, out.output
    finding = next(row for row in out.stdout.splitlines() if row.startswith("| no-case"))  # the findings table
    assert "\\[link\\](http" in finding and "[link](" not in finding  # brackets escaped: no link
    assert "@admin" not in finding and "admin" in finding  # the mention is broken, the name kept
    assert finding.count(" | ") == 3  # the backquote and brackets never split or open a cell


# ---------------------------------------------------------------- 6. the approve race

def test_nothing_under_golden_store_is_written_before_the_lock_is_held(tmp_path):
    from filelock import FileLock

    from goldens.store import GoldenStore

    repo = git_repo(tmp_path / "repo")
    store = make_store(repo / "cases")
    commit_all(repo, "seed")
    backend = GoldenStore(store.root).backend
    assert backend.name == "git" and not backend.store_dir.exists()
    backend.store_dir.mkdir()
    holder = FileLock(str(backend.store_dir / "lock"))
    holder.acquire()
    entered = threading.Event()

    def writer():
        with backend.locked():
            entered.set()
    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(0.5)
    assert not entered.is_set()
    assert sorted(p.name for p in backend.store_dir.iterdir()) == ["lock"]  # no .gitignore, no temp file
    holder.release()
    thread.join(30)
    assert entered.is_set() and (backend.store_dir / ".gitignore").read_bytes() == b"*\n"


def test_parallel_approves_on_a_fresh_git_store(tmp_path):
    """Four approvals racing on a store with no .golden-store yet (bench/fuzz_inputs.py --races N
    runs such rounds many times)."""
    from tests.builders import LOSS
    from tests.test_approve_concurrency import race

    repo = git_repo(tmp_path / "repo")
    store = make_store(repo / "cases", ("c0", "c1", "c2", "c3"))
    for case in ("c0", "c1", "c2", "c3"):
        folder = store.root / case
        (folder / "golden_values_dev_cpu.json").write_text(json.dumps(training_doc([1, 2, 3])))
    commit_all(repo, "seed")
    assert not (store.root / ".golden-store").exists()
    runs = [write_run(tmp_path / "runs", case, f"{case}-r", {"lm loss": LOSS}) for case in ("c0", "c1", "c2", "c3")]
    results = race(tmp_path, [["approve", str(run), "--store", str(store.root), "--reason", "race", "--approver",
                               f"p{i}", "--env", "dev", "--platform", "cpu"] for i, run in enumerate(runs)])
    assert [r.returncode for r in results] == [0] * 4, [r.stderr for r in results]


# ---------------------------------------------------------------- 7. the action's inputs

def test_the_action_keeps_outputs_and_options_apart():
    action = (REPO / ".github" / "actions" / "golden" / "action.yml").read_text()
    assert 'args+=(-- "${paths[@]}")' in action and 'golden "${args[@]}" -- "$RUN_ID"' in action
    assert "*$'\\n'*|*$'\\r'*)" in action


def test_the_action_refuses_a_line_break_in_out_and_takes_dash_paths(tmp_path, fake_ci):
    from tests.test_ci_action import candidates, megatron_store, run_action, tools_path  # noqa: F401

    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")])
    megatron_store(tmp_path)
    candidates(tmp_path, drifted=False)
    bad = run_action(tmp_path, fake_ci, path, candidates="candidates", store="store", out="rep\nverdict=pass")
    judge = bad.step("Judge the candidates")
    assert judge["returncode"] == 2 and not bad.outputs()["verdict"], bad.outputs()
    (tmp_path / "--help").mkdir()
    os.rename(tmp_path / "candidates", tmp_path / "--help" / "candidates")
    dashed = run_action(tmp_path, fake_ci, path, candidates="--help/candidates", store="store")
    assert dashed.step("Judge the candidates")["outputs"]["verdict"] == "pass", dashed.step("Judge the candidates")
