"""Heatmap reports: one :class:`reports.build.Report` per (node, period, metric), written
as interactive HTML, PNG, PDF or data (GeoJSON, CSV, GeoParquet).

Typical use::

    from reports import build, write
    report = build.build(store, settings, "r-440300", build.Period("2026-11-20"), "scans")
    write(report, "html", "shenzhen.html")
"""

from __future__ import annotations

from pathlib import Path

#: Every export format, in the order the command line and the dashboard offer them.
FORMATS = ("html", "png", "pdf", "geojson", "csv", "parquet")
#: File suffix and MIME type of each format.
SUFFIX = {
    "html": ".html",
    "png": ".png",
    "pdf": ".pdf",
    "geojson": ".geojson",
    "csv": ".csv",
    "parquet": ".parquet",
}
MIME = {
    "html": "text/html",
    "png": "image/png",
    "pdf": "application/pdf",
    "geojson": "application/geo+json",
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
}


def render(report, fmt: str, lang: str = "zh", settings=None) -> bytes:
    """The report in format ``fmt`` as bytes (see :data:`FORMATS`).

    ``settings`` (``config.Settings``; default: from the environment) holds the limits of
    the PNG and PDF renderer (``render_timeout_seconds``, ``render_user``...). A render
    that fails or takes too long raises ``reports.chromium.ChromiumError``, a
    ``reports.build.ReportError`` with a message for the user.
    """
    if fmt == "html":
        from reports import html

        return html.render(report, lang=lang).encode("utf-8")
    if fmt == "png":
        from reports import png

        return png.render(report, lang=lang, settings=settings)
    if fmt == "pdf":
        from reports import pdf

        return pdf.render(report, lang=lang, settings=settings)
    if fmt in ("geojson", "csv", "parquet"):
        from reports import data

        return data.render(report, fmt)
    raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")


def write(report, fmt: str, path, lang: str = "zh", settings=None) -> Path:
    """Write the report in format ``fmt`` to ``path`` (folders created); returns the path."""
    out = Path(path)
    blob = render(report, fmt, lang=lang, settings=settings)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(blob)
    return out
