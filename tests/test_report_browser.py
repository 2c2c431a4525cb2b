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

from reports.document import Report
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
