"""WGS-84 -> GCJ-02 ("Mars coordinates"), vectorised.

Chinese tile providers (AMap/Gaode, Tencent) draw their maps in GCJ-02, while GPS
fixes and H3 cells are WGS-84. To lay WGS-84 data on such tiles, every drawn
coordinate is shifted with :func:`wgs84_to_gcj02`. Points outside mainland China
are left unchanged, as the providers do.
"""

from __future__ import annotations

import numpy as np

_A = 6378245.0  # Krasovsky 1940 semi-major axis
_EE = 0.00669342162296594323  # its eccentricity squared


def outside_china(lat, lng) -> np.ndarray:
    """True where a point lies outside the rough bounding box the shift applies to.

    Examples
    --------
    >>> outside_china([22.5, 48.8584], [114.0, 2.2945]).tolist()  # Shenzhen, Paris
    [False, True]
    """
    lat = np.asarray(lat, dtype=np.float64)
    lng = np.asarray(lng, dtype=np.float64)
    return (lng < 72.004) | (lng > 137.8347) | (lat < 0.8293) | (lat > 55.8271)


def _dlat(x, y):
    r = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * np.sqrt(np.abs(x))
    r += (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    r += (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
    r += (160.0 * np.sin(y / 12.0 * np.pi) + 320 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    return r


def _dlng(x, y):
    r = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * np.sqrt(np.abs(x))
    r += (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    r += (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
    r += (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0
    return r


def wgs84_to_gcj02(lat, lng) -> tuple[np.ndarray, np.ndarray]:
    """Shift WGS-84 points to GCJ-02.

    Parameters
    ----------
    lat, lng : array-like of float
        WGS-84 degrees (NaN stays NaN).

    Returns
    -------
    (lat, lng) : tuple of numpy.ndarray
        GCJ-02 degrees; points outside China unchanged.

    Examples
    --------
    >>> lat, lng = wgs84_to_gcj02([39.9087], [116.3975])  # Tiananmen
    >>> round(float(lat[0]), 4), round(float(lng[0]), 4)
    (39.9101, 116.4037)
    """
    lat = np.asarray(lat, dtype=np.float64)
    lng = np.asarray(lng, dtype=np.float64)
    x, y = lng - 105.0, lat - 35.0
    dlat = _dlat(x, y)
    dlng = _dlng(x, y)
    rad = lat / 180.0 * np.pi
    magic = 1 - _EE * np.sin(rad) ** 2
    sqrt_magic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1 - _EE)) / (magic * sqrt_magic) * np.pi)
    dlng = (dlng * 180.0) / (_A / sqrt_magic * np.cos(rad) * np.pi)
    out = outside_china(lat, lng)
    return np.where(out, lat, lat + dlat), np.where(out, lng, lng + dlng)


def gcj02_to_wgs84(lat, lng, iterations: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`wgs84_to_gcj02` by fixed-point iteration (error < 1 cm).

    Examples
    --------
    >>> lat, lng = gcj02_to_wgs84(*wgs84_to_gcj02([39.9087], [116.3975]))
    >>> round(float(lat[0]), 7), round(float(lng[0]), 7)
    (39.9087, 116.3975)
    """
    glat = np.asarray(lat, dtype=np.float64)
    glng = np.asarray(lng, dtype=np.float64)
    wlat, wlng = glat.copy(), glng.copy()
    for _ in range(iterations):
        tlat, tlng = wgs84_to_gcj02(wlat, wlng)
        wlat = wlat - (tlat - glat)
        wlng = wlng - (tlng - glng)
    return wlat, wlng
