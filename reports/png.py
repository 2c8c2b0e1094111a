"""PNG of the heatmap: the static HTML map (no controls, no tiles) screenshotted by
headless Chromium."""

from __future__ import annotations

from reports import chromium
from reports import html as html_report
from reports.build import Report

#: Image size in CSS pixels.
WIDTH, HEIGHT = 1400, 1000


def render(report: Report, lang: str = "zh", width: int = WIDTH, height: int = HEIGHT) -> bytes:
    """PNG bytes of the report's map at ``width`` x ``height``."""
    page = html_report.render(report, lang=lang, static=True)
    return chromium.run(page, "map.png", [f"--window-size={width},{height}", "--screenshot={out}"])
