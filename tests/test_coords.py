import numpy as np

from geo.coords import gcj02_to_wgs84, outside_china, wgs84_to_gcj02


def test_known_point_beijing():
    # Tiananmen: WGS-84 39.9087,116.3975 is drawn at about 39.9101,116.4037 on AMap.
    lat, lng = wgs84_to_gcj02([39.9087], [116.3975])
    assert abs(lat[0] - 39.91010) < 2e-4
    assert abs(lng[0] - 116.40374) < 2e-4


def test_shift_is_a_few_hundred_metres_in_shenzhen():
    lat, lng = wgs84_to_gcj02([22.54], [114.05])
    dy = (lat[0] - 22.54) * 111_000
    dx = (lng[0] - 114.05) * 111_000 * np.cos(np.radians(22.54))
    assert 200 < np.hypot(dx, dy) < 800


def test_outside_china_unchanged():
    lat, lng = wgs84_to_gcj02([51.5, -33.9], [-0.12, 151.2])
    assert np.array_equal(lat, [51.5, -33.9]) and np.array_equal(lng, [-0.12, 151.2])
    assert outside_china([51.5], [-0.12]).all()


def test_vectorised_and_inverse():
    rng = np.random.default_rng(1)
    lat = rng.uniform(20, 45, 10_000)
    lng = rng.uniform(100, 122, 10_000)
    glat, glng = wgs84_to_gcj02(lat, lng)
    assert glat.shape == lat.shape
    wlat, wlng = gcj02_to_wgs84(glat, glng)
    assert np.abs(wlat - lat).max() < 1e-7 and np.abs(wlng - lng).max() < 1e-7


def test_nan_stays_nan():
    lat, lng = wgs84_to_gcj02([np.nan], [114.0])
    assert np.isnan(lat[0])
