"""The only H3 wrapper in EMAP.

Inside the program a cell is a ``uint64``; it becomes a hex string only at the UI and
export edge (``to_str`` / ``from_str``). Bulk work is vectorised. Points are indexed by
:mod:`geo._h3_points` (indexing is the largest single cost of an import): numpy finds
each point's face and lattice hexagon, h3ronpy indexes one point per distinct hexagon,
and every point near a hexagon or face edge, or otherwise in floating-point doubt, is
indexed by h3ronpy itself, so the cells are exactly h3ronpy's, at a fraction of its CPU
on clustered GPS pings. Everything else uses polars-h3. The ``h3`` package is the
reference the tests compare against.
"""

from __future__ import annotations

import h3
import numpy as np
import polars as pl
import polars_h3 as plh3
from h3.api import basic_int as h3i

from geo import _h3_points

#: Resolution stored for every ping and parcel event.
BASE_RES = 9

_RES_SHIFT = np.uint64(52)
_RES_MASK = np.uint64(0xF) << _RES_SHIFT


def latlng_to_cells(lat, lng, res: int = BASE_RES) -> np.ndarray:
    """Cells of points, vectorised.

    Parameters
    ----------
    lat, lng : array-like of float
        WGS-84 degrees, finite (validation refuses the rest before indexing).
    res : int
        H3 resolution.

    Returns
    -------
    numpy.ndarray of uint64

    Raises
    ------
    ValueError
        A coordinate is not finite.

    Examples
    --------
    >>> int(latlng_to_cells([22.54], [113.93])[0]) == h3.str_to_int(h3.latlng_to_cell(22.54, 113.93, 9))
    True
    """
    return cells_of(np.asarray(lat, dtype=np.float64), np.asarray(lng, dtype=np.float64), res).to_numpy()


def cells_of(lat, lng, res: int = BASE_RES) -> pl.Series:
    """Cells of points as a polars ``UInt64`` series named ``cell``.

    ``lat`` and ``lng`` are numpy arrays or polars series of finite degrees; neither is
    copied when it is already float64.

    Examples
    --------
    >>> cells_of(np.array([22.5431, 31.2304]), np.array([114.0579, 121.4737])).to_list()
    [618138610828050431, 617848112076292095]
    """
    if isinstance(lat, pl.Series):
        lat, lng = lat.cast(pl.Float64).to_numpy(), lng.cast(pl.Float64).to_numpy()
    if len(lat) == 0:
        return pl.Series("cell", [], dtype=pl.UInt64)
    lat, lng = np.asarray(lat, dtype=np.float64), np.asarray(lng, dtype=np.float64)
    return pl.Series("cell", _h3_points.latlng_to_cells(lat, lng, res), dtype=pl.UInt64)


def cell_expr(lat: str = "lat", lng: str = "lng", res: int = BASE_RES) -> pl.Expr:
    """A polars expression giving the cell of each row (for use inside ``with_columns``).

    Examples
    --------
    >>> pl.DataFrame({"lat": [22.5431], "lng": [114.0579]}).select(cell=cell_expr())["cell"].to_list()
    [618138610828050431]
    """
    return plh3.latlng_to_cell(lat, lng, res)


def resolution(cells) -> np.ndarray:
    """Resolution of each cell, read from its bits.

    Examples
    --------
    >>> c = latlng_to_cells([22.5431], [114.0579])
    >>> resolution(c).tolist(), resolution(to_parent(c, 7)).tolist()
    ([9], [7])
    """
    c = np.asarray(cells, dtype=np.uint64)
    return ((c & _RES_MASK) >> _RES_SHIFT).astype(np.int64)


def to_parent(cells, res: int) -> np.ndarray:
    """Parent of each cell at a coarser resolution, by bit operations.

    An H3 index holds its resolution in bits 52-55 and one 3-bit digit per resolution
    below; the parent sets the resolution field and fills the finer digits with 7.
    Cells already at ``res`` come back unchanged.

    Examples
    --------
    >>> c = latlng_to_cells([31.23], [121.47], 9)
    >>> hex(int(to_parent(c, 7)[0]))[2:] == h3.cell_to_parent(hex(int(c[0]))[2:], 7)
    True
    """
    c = np.asarray(cells, dtype=np.uint64)
    if not 0 <= res <= 15:
        raise ValueError(f"resolution must be 0..15, got {res}")
    if c.size and int(resolution(c[:1])[0]) < res:
        raise ValueError(f"cannot take a parent at res {res} of cells at res {resolution(c[:1])[0]}")
    unused = np.uint64((1 << (3 * (15 - res))) - 1)
    return (c & ~_RES_MASK) | (np.uint64(res) << _RES_SHIFT) | unused


def parent_sql(column: str, res: int) -> str:
    """The same bit operation as :func:`to_parent`, as a DuckDB SQL expression.

    Lets the store roll up without moving cells into Python.

    Examples
    --------
    >>> parent_sql("cell", 7)
    '((cell & 18379190079298994175::UBIGINT) | (31525197391593472::UBIGINT) | (16777215::UBIGINT))'
    """
    if not 0 <= res <= 15:
        raise ValueError(f"resolution must be 0..15, got {res}")
    unused = (1 << (3 * (15 - res))) - 1
    clear = (1 << 64) - 1 - (0xF << 52)
    return f"(({column} & {clear}::UBIGINT) | ({res << 52}::UBIGINT) | ({unused}::UBIGINT))"


#: A base-resolution cell's variable part: base cell (7 bits) and nine digits (27 bits),
#: in bits 18..51. The bits above hold the fixed mode and resolution, the bits below six
#: unused digits (all 7), so these 34 bits say everything about a res-9 cell.
BASE_CELL_BITS = 34
_BASE_LOW_BITS = 3 * (15 - BASE_RES)
_BASE_FIXED = (1 << 59) | (BASE_RES << 52) | ((1 << _BASE_LOW_BITS) - 1)


def base_bits_expr(column: str = "cell") -> pl.Expr:
    """The :data:`BASE_CELL_BITS` variable bits of base-resolution cells (Int64), e.g.
    to pack a cell with an hour into one integer key."""
    return ((pl.col(column) // (1 << _BASE_LOW_BITS)) % (1 << BASE_CELL_BITS)).cast(pl.Int64)


def from_base_bits_expr(bits: pl.Expr) -> pl.Expr:
    """Base-resolution cells (UInt64) back from :func:`base_bits_expr`.

    Examples
    --------
    >>> f = pl.DataFrame({"cell": latlng_to_cells([22.5431], [114.0579])})
    >>> bits = f.select(base_bits_expr())["cell"]
    >>> bits.to_list(), bits.to_frame().select(from_base_bits_expr(pl.col("cell")))["cell"].to_list()
    ([4369590294], [618138610828050431])
    """
    return (bits.cast(pl.UInt64) * (1 << _BASE_LOW_BITS) + _BASE_FIXED).cast(pl.UInt64)


def to_str(cells) -> list[str]:
    """Hex strings for the UI and exports.

    Examples
    --------
    >>> to_str(latlng_to_cells([22.5431], [114.0579]))
    ['89411caa05bffff']
    """
    return [format(int(c), "x") for c in np.asarray(cells, dtype=np.uint64)]


def from_str(ids) -> np.ndarray:
    """Cells from hex strings; raises ``ValueError`` naming the first bad id.

    Examples
    --------
    >>> from_str(["89411caa05bffff"]).tolist()
    [618138610828050431]
    >>> from_str(["89411caa05bffff", "zz"])
    Traceback (most recent call last):
    ...
    ValueError: not an H3 cell id: 'zz'
    """
    out = np.empty(len(ids), dtype=np.uint64)
    for i, s in enumerate(ids):
        try:
            v = int(s, 16)
        except (TypeError, ValueError):
            raise ValueError(f"not an H3 cell id: {s!r}") from None
        if not h3i.is_valid_cell(v):
            raise ValueError(f"not an H3 cell id: {s!r}")
        out[i] = v
    return out


def centers(cells) -> tuple[np.ndarray, np.ndarray]:
    """Centre latitude and longitude of each cell.

    Examples
    --------
    >>> lat, lng = centers(from_str(["89411caa05bffff"]))
    >>> round(float(lat[0]), 4), round(float(lng[0]), 4)
    (22.5438, 114.0589)
    """
    c = np.asarray(cells, dtype=np.uint64)
    if c.size == 0:
        return np.empty(0), np.empty(0)
    s = pl.Series("c", c)
    f = pl.DataFrame({"c": s}).select(plh3.cell_to_lat("c").alias("lat"), plh3.cell_to_lng("c").alias("lng"))
    return f["lat"].to_numpy(), f["lng"].to_numpy()


def boundaries(cells) -> list[list[tuple[float, float]]]:
    """Boundary of each cell as a closed ring of (lng, lat) pairs (GeoJSON order).

    Examples
    --------
    >>> ring = boundaries(from_str(["89411caa05bffff"]))[0]
    >>> len(ring), ring[0] == ring[-1]  # six corners, the first repeated
    (7, True)
    """
    c = np.asarray(cells, dtype=np.uint64)
    if c.size == 0:
        return []
    rings = pl.DataFrame({"c": c}).select(plh3.cell_to_boundary("c").alias("b"))["b"]
    sizes = rings.list.len().to_numpy()
    points = rings.explode()
    lat = points.list.get(0).to_numpy()
    lng = points.list.get(1).to_numpy()
    pairs = list(zip(lng.tolist(), lat.tolist(), strict=True))
    out, start = [], 0
    for n in sizes.tolist():  # pentagons have 5 vertices, distorted cells up to 10
        ring = pairs[start : start + n]
        ring.append(ring[0])
        out.append(ring)
        start += n
    return out


def neighbours(cells) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i, j) of indices into ``cells`` whose cells touch (share an edge).

    Used to join over-threshold cells into connected zones.

    Examples
    --------
    >>> c = from_str(["89411caa05bffff"])[0]
    >>> ring = [h3.str_to_int(n) for n in h3.grid_ring("89411caa05bffff", 1)]
    >>> i, j = neighbours([c, ring[0], ring[3]])  # a cell and two opposite neighbours
    >>> list(zip(i.tolist(), j.tolist()))
    [(0, 1), (0, 2), (1, 0), (2, 0)]
    """
    c = np.asarray(cells, dtype=np.uint64)
    if c.size == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    frame = pl.DataFrame({"c": c, "i": np.arange(c.size, dtype=np.int64)})
    ring = frame.select("i", plh3.grid_ring("c", 1).alias("n")).explode("n")
    pairs = ring.join(frame.rename({"c": "n", "i": "j"}), on="n", how="inner").sort("i", "j")
    return pairs["i"].to_numpy(), pairs["j"].to_numpy()


def area_km2(res: int) -> float:
    """Average cell area at a resolution.

    Examples
    --------
    >>> round(area_km2(9), 3), round(area_km2(7), 2)
    (0.105, 5.16)
    """
    return h3.average_hexagon_area(res, unit="km^2")
