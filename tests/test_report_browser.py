"""The HTML report in a real browser: headless Chromium loads it without console messages, the
DOM holds one SVG per metric and the hostile name as text, and a screenshot shows the plots.

Chromium logs every console message (errors, CSP violations, uncaught exceptions) as a
``:CONSOLE`` line on stderr with ``--enable-logging=stderr --v=0``; the report has no scripts,
so any such line is a fault. A control page proves the detector sees console errors.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from reports.document import CaseEntry, Report
from reports.html import result_html
from tests.builders import HOSTILE, result

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian package 'chromium'; .ci/run installs it)")

TAB_BLUE, TAB_RED = (31, 119, 180), (214, 39, 40)  # matplotlib's actual line and failing-step marker
BAND_GREEN = tuple(round(0.82 * 255 + 0.18 * c) for c in (44, 160, 44))  # tab:green at alpha 0.18 on white


def chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
               *args, page.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


def console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def count_near(pixels: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 12) -> int:
    return int((np.abs(pixels[..., :3].astype(int) - np.array(rgb)).max(axis=-1) <= tolerance).sum())


@pytest.fixture
def report_page(tmp_path: Path) -> Path:
    page = tmp_path / "report.html"
    page.write_text(result_html(Report.of(result(fail=True), result(HOSTILE, metrics=(HOSTILE, "num-zeros")))),
                    encoding="utf-8")
    return page


def test_the_detector_sees_console_errors(tmp_path: Path):
    control = tmp_path / "control.html"
    control.write_text("<!DOCTYPE html><p>x</p><script>console.error('detector-check'); missing();</script>")
    done = chromium(control, tmp_path / "profile", "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = console_lines(done.stderr)
    assert any("detector-check" in line for line in lines)
    assert any("Uncaught ReferenceError" in line for line in lines)


def test_report_loads_without_console_messages_and_the_dom_holds_every_plot(report_page: Path, tmp_path: Path):
    done = chromium(report_page, tmp_path / "profile", "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    assert console_lines(done.stderr) == []
    dom = done.stdout
    assert dom.count("<figure") == 6  # per case: 2 metrics + 1 resume metric
    assert dom.count("<svg") == 6
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom and "<script" not in dom


def test_screenshot_shows_the_plots(report_page: Path, tmp_path: Path):
    from matplotlib.image import imread

    shot = tmp_path / "shot.png"
    done = chromium(report_page, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2000",
                    "--hide-scrollbars")
    assert done.returncode == 0, done.stderr[-2000:]
    assert console_lines(done.stderr) == []
    pixels = (imread(shot) * 255).round().astype(np.uint8)
    assert pixels.shape[:2] == (2000, 1280)
    colours = np.unique(pixels[..., :3].reshape(-1, 3), axis=0)
    assert len(colours) > 200  # text, tables and antialiased plots, not a blank page
    assert count_near(pixels, TAB_BLUE) > 100  # the actual series and residual lines
    assert count_near(pixels, TAB_RED, tolerance=4) > 5  # the failing step's marker (not the red badges)
    assert count_near(pixels, BAND_GREEN, tolerance=4) > 5000  # the tolerance band


# ---------------------------------------------------------------- the page fits a 1,280 px window

# Test-only: the report's policy forbids scripts, so the copy measured here swaps it for one that
# allows this inline script, which writes what the browser laid out into an attribute of <body>.
MEASURE = """<script>
const tables = [...document.querySelectorAll('table')];
const scrollers = [...document.querySelectorAll('.scroll')];
document.body.setAttribute('data-measured', JSON.stringify({
  page: document.documentElement.scrollWidth, window: window.innerWidth, tables: tables.length,
  right: Math.max(0, ...tables.map(t => Math.ceil(t.getBoundingClientRect().right))),
  hidden: Math.max(0, ...scrollers.map(s => s.scrollWidth - s.clientWidth))}));
</script>"""


WINDOW = 1280 - 16


def measured_at_1280(markup: str, tmp_path: Path) -> dict:
    import html as html_module
    import json
    import re

    page = tmp_path / "measured.html"
    markup = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>',
                    "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
                    "style-src 'unsafe-inline'; img-src data:; script-src 'unsafe-inline'\">", markup)
    page.write_text(markup.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    # 1,280 px less a 16 px vertical scrollbar: what a desktop browser leaves for the page
    done = chromium(page, tmp_path / "profile-measure", "--dump-dom", f"--window-size={WINDOW},900",
                    "--hide-scrollbars")
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r'data-measured="([^"]*)"', done.stdout)
    assert found, done.stdout[-2000:]
    return json.loads(html_module.unescape(found.group(1)))


def wide_report() -> Report:
    """Real-sized names and numbers: a long Megatron case name, values at full precision with 17
    significant digits, a hostile metric name, long rules and explanations."""
    from dataclasses import replace

    long_case = "gpt3_mcore_te_tp2_pp2_ep4_etp1_resume_torch_dist_dist_optimizer_overlap_grad_reduce_param_gather"
    base = result(long_case, fail=True, metrics=("lm loss", "mem-max-allocated-bytes", HOSTILE))
    wide = replace(base.phases[0].metrics[1], golden_value=60720852992.0, actual_value=66792938291.200005,
                   delta=6072085299.200005, delta_pct=10.000000000000009, mean_rel_diff=-1.2345678901234567e-05,
                   worst_step=100000, failing_steps=100000, total_steps=1000000, allowed_failing_steps=50)
    phase = replace(base.phases[0], metrics=(base.phases[0].metrics[0], wide, base.phases[0].metrics[2]))
    return Report((CaseEntry(replace(base, phases=(phase,), candidate=f"candidates/gpt/{long_case}/"
                                     "golden_values_dev_dgx_h100.json"),
                             candidate_provenance={"versions": {"megatron-core": "0.16.1+" + "f" * 40}}),),
                  store="/builds/nvidia/megatron-lm/tests/functional_tests/test_cases")


def test_the_report_fits_a_1280_px_window(tmp_path: Path):
    measured = measured_at_1280(result_html(wide_report()), tmp_path)
    assert measured["window"] == WINDOW and measured["tables"] >= 4
    assert measured["page"] <= WINDOW  # no horizontal scrolling of the page
    assert measured["right"] <= WINDOW  # no table reaches past the window
    assert measured["hidden"] == 0  # and none scrolls inside its box either


def test_the_change_report_fits_a_1280_px_window(tmp_path: Path):
    from reports.changes import compare_revisions
    from reports.html import changes_html
    from tests.builders import golden_set

    metrics = ["lm loss", "num-zeros", "iteration-time", "mem-allocated-bytes", "mem-max-allocated-bytes",
               "mtp_1 loss", "mtp_2 loss", "total loss"]
    name = "gpt/gpt3_mcore_te_tp2_pp2_ep4_etp1_resume_torch_dist_dist_optimizer/golden_values_dev_dgx_h100.json"
    base = {name: golden_set({m: [1.0, 2.0, 3.0] for m in metrics})}
    head = {name: golden_set({m: [1.0, 2.0 + 1e-7 * i, 3.5] for i, m in enumerate(metrics)})}
    changes = compare_revisions(base, head, base_label="main", head_label="pr")
    measured = measured_at_1280(changes_html(changes), tmp_path)
    assert measured["page"] <= WINDOW and measured["right"] <= WINDOW and measured["hidden"] == 0


def test_the_measurement_sees_a_table_wider_than_the_window(tmp_path: Path):
    markup = result_html(Report.of(result())).replace(
        "</body>", '<table><tr><td style="white-space: nowrap">' + "9" * 400 + "</td></tr></table></body>")
    measured = measured_at_1280(markup, tmp_path)
    assert measured["page"] > WINDOW and measured["right"] > WINDOW
