"""PNG of the heatmap: the static HTML map (no controls, no tiles) screenshotted by
headless Chromium (``reports.chromium``: offline, sandboxed, time-limited)."""

from __future__ import annotations

from reports import chromium
from reports import html as html_report
from reports.build import Report

#: Image size in CSS pixels.
WIDTH, HEIGHT = 1400, 1000


def render(
    report: Report,
    lang: str = "zh",
    width: int = WIDTH,
    height: int = HEIGHT,
    settings=None,
    deadline: float | None = None,
) -> bytes:
    """PNG bytes of the report's map at ``width`` x ``height``.

    ``settings`` and ``deadline``: see :func:`reports.chromium.run`.
    """
    page = html_report.render(report, lang=lang, static=True)
    return chromium.run(page, "png", width, height, settings=settings, deadline=deadline)
