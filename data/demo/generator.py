"""Deterministic, vectorised demo network: outlets, couriers, vehicles, a few days of
GPS pings and parcel scans in ten large real cities, with injected demand surges.

Everything is drawn from ``numpy.random.default_rng`` seeded from ``seed`` and the day,
so a seed and an end date always give the same data. Couriers follow tours: from their
outlet to delivery and pickup stops and back, in straight lines at walking or e-bike
speed (with a detour factor), dwelling at each stop in proportion to its parcels; their
phones report a fix every ``ping_seconds`` with GPS noise. Vans loop between their hub
and the outlets of their city. Demand follows a day profile with morning and afternoon
peaks; surges (a promotion, a rainstorm) multiply it in some branches for some hours,
and are recorded in ``demo_surges`` so that alerts can be checked against the truth.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import polars as pl

from data.store.database import Store
from geo.cells import latlng_to_cells
from geo.hierarchy import load_tree

LOCAL_UTC_OFFSET_H = 8  # China Standard Time, no daylight saving
KM_PER_DEG = 111.32
DETOUR = 1.3  # street distance / straight-line distance

# region adcode, name, centre (lat, lng), urban spread (km), share of couriers
CITIES = [
    ("440300", "深圳", 22.543, 114.058, 11.0, 0.12),
    ("440100", "广州", 23.129, 113.300, 12.0, 0.12),
    ("310000", "上海", 31.230, 121.474, 14.0, 0.14),
    ("110000", "北京", 39.904, 116.407, 14.0, 0.13),
    ("330100", "杭州", 30.274, 120.155, 11.0, 0.09),
    ("510100", "成都", 30.620, 104.066, 11.0, 0.10),
    ("420100", "武汉", 30.593, 114.305, 11.0, 0.08),
    ("610100", "西安", 34.300, 108.940, 9.0, 0.07),
    ("320100", "南京", 32.060, 118.797, 10.0, 0.07),
    ("500000", "重庆", 29.563, 106.551, 9.0, 0.08),
]


@dataclass(frozen=True)
class DemoSize:
    cities: int
    couriers: int
    ping_seconds: int
    surges_per_day: int


SIZES = {
    "small": DemoSize(cities=2, couriers=400, ping_seconds=60, surges_per_day=2),
    "default": DemoSize(cities=10, couriers=6000, ping_seconds=60, surges_per_day=6),
    "large": DemoSize(cities=10, couriers=20000, ping_seconds=20, surges_per_day=12),
}

MODES = {  # speed m/s (mean, sd), share, stop spread km
    "walk": (1.25, 0.15, 0.35, 0.30),
    "ebike": (4.5, 0.6, 0.65, 0.60),
}
#: Fastest a courier of each mode ever moves along the street (m/s).
MODE_MAX_SPEED = {"walk": 2.0, "ebike": 7.0}


def hourly_profile() -> np.ndarray:
    """Relative parcel demand per local hour: morning peak ~10:00, afternoon ~15:30."""
    h = np.arange(24) + 0.5
    prof = 0.35 + 1.0 * np.exp(-0.5 * ((h - 10.3) / 1.3) ** 2) + 0.85 * np.exp(-0.5 * ((h - 15.8) / 1.6) ** 2)
    prof[(h < 7) | (h > 21)] = 0.05
    return prof / prof[8:20].mean()


def default_end_date() -> date:
    """The newest demo day: yesterday on the network's local clock."""
    return (datetime.utcnow() + timedelta(hours=LOCAL_UTC_OFFSET_H)).date() - timedelta(days=1)


def _local_midnight_utc(day: date) -> np.datetime64:
    return np.datetime64(datetime(day.year, day.month, day.day) - timedelta(hours=LOCAL_UTC_OFFSET_H), "us")


def _offset(lat, lng, dnorth_km, deast_km):
    return lat + dnorth_km / KM_PER_DEG, lng + deast_km / (KM_PER_DEG * np.cos(np.radians(lat)))


def _dist_km(lat1, lng1, lat2, lng2):
    dy = (lat2 - lat1) * KM_PER_DEG
    dx = (lng2 - lng1) * KM_PER_DEG * np.cos(np.radians((lat1 + lat2) / 2))
    return np.hypot(dx, dy)


# -- the network --------------------------------------------------------------------------
def build_network(store: Store, size: DemoSize, seed: int) -> dict[str, pl.DataFrame]:
    """Outlets, hubs, couriers, vehicles and devices in the first ``size.cities`` cities."""
    rng = np.random.default_rng([seed, 0])
    loc = store.locator()
    nodes = store.nodes()
    region_of = dict(zip(nodes["node_id"], nodes["region_id"]))
    cities = CITIES[: size.cities]
    share = np.array([c[5] for c in cities])
    per_city = np.round(size.couriers * share / share.sum()).astype(int)

    outlets, couriers, vehicles = [], [], []
    for (adcode, cname, clat, clng, spread, _), n_couriers in zip(cities, per_city):
        region = f"r-{adcode}"
        caps = []
        while sum(caps) < n_couriers:
            caps.append(int(rng.integers(8, 26)))
        caps[-1] -= sum(caps) - n_couriers
        if caps[-1] < 3:  # fold a tiny remainder into the previous outlet
            caps[-2] += caps.pop()
        lat, lng = _sample_in_region(rng, loc, region_of, region, clat, clng, spread, len(caps))
        for i, (la, ln, cap) in enumerate(zip(lat, lng, caps)):
            outlets.append(
                {
                    "outlet_id": f"o-{adcode}-{i + 1:03d}",
                    "name": f"{cname}{i + 1:03d}网点",
                    "kind": "outlet",
                    "lat": la,
                    "lng": ln,
                    "capacity_couriers": cap,
                    "capacity_parcels_per_hour": cap * 12,
                }
            )
        hlat, hlng = _sample_in_region(rng, loc, region_of, region, clat, clng, spread * 0.5, 2)
        for j in range(2):
            outlets.append(
                {
                    "outlet_id": f"h-{adcode}-{j + 1}",
                    "name": f"{cname}转运中心{j + 1}",
                    "kind": "hub",
                    "lat": hlat[j],
                    "lng": hlng[j],
                    "capacity_couriers": 0,
                    "capacity_parcels_per_hour": 4000,
                }
            )
    outlets_df = pl.DataFrame(outlets)
    cells = latlng_to_cells(outlets_df["lat"], outlets_df["lng"])
    outlets_df = outlets_df.with_columns(
        pl.Series("cell", cells), store.branches_of_cells(cells).alias("branch_id")
    )

    surname = np.array(list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"))
    given = np.array(list("伟芳娜敏静丽强磊军洋勇艳杰涛明超秀霞平刚"))
    k = 0
    for o in outlets_df.filter(pl.col("kind") == "outlet").iter_rows(named=True):
        for _ in range(o["capacity_couriers"]):
            k += 1
            mode = "walk" if rng.random() < MODES["walk"][2] else "ebike"
            couriers.append(
                {
                    "courier_id": f"c-{k:06d}",
                    "name": f"{rng.choice(surname)}{rng.choice(given)}{rng.choice(given)}",
                    "outlet_id": o["outlet_id"],
                    "branch_id": o["branch_id"],
                    "mode": mode,
                }
            )
    v = 0
    for h in outlets_df.filter(pl.col("kind") == "hub").iter_rows(named=True):
        for _ in range(max(3, len(outlets_df) // (2 * len(cities) * 3))):
            v += 1
            vehicles.append(
                {
                    "vehicle_id": f"v-{v:04d}",
                    "plate": f"粤B{rng.integers(10000, 99999)}",
                    "kind": "van",
                    "outlet_id": h["outlet_id"],
                    "branch_id": h["branch_id"],
                }
            )
    couriers_df = pl.DataFrame(couriers)
    vehicles_df = pl.DataFrame(vehicles)
    registered = datetime(2026, 1, 1)
    devices = pl.concat(
        [
            pl.DataFrame(
                {
                    "device_id": [f"86{int(c[2:]):013d}" for c in couriers_df["courier_id"]],
                    "courier_id": couriers_df["courier_id"],
                    "vehicle_id": None,
                }
            ),
            pl.DataFrame(
                {
                    "device_id": [f"T{int(x[2:]):07d}" for x in vehicles_df["vehicle_id"]],
                    "courier_id": None,
                    "vehicle_id": vehicles_df["vehicle_id"],
                }
            ),
        ],
        how="vertical_relaxed",
    ).with_columns(pl.lit(registered).alias("registered_at"))
    return {"outlets": outlets_df, "couriers": couriers_df, "vehicles": vehicles_df, "devices": devices}


def _sample_in_region(rng, loc, region_of, region, clat, clng, spread_km, n):
    """n points around a city centre (urban density) that fall inside the city."""
    out_lat, out_lng = [], []
    while len(out_lat) < n:
        m = 4 * n
        r = np.abs(rng.normal(0, spread_km, m))
        a = rng.uniform(0, 2 * np.pi, m)
        lat, lng = _offset(clat, clng, r * np.cos(a), r * np.sin(a))
        branch = loc.locate(lat, lng)
        ok = np.array([b is not None and region_of.get(b) == region for b in branch])
        out_lat.extend(lat[ok])
        out_lng.extend(lng[ok])
    return np.array(out_lat[:n]), np.array(out_lng[:n])


# -- movement -----------------------------------------------------------------------------
@dataclass
class Segments:
    """Moves of many actors: actor ``a`` leaves (lat0, lng0) at t_dep, reaches (lat1, lng1)
    at t_arr and stays there until its next segment. Times in seconds of the day (UTC
    based, from local midnight); arrays sorted by (actor, t_dep)."""

    actor: np.ndarray
    t_dep: np.ndarray
    t_arr: np.ndarray
    lat0: np.ndarray
    lng0: np.ndarray
    lat1: np.ndarray
    lng1: np.ndarray


def sample_fixes(
    seg: Segments, start: np.ndarray, end: np.ndarray, every_s: int, rng, noise_m: float = 6.0
) -> dict[str, np.ndarray]:
    """GPS fixes of every actor from ``start`` to ``end`` (seconds), one every ``every_s``.

    Positions are interpolated along the segments (no jumps); each fix gets Gaussian
    noise of ``noise_m`` metres, a reported speed and heading.
    """
    n = np.maximum(((end - start) // every_s).astype(np.int64), 0)
    actor = np.repeat(np.arange(len(start)), n)
    first = np.repeat(np.cumsum(n) - n, n)
    t = np.repeat(start, n) + (np.arange(n.sum()) - first) * every_s
    # Clock jitter, kept inside [start, end) so a fix never falls before the actor's
    # first segment (it would be looked up in another actor's timeline).
    t = np.clip(t + rng.uniform(-2, 2, t.size), np.repeat(start, n), np.repeat(end, n) - 1e-3)
    big = 10.0**6  # > seconds in two days: keys of different actors never overlap
    seg_key = seg.actor * big + seg.t_dep
    idx = np.searchsorted(seg_key, actor * big + t, side="right") - 1
    idx = np.clip(idx, 0, len(seg_key) - 1)
    dur = np.maximum(seg.t_arr[idx] - seg.t_dep[idx], 1e-9)
    frac = np.clip((t - seg.t_dep[idx]) / dur, 0, 1)
    lat = seg.lat0[idx] + (seg.lat1[idx] - seg.lat0[idx]) * frac
    lng = seg.lng0[idx] + (seg.lng1[idx] - seg.lng0[idx]) * frac
    moving = (frac > 0) & (frac < 1)
    seg_km = _dist_km(seg.lat0[idx], seg.lng0[idx], seg.lat1[idx], seg.lng1[idx])
    speed = np.where(moving, seg_km * 1000 / dur, 0.0)
    heading = (
        np.degrees(
            np.arctan2(
                (seg.lng1[idx] - seg.lng0[idx]) * np.cos(np.radians(lat)), seg.lat1[idx] - seg.lat0[idx]
            )
        )
        % 360
    )
    accuracy = rng.uniform(3, 15, t.size)
    dn, de = rng.normal(0, noise_m / 1000, t.size), rng.normal(0, noise_m / 1000, t.size)
    nlat, nlng = _offset(lat, lng, dn, de)
    return {
        "actor": actor,
        "t": t,
        "lat": nlat,
        "lng": nlng,
        "true_lat": lat,
        "true_lng": lng,
        "speed": speed.astype(np.float32),
        "heading": np.where(moving, heading, np.nan).astype(np.float32),
        "accuracy": accuracy.astype(np.float32),
    }


def tours(
    rng,
    home_lat,
    home_lng,
    zone_lat,
    zone_lng,
    spread_km,
    speed_ms,
    wave_start,
    wave_end,
    demand_at,
    max_stops: int = 48,
):
    """Tours of one wave for many couriers: out from home, stops in a zone, back home.

    ``demand_at(actor, t)`` gives the expected parcels per stop at time ``t`` (seconds);
    dwell time grows with the parcels. Returns the stops (actor, arrival time, position,
    parcels) and the segments of the moves.
    """
    a = len(home_lat)
    slat, slng = _offset(
        zone_lat[:, None],
        zone_lng[:, None],
        rng.normal(0, 1, (a, max_stops)) * spread_km[:, None],
        rng.normal(0, 1, (a, max_stops)) * spread_km[:, None],
    )
    plat = np.concatenate([home_lat[:, None], slat[:, :-1]], axis=1)
    plng = np.concatenate([home_lng[:, None], slng[:, :-1]], axis=1)
    travel = _dist_km(plat, plng, slat, slng) * 1000 * DETOUR / speed_ms[:, None]
    # First pass with a mean dwell to know roughly when each stop happens, then draw
    # the parcels for that hour and lay out the real timeline.
    approx = wave_start[:, None] + np.cumsum(travel + 240.0, axis=1) - 240.0
    parcels = 1 + rng.poisson(np.maximum(demand_at(np.arange(a)[:, None], approx) - 1, 0.05))
    dwell = 90.0 + 75.0 * parcels
    arr = wave_start[:, None] + np.cumsum(travel + dwell, axis=1) - dwell
    dep = arr + dwell
    back = _dist_km(slat, slng, home_lat[:, None], home_lng[:, None]) * 1000 * DETOUR / speed_ms[:, None]
    valid = np.cumprod(dep + back <= wave_end[:, None], axis=1).astype(bool)
    nstops = valid.sum(axis=1)

    # segments: home->s1, s1->s2, ..., s_last->home (departing at dep of s_last)
    rows, cols = np.nonzero(valid)
    outbound = [
        rows,
        arr[rows, cols] - travel[rows, cols],
        arr[rows, cols],
        plat[rows, cols],
        plng[rows, cols],
        slat[rows, cols],
        slng[rows, cols],
    ]
    r = np.nonzero(nstops > 0)[0]
    last = nstops[r] - 1
    home = [
        r,
        dep[r, last],
        dep[r, last] + back[r, last],
        slat[r, last],
        slng[r, last],
        home_lat[r],
        home_lng[r],
    ]
    stops = {
        "actor": rows,
        "t": arr[rows, cols],
        "lat": slat[rows, cols],
        "lng": slng[rows, cols],
        "parcels": parcels[rows, cols],
    }
    seg = [np.concatenate([o, h]) for o, h in zip(outbound, home)]
    return stops, seg


def _merge_segments(parts: list[list[np.ndarray]]) -> Segments:
    cols = [np.concatenate([p[i] for p in parts]) for i in range(7)]
    order = np.lexsort((cols[1], cols[0]))
    return Segments(*[c[order] for c in cols])


# -- one day --------------------------------------------------------------------------------
def generate_day(
    network: dict[str, pl.DataFrame], day: date, size: DemoSize, seed: int, surges: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Pings and parcel events of one local day. Returns ``(pings, events)`` frames in the
    import schema (naive UTC timestamps)."""
    rng = np.random.default_rng([seed, day.toordinal()])
    midnight = _local_midnight_utc(day)
    prof = hourly_profile()
    outlets = network["outlets"]
    cour = network["couriers"].join(outlets.select("outlet_id", "lat", "lng"), on="outlet_id")
    n = len(cour)
    olat, olng = cour["lat"].to_numpy(), cour["lng"].to_numpy()
    mode = cour["mode"].to_numpy()
    walk = mode == "walk"
    speed = np.where(
        walk,
        rng.normal(MODES["walk"][0], MODES["walk"][1], n).clip(0.8, MODE_MAX_SPEED["walk"]),
        rng.normal(MODES["ebike"][0], MODES["ebike"][1], n).clip(2.5, MODE_MAX_SPEED["ebike"]),
    )
    spread = np.where(walk, MODES["walk"][3], MODES["ebike"][3])
    zr, za = rng.uniform(0.2, 1.6, n) * np.where(walk, 0.6, 1.0), rng.uniform(0, 2 * np.pi, n)
    zlat, zlng = _offset(olat, olng, zr * np.cos(za), zr * np.sin(za))

    # surge factor per courier (by its outlet's branch) and local hour
    factor = np.ones((n, 24))
    branch = cour["branch_id"].to_numpy()
    for s in surges.iter_rows(named=True):
        h0 = int((np.datetime64(s["start_hour"], "us") - midnight) // np.timedelta64(1, "h"))
        h1 = int((np.datetime64(s["end_hour"], "us") - midnight) // np.timedelta64(1, "h"))
        if h1 <= 0 or h0 >= 24:
            continue
        factor[branch == s["branch_id"], max(h0, 0) : min(h1, 24)] *= s["factor"]

    def demand_at(actor, t):
        hour = np.clip((t // 3600).astype(int), 0, 23)
        return 1.25 * prof[hour] * factor[actor, hour]

    h = 3600.0
    shift_start = rng.normal(8.0 * h, 0.3 * h, n)
    lunch = rng.normal(12.3 * h, 0.2 * h, n)
    shift_end = rng.normal(19.8 * h, 0.5 * h, n)
    w1, s1 = tours(rng, olat, olng, zlat, zlng, spread, speed, shift_start + 600, lunch, demand_at)
    w2, s2 = tours(rng, olat, olng, zlat, zlng, spread, speed, lunch + 3600, shift_end - 300, demand_at)
    seg = _merge_segments([s1, s2, [np.arange(n), shift_start - 1, shift_start - 1, olat, olng, olat, olng]])
    fixes = sample_fixes(seg, shift_start, shift_end, size.ping_seconds, rng)
    devices = network["devices"].filter(pl.col("courier_id").is_not_null())
    dev_of = dict(zip(devices["courier_id"], devices["device_id"]))
    courier_dev = np.array([dev_of[c] for c in cour["courier_id"]])

    # vans: hub -> outlet -> hub loops from 06:00 to 22:00
    vans = network["vehicles"].join(outlets.select("outlet_id", "lat", "lng"), on="outlet_id")
    v_pings = _van_pings(rng, vans, outlets, size, day)
    vdev = network["devices"].filter(pl.col("vehicle_id").is_not_null())
    vdev_of = dict(zip(vdev["vehicle_id"], vdev["device_id"]))

    def ts(seconds):
        return midnight + (seconds * 1e6).astype("timedelta64[us]")

    pings = pl.DataFrame(
        {
            "device_id": np.concatenate(
                [
                    courier_dev[fixes["actor"]],
                    np.array([vdev_of[v] for v in vans["vehicle_id"]])[v_pings["actor"]],
                ]
            ),
            "ts": ts(np.concatenate([fixes["t"], v_pings["t"]])),
            "lat": np.concatenate([fixes["lat"], v_pings["lat"]]),
            "lng": np.concatenate([fixes["lng"], v_pings["lng"]]),
            "speed": np.concatenate([fixes["speed"], v_pings["speed"]]),
            "heading": np.concatenate([fixes["heading"], v_pings["heading"]]),
            "accuracy": np.concatenate([fixes["accuracy"], v_pings["accuracy"]]),
        }
    ).with_columns(pl.col("heading").fill_nan(None))  # no heading while standing still

    events = _parcel_events(rng, day, cour, np.concatenate, w1, w2, shift_start, lunch, ts, factor)
    return pings, events


def _van_pings(rng, vans, outlets, size, day):
    if len(vans) == 0:
        return {k: np.empty(0) for k in ("actor", "t", "lat", "lng", "speed", "heading", "accuracy")}
    ol = outlets.filter(pl.col("kind") == "outlet").with_columns(
        pl.col("outlet_id").str.slice(2, 6).alias("city")
    )
    v = len(vans)
    legs = 8
    hub_lat, hub_lng = vans["lat"].to_numpy(), vans["lng"].to_numpy()
    city = vans["outlet_id"].str.slice(2, 6).to_numpy()
    dest_lat = np.empty((v, legs))
    dest_lng = np.empty((v, legs))
    for c in np.unique(city):
        pool = ol.filter(pl.col("city") == c)
        rows = np.nonzero(city == c)[0]
        pick = rng.integers(0, len(pool), (len(rows), legs))
        dest_lat[rows] = pool["lat"].to_numpy()[pick]
        dest_lng[rows] = pool["lng"].to_numpy()[pick]
    speed = rng.uniform(8, 12, v)
    t = rng.normal(6 * 3600, 900, v)
    parts = []
    for k in range(legs):
        for la0, ln0, la1, ln1 in (
            (hub_lat, hub_lng, dest_lat[:, k], dest_lng[:, k]),
            (dest_lat[:, k], dest_lng[:, k], hub_lat, hub_lng),
        ):
            dur = _dist_km(la0, ln0, la1, ln1) * 1000 * DETOUR / speed
            parts.append([np.arange(v), t.copy(), t + dur, la0, ln0, la1, ln1])
            t = t + dur + rng.uniform(600, 1200, v)
    seg = _merge_segments(parts)
    end = np.minimum(t, 22 * 3600)
    fx = sample_fixes(
        seg,
        seg.t_dep[np.searchsorted(seg.actor, np.arange(v))],
        end,
        max(30, size.ping_seconds),
        rng,
        noise_m=8.0,
    )
    return fx


def _parcel_events(rng, day, cour, cat, w1, w2, shift_start, lunch, ts, factor):
    """Scans of the parcels delivered and picked up at the couriers' stops."""
    stop_actor = cat([w1["actor"], w2["actor"]])
    stop_t = cat([w1["t"], w2["t"]])
    stop_lat, stop_lng = cat([w1["lat"], w2["lat"]]), cat([w1["lng"], w2["lng"]])
    parcels = cat([w1["parcels"], w2["parcels"]])
    wave_start = cat([shift_start[w1["actor"]] + 600, lunch[w2["actor"]] + 3600])
    pickup_stop = rng.random(stop_actor.size) < 0.2
    # one row per parcel
    p_stop = np.repeat(np.arange(stop_actor.size), parcels)
    p_rank = np.arange(p_stop.size) - np.repeat(np.cumsum(parcels) - parcels, parcels)
    p_t = stop_t[p_stop] + 40.0 * p_rank + rng.uniform(5, 30, p_stop.size)
    p_lat, p_lng = _offset(
        stop_lat[p_stop], stop_lng[p_stop], rng.normal(0, 0.01, p_stop.size), rng.normal(0, 0.01, p_stop.size)
    )
    actor = stop_actor[p_stop]
    courier_id = cour["courier_id"].to_numpy()[actor]
    outlet_id = cour["outlet_id"].to_numpy()[actor]
    olat, olng = cour["lat"].to_numpy()[actor], cour["lng"].to_numpy()[actor]
    hour = np.clip((p_t // 3600).astype(int), 0, 23)
    load = factor[actor, hour]
    is_pickup = pickup_stop[p_stop]
    tag = day.strftime("%y%m%d")
    pid = np.char.add(f"P{tag}", np.char.zfill(np.arange(p_stop.size).astype(str), 7))

    d = ~is_pickup
    # Deliveries: arrived at the outlet some hours before; under a surge the backlog
    # makes parcels wait longer, so more of them miss their promise.
    wait = rng.uniform(1.5, 8.0, d.sum()) * 3600 * (1 + 0.45 * (load[d] - 1))
    arrival_t = np.minimum(p_t[d] - wait, wave_start[p_stop][d] - 300)
    promised = arrival_t + 9 * 3600
    n_d = d.sum()
    frames = []
    common = {"courier_id": courier_id[d], "outlet_id": outlet_id[d], "promised_at": ts(promised)}
    frames.append(
        {
            "parcel_id": pid[d],
            "kind": "arrival",
            "ts": ts(arrival_t),
            "lat": olat[d],
            "lng": olng[d],
            **common,
            "courier_id": np.full(n_d, None),
        }
    )
    frames.append(
        {
            "parcel_id": pid[d],
            "kind": "out_for_delivery",
            "ts": ts(wave_start[p_stop][d]),
            "lat": olat[d],
            "lng": olng[d],
            **common,
        }
    )
    frames.append(
        {
            "parcel_id": pid[d],
            "kind": "delivered",
            "ts": ts(p_t[d]),
            "lat": p_lat[d],
            "lng": p_lng[d],
            **common,
        }
    )
    p = is_pickup
    req_t = p_t[p] - rng.uniform(0.3, 3.0, p.sum()) * 3600
    branches = np.unique(cour["branch_id"].to_numpy())
    dest = branches[rng.integers(0, len(branches), p.sum())]
    expected = p_t[p] + rng.uniform(14, 30, p.sum()) * 3600
    pcommon = {"outlet_id": outlet_id[p], "dest_branch_id": dest, "expected_at": ts(expected)}
    frames.append(
        {
            "parcel_id": pid[p],
            "kind": "pickup_request",
            "ts": ts(req_t),
            "lat": p_lat[p],
            "lng": p_lng[p],
            **pcommon,
        }
    )
    frames.append(
        {
            "parcel_id": pid[p],
            "kind": "pickup",
            "ts": ts(p_t[p]),
            "lat": p_lat[p],
            "lng": p_lng[p],
            "courier_id": courier_id[p],
            **pcommon,
        }
    )
    # Information leads physical flow: the scan-in at the destination outlet says which
    # branch the parcel is for and when its delivery is planned (the stop on a courier's
    # tour, known to the minute only roughly). Drawn last so earlier draws are unchanged.
    planned = p_t[d] + rng.normal(0, 900, n_d)
    frames[0]["dest_branch_id"] = cour["branch_id"].to_numpy()[actor][d]
    frames[0]["expected_at"] = ts(planned)
    out = pl.concat([pl.DataFrame(f) for f in frames], how="diagonal_relaxed")
    return out.with_columns(
        pl.concat_str([pl.col("parcel_id"), pl.col("kind")], separator=":").alias("event_id")
    )


def pick_surges(rng, network, days: list[date], per_day: int) -> pl.DataFrame:
    """Which branches surge when: a promotion or a rainstorm, 2-4 hours, x2.5-x3.5."""
    outlets = network["outlets"].filter(pl.col("kind") == "outlet")
    busy = (
        outlets.group_by("branch_id")
        .agg(pl.col("capacity_couriers").sum())
        .filter(pl.col("capacity_couriers") >= 30)
        .sort("branch_id")["branch_id"]
        .to_numpy()
    )
    rows = []
    for day in days:
        chosen = rng.choice(busy, size=min(per_day, len(busy)), replace=False)
        for b in chosen:
            start = int(rng.choice([9, 10, 14, 15]))
            length = int(rng.integers(2, 5))
            midnight = _local_midnight_utc(day).astype(datetime)
            rows.append(
                {
                    "branch_id": str(b),
                    "start_hour": midnight + timedelta(hours=start),
                    "end_hour": midnight + timedelta(hours=start + length),
                    "factor": float(np.round(rng.uniform(2.5, 3.5), 2)),
                    "cause": str(rng.choice(["promotion", "rainstorm"])),
                }
            )
    return pl.DataFrame(rows)


# -- the whole demo -----------------------------------------------------------------------------
def generate(
    store: Store,
    size: str = "default",
    seed: int = 7,
    days: int = 2,
    end_date: date | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Create the tree (if missing) and the demo network and days in ``store``.

    Returns counts of what was stored. Re-running with the same arguments adds nothing
    (every record has a stable id).
    """
    if size not in SIZES:
        raise ValueError(f"unknown demo size {size!r}; use one of {', '.join(SIZES)}")
    spec = SIZES[size]
    say = progress or (lambda msg: None)
    end_date = end_date or default_end_date()
    if not store.has_tree():
        say("building the organisation tree from the China boundaries")
        store.save_tree(load_tree())
    say(f"placing outlets and {spec.couriers:,} couriers in {spec.cities} cities")
    net = build_network(store, spec, seed)
    for name, key in (
        ("outlets", "outlet_id"),
        ("couriers", "courier_id"),
        ("vehicles", "vehicle_id"),
        ("devices", "device_id"),
    ):
        store.upsert(name, net[name], key)
    day_list = [end_date - timedelta(days=i) for i in range(days - 1, -1, -1)]
    surges = pick_surges(np.random.default_rng([seed, 1]), net, day_list, spec.surges_per_day)
    with store._write_lock:
        store._con.execute("DELETE FROM demo_surges")
        store._con.execute("INSERT INTO demo_surges SELECT * FROM surges")
    totals = {"pings": 0, "parcel_events": 0, "refused": 0}
    for i, day in enumerate(day_list, 1):
        say(f"day {i}/{len(day_list)} {day}: simulating couriers, vans and parcels")
        pings, events = generate_day(net, day, spec, seed, surges)
        say(f"day {i}/{len(day_list)} {day}: storing {len(pings):,} pings and {len(events):,} parcel events")
        for frame, kind in ((pings, "pings"), (events, "parcel_events")):
            for start in range(0, len(frame), 2_000_000):
                part = frame.slice(start, 2_000_000).with_row_index("_row", offset=start + 1)
                stored, _dup, bad = store.ingest_pings(part) if kind == "pings" else store.ingest_events(part)
                totals[kind] += stored
                totals["refused"] += len(bad)
    store.set_meta("demo_size", size)
    store.set_meta("demo_seed", seed)
    store.set_meta("demo_end_date", end_date.isoformat())
    return totals
