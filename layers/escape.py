"""Names and ids from data as inert text, one function per output context.

A name imported from a file (an outlet called ``</script><iframe ...>``, a courier id
``=HYPERLINK(...)``) reaches HTML pages, Leaflet tooltips written into inline scripts,
plotly hover labels, CSS strings and CSV cells. Each context has its own rules, so each
has its own function here, and every builder of layers and reports calls these rather
than escaping on its own:

==================  ===========================================================
:func:`html`        HTML text and quoted attribute values (also SVG text)
:func:`tooltip`     HTML that folium writes into a JavaScript template literal
:func:`script_json` a value as JSON inside an inline ``<script>``
:func:`plotly`      plotly hover templates, hover text and custom data shown
:func:`css_string`  the inside of a double-quoted CSS string
:func:`csv_cell`    a spreadsheet cell (formula injection)
==================  ===========================================================
"""

from __future__ import annotations

import html as _html
import json

#: First characters that make a spreadsheet read a cell as a formula (or split it).
CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _text(value) -> str:
    return "" if value is None else str(value)


def html(value) -> str:
    """``value`` as HTML text, safe in element content and quoted attributes.

    Examples
    --------
    >>> html('<img src=x onerror="alert(1)">')
    '&lt;img src=x onerror=&quot;alert(1)&quot;&gt;'
    >>> html(None)
    ''
    """
    return _html.escape(_text(value), quote=True)


def tooltip(value) -> str:
    """``value`` as HTML that folium places inside a JavaScript template literal.

    folium's ``Tooltip`` writes its text between backquotes in the page's script, so
    besides the HTML escape the characters that end the literal or start a
    substitution (`````, ``$``, ``\\``) become character references, which the tooltip's
    HTML shows as the same characters.

    Examples
    --------
    >>> tooltip("`${alert(1)}`</script>")
    '&#96;&#36;{alert(1)}&#96;&lt;/script&gt;'
    """
    return html(value).replace("\\", "&#92;").replace("`", "&#96;").replace("$", "&#36;")


_SCRIPT_JSON = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "'": "\\u0027",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def script_json(value, **dumps) -> str:
    """``value`` as JSON that can sit inside an inline ``<script>`` element.

    ``<``, ``>``, ``&`` and ``'`` are written as ``\\u`` escapes, so neither
    ``</script>`` nor ``<!--`` can end or bend the element, and the text is also a
    valid JavaScript expression (U+2028/2029 escaped).

    Examples
    --------
    >>> script_json({"name": "</script><b>"})
    '{"name": "\\\\u003c/script\\\\u003e\\\\u003cb\\\\u003e"}'
    """
    text = json.dumps(value, ensure_ascii=False, **dumps)
    return "".join(_SCRIPT_JSON.get(ch, ch) for ch in text) if any(c in text for c in _SCRIPT_JSON) else text


def plotly(value) -> str:
    """``value`` as text in a plotly label, hover template or hover text.

    plotly reads a subset of HTML in these (``<a href>``, ``<b>``, ``<span style>``,
    ``<br>``) and decodes ``&amp;``, ``&lt;``, ``&gt;`` and numeric references, so those
    three are escaped; quotes stay as they are (plotly does not know ``&quot;``).

    Examples
    --------
    >>> plotly('<a href="javascript:alert(1)">x</a> & co')
    '&lt;a href="javascript:alert(1)"&gt;x&lt;/a&gt; &amp; co'
    """
    return _html.escape(_text(value), quote=False)


def css_string(value) -> str:
    """``value`` as the inside of a double-quoted CSS string.

    Every character other than letters, digits, space and a few marks is written as a
    CSS escape (``\\3c `` for ``<``), so the string can neither end nor close the
    ``<style>`` element that holds it.

    Examples
    --------
    >>> css_string('a"</style>')
    'a\\\\22 \\\\3c \\\\2f style\\\\3e '
    """
    out = []
    for ch in _text(value):
        if ch.isalnum() or ch in " .,·:-_()":
            out.append(ch)
        else:
            out.append(f"\\{ord(ch):x} ")
    return "".join(out)


def csv_cell(value):
    """A CSV cell that a spreadsheet shows as text, never runs as a formula.

    Text starting with one of :data:`CSV_FORMULA_START` gets a leading single quote
    (the OWASP advice); other values, numbers included, are returned unchanged.

    Examples
    --------
    >>> csv_cell("=HYPERLINK(\\"http://x\\")")
    '\\'=HYPERLINK("http://x")'
    >>> csv_cell("-12"), csv_cell(-12)
    ("'-12", -12)
    """
    if isinstance(value, str) and value.startswith(CSV_FORMULA_START):
        return "'" + value
    return value


def csv_frame(frame):
    """A polars frame with :func:`csv_cell` applied to every text column."""
    import polars as pl

    text = [c for c, t in frame.schema.items() if t == pl.String]
    if not text:
        return frame
    start = "^[=+\\-@\t\r]"
    return frame.with_columns(
        pl.when(pl.col(c).str.contains(start)).then(pl.lit("'") + pl.col(c)).otherwise(pl.col(c)).alias(c)
        for c in text
    )
