"""Point -> H3 cell for many points: numpy finds the lattice hexagon, h3ronpy names it.

H3 indexes a point in two steps. Geometry: the icosahedron face whose centre is
nearest, the gnomonic projection of the point onto that face's plane, and the hexagon
containing the projection in a regular lattice of that plane (origin at the face
centre, spacing shrinking by sqrt 7 per resolution, odd resolutions turned by the
aperture-7 angle). Bookkeeping: a function of (face, lattice point, resolution) alone
gives the index. Here numpy does the geometry for chunks of points and packs (face,
lattice point) into one int64 *key*; h3ronpy indexes one point per distinct key, and
every point with that key gets its cell. GPS pings are clustered (10 M pings of the
demo fall in about 54,000 res-9 cells), so h3ronpy sees few points. Where points are
spread out, a cell each, grouping cannot pay, and h3ronpy indexes them (:data:`DENSE`).

Why this is exact, not approximately right: a point gets a key only if it is *safe*,
i.e. its projection lies at least :data:`MARGIN` lattice units inside both its hexagon
and its face's triangle (the triangle's edges are where another face centre becomes the
nearer), and it is not so near the face centre that H3's arccos is ill-conditioned
(:func:`rho_min`). H3's floating-point projection of a safe point differs from the
exact one, and numpy's from the exact one, by far less than the margin, so H3 puts the
point on the same face and in the same hexagon as numpy does, and so in the cell the
bookkeeping gives that pair. Two safe points with one key are therefore in one H3 cell,
the cell h3ronpy returns for either of them. Every other point (and input that is not
finite, or out of range, which h3ronpy refuses or handles as before) goes to h3ronpy
directly.

No table is copied from H3's source: :func:`icosahedron` recovers the face centres, the
lattice axes and the res-0 spacing from the public ``h3`` API on first use.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import h3
import numpy as np
from h3ronpy.vector import coordinates_to_cells

#: Least distance, in lattice units (centre spacing at the resolution), from a point's
#: projection to the edges of its hexagon and of its face triangle, for the point to be
#: keyed. The centres of H3's cells (H3's inverse projection) fall within 5e-8 lattice
#: units of this module's lattice points at res 15 and within 6e-11 at res 9 (measured on
#: random cells); 1e-4 is 2,000 times the former, and costs little: about 4e-4 of evenly
#: spread points (a band of that width along each hexagon's edges) go to h3ronpy.
MARGIN = 1e-4
#: Points per chunk of the numpy pass: its buffers stay in the core's cache, and numpy's
#: per-call overhead is small next to 8192 points.
CHUNK = 8192
#: Below this many points h3ronpy is called directly (the numpy pass has a fixed cost).
SMALL = 4096
#: Points per block: keys are grouped block by block (a block's hash table stays small).
BLOCK = 1 << 18
#: A block with more distinct keys than this share of its points is *dense* (points
#: spread out, about a cell each): grouping saves little there, so h3ronpy indexes it
#: whole, and the next :data:`DENSE_SKIP` blocks too, without keys. On evenly spread
#: points this keeps the cost near h3ronpy's alone (the keys of a dense block cost about
#: a fifth of h3ronpy's CPU); on clustered pings no block is dense.
DENSE = 0.5
DENSE_SKIP = 7

_SQRT3 = math.sqrt(3.0)
_HALF_RAD = math.pi / 360  # degrees to half-angle radians
_KEY_BIAS = 2.0**24  # doubled lattice coordinates are < 2**23 in magnitude up to res 15


@dataclass(frozen=True)
class Icosahedron:
    """H3's icosahedron as recovered from the ``h3`` API (:func:`icosahedron`).

    Attributes
    ----------
    centre : numpy.ndarray, shape (20, 3)
        Unit vectors of the face centres; row ``f`` is H3's face ``f``.
    axes : numpy.ndarray, shape (2, 20, 2, 3)
        For Class II (even) and Class III (odd) resolutions, per face, the unit vectors
        (in 3-D, tangent at the face centre) of the lattice's first axis and of the axis
        90 degrees counter-clockwise from it. The axis is one of the six directions
        from a cell centre to its neighbours', the one nearest to a face vertex.
    normals : numpy.ndarray, shape (2, 3, 2)
        Per class, the outward normals of the face triangle's edges in the lattice
        frame: the same on every face. The edges lie 1 res-0 unit from the centre.
    res0_unit : float
        Gnomonic distance (tangent of the angle) from a face centre to the neighbouring
        res-0 centres: the lattice spacing at res 0, and the face triangle's inradius.
    """

    centre: np.ndarray
    axes: np.ndarray
    normals: np.ndarray
    res0_unit: float


def _unit_vectors(lat, lng) -> np.ndarray:
    lat, lng = np.radians(lat), np.radians(lng)
    return np.stack([np.cos(lat) * np.cos(lng), np.cos(lat) * np.sin(lng), np.sin(lat)], axis=-1)


def _centres(cells) -> np.ndarray:
    return _unit_vectors(*np.array([h3.cell_to_latlng(c) for c in cells]).T)


@functools.cache
def icosahedron() -> Icosahedron:
    """Face centres, lattice axes and res-0 spacing, from the public ``h3`` API.

    Each face centre is the centre of the res-0 cell lying wholly on that face with no
    pentagon among its neighbours (the three other one-face cells of a face touch its
    corner pentagons). Around it, the six neighbours at res 0 (Class II) and around its
    res-1 centre child (Class III) sit one lattice step away: their gnomonic positions
    give the axis directions (modulo 60 degrees) and the spacing. The face's corners are
    the three res-0 pentagons on it. Computed once, on first use.

    Examples
    --------
    >>> ico = icosahedron()
    >>> ico.centre.shape, ico.axes.shape, ico.normals.shape
    ((20, 3), (2, 20, 2, 3), (2, 3, 2))
    >>> round(ico.res0_unit, 6)  # tan of the angle between neighbouring res-0 centres
    0.381966
    """
    home = {}
    for cell in h3.get_res0_cells():
        faces = h3.get_icosahedron_faces(cell)
        if len(faces) == 1 and not any(h3.is_pentagon(n) for n in h3.grid_ring(cell, 1)):
            home[faces[0]] = cell
    if sorted(home) != list(range(20)):
        raise RuntimeError("h3: not one face-centred res-0 cell per face")
    centre = _centres([home[f] for f in range(20)])
    east = np.cross([0.0, 0.0, 1.0], centre)  # no face centre is at a pole
    east /= np.linalg.norm(east, axis=1, keepdims=True)
    north = np.cross(centre, east)

    def plane(f, points):  # gnomonic coordinates on face f's plane (tangents)
        return np.stack([points @ east[f], points @ north[f]], axis=-1) / (points @ centre[f])[:, None]

    corners = {f: [] for f in range(20)}
    for p in h3.get_pentagons(0):
        for f in h3.get_icosahedron_faces(p):
            corners[f].append(_centres([p])[0])
    axes = np.empty((2, 20, 2, 3))
    normals = np.empty((2, 20, 3, 2))
    units = []
    for f in range(20):
        corner = plane(f, np.array(corners[f]))
        corner_angle = np.arctan2(corner[:, 1], corner[:, 0])
        for cls in (0, 1):
            ring = plane(f, _centres(h3.grid_ring(h3.cell_to_center_child(home[f], cls), 1)))
            units.extend(np.hypot(ring[:, 0], ring[:, 1]) * math.sqrt(7) ** cls)
            # the six directions modulo 60 degrees: mean of the angles times six
            angle = np.angle(np.exp(6j * np.arctan2(ring[:, 1], ring[:, 0])).mean()) / 6
            # of the six, the one nearest to the first corner, so that the triangle has one
            # shape in every face's lattice frame
            angle += np.round((corner_angle[0] - angle) / (np.pi / 3)) * (np.pi / 3)
            axes[cls, f, 0] = math.cos(angle) * east[f] + math.sin(angle) * north[f]
            axes[cls, f, 1] = -math.sin(angle) * east[f] + math.cos(angle) * north[f]
            out = np.sort((corner_angle - angle + np.pi) % (2 * np.pi))  # edges face away from corners
            normals[cls, f] = np.stack([np.cos(out), np.sin(out)], axis=-1)
    if np.ptp(normals, axis=1).max() > 1e-9 or np.ptp(units) > 1e-12:
        raise RuntimeError("h3: faces are not alike")
    return Icosahedron(centre, axes, normals[:, 0], float(np.mean(units)))


def rho_min(res: int) -> float:
    """Least distance (lattice units) from the face centre of a keyed point.

    H3 takes the angle from the face centre as ``acos(1 - d**2 / 2)``; rounding the
    argument (2**-53) moves that angle by up to 2**-53 / r near r = 0, i.e. by
    ``scale**2 * 2**-53 / rho`` lattice units at ``rho = scale * r``. Points where that is
    more than 1% of :data:`MARGIN` are left to h3ronpy: at res 9 those within 0.03
    lattice units (12 m) of one of the 20 face centres, at res 15 within 3,600 (4 km).

    Examples
    --------
    >>> round(rho_min(9), 3), round(rho_min(15))
    (0.031, 3613)
    """
    scale = math.sqrt(7) ** res / icosahedron().res0_unit
    return scale * scale * 2.0**-53 * 100 / MARGIN


@dataclass(frozen=True)
class _Lattice:
    """The constants of one resolution, in the shapes the numpy pass uses."""

    pair_centre: np.ndarray  # (10, 3): one face centre of each antipodal pair
    pair_face: np.ndarray  # (20,): face of pair p is [2p] where v . centre > 0, else [2p + 1]
    axes: np.ndarray  # (6, 20): x then y lattice axis components, scaled to lattice units
    normals: np.ndarray  # (3, 2): face triangle edge normals in the lattice frame
    edge: float  # distance of the face triangle's edges from the centre, less the margin
    rho_min2: float


@functools.cache
def _lattice(res: int) -> _Lattice:
    ico = icosahedron()
    # an icosahedron's face centres come in antipodal pairs: the nearest face is the one
    # with the largest |v . centre| over ten pairs, on the side of the dot product's sign
    antipode = np.argmin(ico.centre @ ico.centre.T, axis=1)
    first = [f for f in range(20) if f < antipode[f]]
    pair_face = np.array([[f, antipode[f]] for f in first], dtype=np.int64).ravel()
    scale = math.sqrt(7) ** res / ico.res0_unit
    axes = ico.axes[res % 2] * scale  # (20, 2, 3)
    return _Lattice(
        pair_centre=ico.centre[first],
        pair_face=pair_face,
        axes=np.ascontiguousarray(axes.transpose(1, 2, 0).reshape(6, 20)),
        normals=ico.normals[res % 2],
        edge=math.sqrt(7) ** res - MARGIN,
        rho_min2=rho_min(res) ** 2,
    )


class _Scratch:
    """Buffers for one chunk of ``m`` points, reused chunk after chunk.

    Fresh numpy temporaries of these sizes are handed back to the system and faulted in
    again at every chunk, which costs more than the arithmetic on them.
    """

    def __init__(self, m: int):
        self.m = m
        self.f = np.empty((12, m))
        self.v = np.empty((3, m))
        self.dots = np.empty((10, m))
        self.packed = np.empty((10, m), dtype=np.int64)
        self.i = np.empty((4, m), dtype=np.int64)
        self.b = np.empty((3, m), dtype=bool)
        self.flat = np.arange(m, dtype=np.int64)


_ABS_HIGH = np.int64(0x7FFF_FFFF_FFFF_FFF0)  # |x| of a float64's bits, low 4 bits cleared
_ROWS = np.arange(10, dtype=np.int64)[:, None]


def _chunk_keys(lat, lng, lat_: _Lattice, s: _Scratch, out) -> None:
    """Keys of one chunk into ``out``; -1 where a point is not safe.

    Each step works in ``s``'s buffers and leaves its results there for the next.
    """
    _unit_vectors_into(lat, lng, s)
    face = _nearest_face(lat_, s)
    _project(lat_, s, face)
    _round_to_lattice(s)
    _mark_safe(lat_, s)
    _pack_keys(s, face, out)


def _unit_vectors_into(lat, lng, s: _Scratch) -> None:
    """Unit vectors of the points into ``s.v``: two tangents of half angles (vectorised
    in numpy) instead of four sines and cosines (not vectorised for float64)."""
    t, u, a, b, c = s.f[:5]
    np.multiply(lat, _HALF_RAD, out=t)
    np.tan(t, out=t)
    np.multiply(lng, _HALF_RAD, out=u)
    np.tan(u, out=u)
    np.multiply(t, t, out=a)
    np.multiply(u, u, out=b)
    np.add(a, 1, out=c)
    np.divide(t, c, out=s.v[2])
    s.v[2] *= 2  # sin(lat)
    np.subtract(1, a, out=a)
    np.divide(a, c, out=a)  # cos(lat)
    np.add(b, 1, out=c)
    np.divide(a, c, out=a)  # cos(lat) / (1 + u**2)
    np.subtract(1, b, out=b)
    np.multiply(a, b, out=s.v[0])
    np.multiply(a, u, out=s.v[1])
    s.v[1] *= 2


def _nearest_face(lat_: _Lattice, s: _Scratch) -> np.ndarray:
    """Face of each point (``s.i[1]``, returned) and ``|v . centre|`` of it (``s.f[9]``).

    The pair with the largest ``|v . centre|`` (the pair number in the low bits of the
    float's bits, so that one max gives both), then the side by the dot product's sign.
    """
    d = s.f[9]
    np.matmul(lat_.pair_centre, s.v, out=s.dots)
    np.bitwise_and(s.dots.view(np.int64), _ABS_HIGH, out=s.packed)
    s.packed |= _ROWS
    top, face, flat = s.i[0], s.i[1], s.i[2]
    s.packed.max(axis=0, out=top)
    np.bitwise_and(top, 15, out=top)
    np.multiply(top, s.m, out=flat)
    flat += s.flat
    np.take(s.dots, flat, out=d)  # v . centre of the pair (s.dots is C-contiguous)
    np.less(d, 0, out=s.b[0])
    np.add(top, top, out=face)
    face += s.b[0]
    np.take(lat_.pair_face, face, out=face)
    np.abs(d, out=d)
    return face


def _project(lat_: _Lattice, s: _Scratch, face: np.ndarray) -> None:
    """Projection on the face's plane, in lattice units along the lattice axes, into
    ``x, y = s.f[5], s.f[6]`` (divided by ``s.f[9]``, the dot product with the centre)."""
    v, x, y, d, g = s.v, s.f[5], s.f[6], s.f[9], s.f[11]
    if face[0] == face.min() == face.max():  # one face (the usual case for a city)
        np.matmul(lat_.axes[:, face[0]].reshape(2, 3), v, out=s.f[5:7])
    else:
        for xy, rows in ((x, lat_.axes[:3]), (y, lat_.axes[3:])):
            np.take(rows[0], face, out=xy)
            xy *= v[0]
            for k in (1, 2):
                np.take(rows[k], face, out=g)
                g *= v[k]
                xy += g
    x /= d
    y /= d


def _round_to_lattice(s: _Scratch) -> None:
    """Nearest lattice point ``i*(1, 0) + j*(-1/2, sqrt 3/2)`` to ``(x, y)``.

    With ``Y = y / sqrt 3`` the lattice is Z**2 together with Z**2 + (1/2, 1/2); the
    nearer of the two roundings. Leaves the offset from that point, in (x, Y) units, in
    ``p, q = s.f[7], s.f[8]`` and its doubled coordinates (integers) in ``b, c = s.f[3],
    s.f[4]``.
    """
    a, b, c, x, y, p, q, d, e, g = s.f[2:12]
    np.multiply(y, 1 / _SQRT3, out=a)  # Y
    np.rint(x, out=p)
    np.rint(a, out=q)
    np.floor(x, out=b)
    b += 0.5
    np.floor(a, out=c)
    c += 0.5
    np.subtract(x, p, out=p)  # offsets from the Z**2 point
    np.subtract(a, q, out=q)
    np.subtract(x, b, out=b)  # from the shifted point
    np.subtract(a, c, out=c)
    np.multiply(p, p, out=d)
    np.multiply(q, q, out=e)
    e *= 3
    d += e  # squared distance to the Z**2 point
    np.multiply(b, b, out=e)
    np.multiply(c, c, out=g)
    g *= 3
    e += g  # to the shifted one
    np.less(e, d, out=s.b[0])
    np.copyto(p, b, where=s.b[0])
    np.copyto(q, c, where=s.b[0])  # (p, q): offset from the nearest point
    np.subtract(x, p, out=b)
    b += b
    np.subtract(a, q, out=c)
    c += c


def _mark_safe(lat_: _Lattice, s: _Scratch) -> None:
    """``s.b[1]``: the points that are safe (see the module docstring)."""
    x, y, p, q, d, e = s.f[5:11]
    safe, also = s.b[1], s.b[2]
    # inside the hexagon (|offset . n| <= 1/2 for the three neighbour directions
    # n = (1, 0), (1/2, sqrt 3/2), (-1/2, sqrt 3/2); in Y units the y part is 3/2 q)...
    q *= 1.5
    p *= 0.5
    np.add(p, q, out=d)
    np.abs(d, out=d)
    np.subtract(p, q, out=e)
    np.abs(e, out=e)
    np.maximum(d, e, out=d)
    np.abs(p, out=p)
    p += p
    np.maximum(d, p, out=d)
    np.less_equal(d, 0.5 - MARGIN, out=safe)
    # ... inside the face triangle...
    for k in range(3):
        np.multiply(x, lat_.normals[k, 0], out=d)
        np.multiply(y, lat_.normals[k, 1], out=e)
        d += e
        np.less_equal(d, lat_.edge, out=also)
        safe &= also
    # ... and not next to the face centre
    np.multiply(x, x, out=d)
    np.multiply(y, y, out=e)
    d += e
    np.greater_equal(d, lat_.rho_min2, out=also)
    safe &= also


def _pack_keys(s: _Scratch, face: np.ndarray, out) -> None:
    """Key into ``out``: face (5 bits), doubled lattice coordinates (25 bits each,
    biased positive); -1 where the point is not safe."""
    b, c = s.f[3], s.f[4]
    hi, lo = s.i[2], s.i[3]
    b += _KEY_BIAS
    c += _KEY_BIAS
    np.copyto(hi, b, casting="unsafe")
    np.copyto(lo, c, casting="unsafe")
    np.left_shift(face, 25, out=face)
    face |= hi
    np.left_shift(face, 25, out=face)
    face |= lo
    np.copyto(out, face)
    np.logical_not(s.b[1], out=s.b[1])
    np.copyto(out, -1, where=s.b[1])


def keys(lat: np.ndarray, lng: np.ndarray, res: int) -> np.ndarray:
    """Lattice key of each point (int64), -1 for the points left to h3ronpy.

    ``lat`` and ``lng`` are float64 numpy arrays of degrees; ``res`` is 0..15.

    Examples
    --------
    >>> k = keys(np.array([22.5431, 22.5431, np.nan]), np.array([114.0579, 114.0579, 0.0]), 9)
    >>> bool(k[0] == k[1] >= 0), int(k[2])  # one point twice: one key; NaN: left to h3ronpy
    (True, -1)
    """
    lattice = _lattice(res)
    n = len(lat)
    out = np.empty(n, dtype=np.int64)
    scratch = _Scratch(min(CHUNK, n))
    with np.errstate(all="ignore"):  # NaN and inf are not safe; h3ronpy refuses them
        for start in range(0, n, CHUNK):
            la, lo = lat[start : start + CHUNK], lng[start : start + CHUNK]
            if len(la) < scratch.m:
                scratch = _Scratch(len(la))
            _chunk_keys(la, lo, lattice, scratch, out[start : start + CHUNK])
            # far beyond the usual degree ranges numpy's tangent and the library's sine
            # may disagree; not finite is not safe either (NaN compares false)
            if not (-90 <= la.min() and la.max() <= 90 and -180 <= lo.min() and lo.max() <= 180):
                bad = ~((np.abs(la) <= 90) & (np.abs(lo) <= 180))
                out[start : start + CHUNK][bad] = -1
    return out


def _h3ronpy(lat, lng, res) -> np.ndarray:
    return np.asarray(coordinates_to_cells(lat, lng, res))


def latlng_to_cells(lat: np.ndarray, lng: np.ndarray, res: int) -> np.ndarray:
    """H3 cells (uint64) of points: h3ronpy's cells, at a fraction of its CPU on pings.

    Parameters
    ----------
    lat, lng : numpy.ndarray of float64
        Degrees. Points that are not finite raise h3ronpy's ``ValueError``.
    res : int
        Resolution, 0..15 (anything else goes to h3ronpy, which refuses it).

    Returns
    -------
    numpy.ndarray of uint64

    Examples
    --------
    >>> import h3
    >>> lat, lng = np.full(5000, 22.5431), np.full(5000, 114.0579)
    >>> int(latlng_to_cells(lat, lng, 9)[0]) == h3.str_to_int(h3.latlng_to_cell(22.5431, 114.0579, 9))
    True
    """
    if len(lat) < SMALL or not (isinstance(res, int | np.integer) and 0 <= res <= 15):
        return _h3ronpy(lat, lng, res)
    out = np.empty(len(lat), dtype=np.uint64)
    skip = 0
    for start in range(0, len(lat), BLOCK):
        block = slice(start, start + BLOCK)
        if skip:
            skip -= 1
            out[block] = _h3ronpy(lat[block], lng[block], res)
        elif not _by_keys(lat[block], lng[block], int(res), out[block]):
            skip = DENSE_SKIP
    return out


def _by_keys(lat, lng, res: int, out) -> bool:
    """Cells of one block into ``out``; False if the block was dense (see :data:`DENSE`)."""
    import pandas as pd  # (a hash-based np.unique with inverse; imported when first needed)

    key = keys(lat, lng, res)
    codes, uniques = pd.factorize(key)
    if len(uniques) > DENSE * len(key):
        out[:] = _h3ronpy(lat, lng, res)
        return False
    first = np.empty(len(uniques), dtype=np.int64)
    first[codes] = np.arange(len(key))  # a point of each key (the last one written wins)
    by_code = np.zeros(len(uniques), dtype=np.uint64)
    safe = uniques >= 0
    rep = first[safe]
    by_code[safe] = _h3ronpy(lat[rep], lng[rep], res)
    np.take(by_code, codes, out=out)
    unsafe = np.flatnonzero(key < 0)
    if unsafe.size:
        out[unsafe] = _h3ronpy(lat[unsafe], lng[unsafe], res)
    return True
