"""Point -> H3 cell indexing: h3ronpy alone against geo._h3_points (EMAP's cells_of).

Usage:
    python bench/bench_cells.py                          # 10 M pings + 10 M points over China, res 9
    python bench/bench_cells.py --batch-rows 0 --repeat 1   # each data set in one call
    python bench/bench_cells.py --rows 2000000 --res 11

Two data sets: the demo's realistic pings (``--pings``, columns lat and lng; made by
``python bench/bench_import.py --rows 10000000``) and as many points spread evenly over
China's bounding box. Each is indexed in batches of ``--batch-rows`` (the importer's
batch size by default) by both ways, once untimed (so that both find the memory they
need already mapped) and then ``--repeat`` times; the best run's CPU seconds
(``time.process_time``, all threads) and wall seconds are printed per 10 M points, with
the share of points that h3ronpy indexed itself (the fallback) and the number of
distinct lattice keys. The two ways' cells are compared and must be equal.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from h3ronpy.vector import coordinates_to_cells  # noqa: E402

from geo import _h3_points  # noqa: E402
from geo.cells import cells_of  # noqa: E402

PINGS = Path("/tmp/emap-bench/pings-default-10000000.parquet")


def h3ronpy_cells(lat, lng, res) -> pl.Series:
    """cells_of as it was: h3ronpy for every point."""
    return pl.Series(coordinates_to_cells(lat, lng, res)).alias("cell")


def run(fn, lat, lng, res, batch) -> tuple[float, float, np.ndarray]:
    """CPU and wall seconds of indexing every batch, and the cells."""
    out = []
    c0, t0 = time.process_time(), time.perf_counter()
    for start in range(0, len(lat), batch):
        out.append(fn(lat[start : start + batch], lng[start : start + batch], res))
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    return cpu, wall, pl.concat(out).to_numpy()


def bench(name, lat, lng, res, batch, repeat) -> None:
    n = len(lat)
    per = 10_000_000 / n
    key = _h3_points.keys(lat, lng, res)
    print(
        f"{name}: {n:,} points, res {res}, batches of {batch:,}; fallback {np.mean(key < 0):.2e} "
        f"of points, {len(np.unique(key)):,} distinct keys"
    )
    best = {}
    for label, fn in (("h3ronpy", h3ronpy_cells), ("new", cells_of)):
        _, _, cells = run(fn, lat, lng, res, batch)  # warm-up
        runs = [run(fn, lat, lng, res, batch)[:2] for _ in range(repeat)]
        best[label] = min(runs)
        cpu, wall = best[label]
        print(f"  {label:8s} CPU {cpu * per:6.2f} s, wall {wall * per:6.2f} s per 10 M points")
        best[label + " cells"] = cells
    if not (best["h3ronpy cells"] == best["new cells"]).all():
        raise SystemExit(f"{name}: the two ways' cells differ")
    print(
        f"  new / h3ronpy: CPU {best['new'][0] / best['h3ronpy'][0]:.0%}, wall {best['new'][1] / best['h3ronpy'][1]:.0%}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pings", type=Path, default=PINGS)
    ap.add_argument("--rows", type=int, default=10_000_000, help="points of each data set")
    ap.add_argument("--res", type=int, default=9)
    ap.add_argument("--batch-rows", type=int, default=1_000_000, help="points per call; 0: all in one")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of each way (the best is printed)")
    args = ap.parse_args()
    if not args.pings.exists():
        print(
            f"{args.pings} is missing; make it with: python bench/bench_import.py --rows 10000000",
            file=sys.stderr,
        )
        return 2
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"load average {load}")
    frame = pl.read_parquet(args.pings, columns=["lat", "lng"], n_rows=args.rows)
    batch = args.batch_rows or args.rows
    bench("pings", frame["lat"].to_numpy(), frame["lng"].to_numpy(), args.res, batch, args.repeat)
    rng = np.random.default_rng(0)
    lat, lng = rng.uniform(18.0, 53.6, args.rows), rng.uniform(73.5, 134.8, args.rows)
    bench("China, evenly", lat, lng, args.res, batch, args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
