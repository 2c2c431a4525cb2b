"""Did you mean …? for --env / --platform: a close miss of a name the store knows is refused where it
would start a new target (diff/check stage a candidate, approve writes a golden); a new one on purpose
passes with --new-env / --new-platform; a platform one character apart (dgx_h200) is a new platform."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from goldens.cli import app
from goldens.store.target_names import close_match, edits
from tests.builders import LOSS, ZEROS, make_store, seed, write_run


def test_edits_count_a_swap_as_one_and_a_change_as_two_without_substitutions():
    assert edits("dve", "dev") == 1 and edits("dev", "lts") == 3 and edits("", "dev") == 3
    assert edits("dgx_h200", "dgx_h100") == 1 and edits("dgx_h200", "dgx_h100", substitutions=False) == 2


@pytest.mark.parametrize("value, known, kind, expected", [
    ("dve", {"dev", "lts"}, "env", "dev"),
    ("de", {"dev", "lts"}, "env", "dev"),
    ("lst", {"dev", "lts"}, "env", "lts"),
    ("dev", {"dev", "lts"}, "env", None),          # known: nothing to suggest
    ("nightly", {"dev", "lts"}, "env", None),      # far from every known env: a new env
    ("dgx_h200", {"dgx_h100", "cpu"}, "platform", None),   # one changed character: a new platform
    ("dgx_a100", {"dgx_h100"}, "platform", None),
    ("dgx_h10", {"dgx_h100"}, "platform", "dgx_h100"),     # dropped
    ("dgx_hh100", {"dgx_h100"}, "platform", "dgx_h100"),   # added
    ("dgx_1h00", {"dgx_h100"}, "platform", "dgx_h100"),    # swapped
    ("DGX-H100", {"dgx_h100"}, "platform", "dgx_h100"),    # case and separator
    ("cpu", {"dgx_h100"}, "platform", None),
])
def test_close_match(value, known, kind, expected):
    assert close_match(value, known, kind) == expected


@pytest.fixture
def store(tmp_path):
    made = make_store(tmp_path / "cases", ("tiny",))
    seed(made, "tiny", {"lm loss": LOSS, "num-zeros": ZEROS}, platform="dgx_h100", fingerprint="fp-1")
    return made


def invoke(*args):
    return CliRunner().invoke(app, list(args))


def test_diff_and_approve_refuse_a_typo_of_a_known_env_and_stage_or_write_nothing(store, tmp_path, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.chdir(tmp_path)
    run = write_run(tmp_path / "runs", "tiny", "r1", {"lm loss": LOSS, "num-zeros": ZEROS}, fingerprint="fp-1")
    s = str(store.root)
    out = invoke("diff", str(run), "--store", s, "--env", "dve", "--platform", "dgx_h100")
    assert out.exit_code == 2 and "did you mean 'dev'?" in out.stderr and "--new-env" in out.stderr
    assert invoke("pending", "--store", s).stdout.strip() == "no pending candidates"  # nothing staged
    out = invoke("approve", str(run), "--store", s, "--env", "dve", "--platform", "dgx_h100", "--reason", "r")
    assert out.exit_code == 2 and "did you mean 'dev'?" in out.stderr
    assert sorted(p.name for p in (store.root / "tiny").glob("golden_values_*")) == ["golden_values_dev_dgx_h100.json"]
    typo = invoke("diff", str(run), "--store", s, "--env", "dev", "--platform", "dgx_h10")
    assert typo.exit_code == 2 and "did you mean 'dgx_h100'?" in typo.stderr
    # on purpose: a new env is staged; a new platform one character apart needs no flag
    meant = invoke("diff", str(run), "--store", s, "--env", "dve", "--platform", "dgx_h100", "--new-env")
    assert meant.exit_code == 1 and "no golden" in meant.stderr and "staged" in meant.stderr
    h200 = invoke("diff", str(run), "--store", s, "--env", "dev", "--platform", "dgx_h200")
    assert h200.exit_code == 1 and "no golden" in h200.stderr and "did you mean" not in h200.stderr
    # a known target is judged as ever
    assert invoke("diff", str(run), "--store", s, "--env", "dev", "--platform", "dgx_h100").exit_code == 0
