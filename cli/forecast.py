"""``python app.py backtest`` and ``python app.py simulate``: how good the forecast is, and
what the dispatch suggestions would have changed, over one day of the store, printed as
tables. What each measures, and the figures themselves: :mod:`views.backtest`."""

from __future__ import annotations

import argparse
from datetime import date

import numpy as np

from ops import dispatch
from ops import forecast as fc

# -- command line -------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by ``backtest`` and ``simulate``."""
    parser.add_argument("--node", default="hq", help="scope: a node id (default hq, the whole network)")
    parser.add_argument("--date", help="local day, YYYY-MM-DD (default: the newest day in the store)")
    parser.add_argument("--horizon", type=int, default=fc.HORIZON, help="backtest: hours ahead (default 6)")
    parser.add_argument(
        "--lead",
        type=int,
        default=1,
        help="simulate: hours ahead the suggestions are made (default 1: at the start of the hour)",
    )
    parser.add_argument(
        "--within",
        choices=["branch", "region"],
        default=dispatch.RULES.within,
        help="simulate: where couriers may come from (default region)",
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="simulate: longest trip to a zone in minutes, at the speed of each mode "
        "(default: the dispatch_max_minutes setting, 15)",
    )
    parser.add_argument(
        "--max-km",
        type=float,
        default=None,
        help="simulate: a cap in street km on every move, on top of the radius of its mode (default none)",
    )


def _fmt(v, pct=True):
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "   -"
    return f"{100 * v:5.1f}%" if pct else f"{v:,.0f}"


def run(args, settings) -> int:
    """Run ``backtest`` or ``simulate`` (``args.command``); print the figures."""
    from cli.store import open_store
    from data.store.database import ScopeError

    store = open_store(settings, read_only=True)
    try:
        return _run(store, args, settings)
    except ScopeError as exc:
        print(f"error: {exc}")
        return 2
    finally:
        store.close()


def _run(store, args, settings) -> int:
    from views.backtest import backtest, newest_day, simulate
    from views.forecast import alert_res

    store.check_scope(args.node)
    day = date.fromisoformat(args.date) if args.date else newest_day(store, args.node, settings.local_tz)
    if day is None:
        print("error: the store holds no data in this scope")
        return 2
    if args.command == "backtest":
        r = backtest(store, args.node, day, settings, horizon=args.horizon)
        print(
            f"backtest of {args.node} on {day} (forecast issued at the start of each local hour, "
            f"cells at res {alert_res(settings)}) in {r['seconds']:.1f}s"
        )
        print(
            "horizon   WAPE  baseline-only   peak cells   hit rate  baseline-only   precision  baseline-only"
        )
        for row in r["horizons"].iter_rows(named=True):
            print(
                f"  +{row['horizon']}h  {_fmt(row['wape'])}       {_fmt(row['wape_baseline'])}   "
                f"{row['peak_cells']:10d}     {_fmt(row['hit_rate'])}         {_fmt(row['hit_rate_baseline'])}"
                f"      {_fmt(row['precision'])}         {_fmt(row['precision_baseline'])}"
            )
        counts = dict(r["alerts"].group_by("status").len().iter_rows()) if len(r["alerts"]) else {}
        print(
            f"predicted alerts: {len(r['alerts'])} "
            f"({counts.get('confirmed', 0)} confirmed, {counts.get('missed', 0)} missed, "
            f"{counts.get('pending', 0)} pending)"
        )
        return 0
    over = {"within": args.within, "max_km": args.max_km}
    if args.max_minutes is not None:
        over["max_minutes"] = args.max_minutes
    rules = dispatch.Rules.from_settings(settings, **over)
    r = simulate(store, args.node, day, settings, lead=args.lead, rules=rules)
    t = r["totals"]
    print(
        f"simulation of {args.node} on {day}: suggestions made {args.lead}h ahead, applied to what happened "
        f"({t['moves']} moves, {t['couriers_moved']:.0f} couriers and {t['vehicles_moved']:.0f} vans moved; "
        f"{t['unavailable']:.0f} suggested from outlets were not idle there) in {r['seconds']:.1f}s"
    )
    radii = ", ".join(f"{m} {rules.radius_km(m):.2f} km" for m in ("walk", "ebike", "van"))
    print(f"move limits: {rules.max_minutes:g} min of travel ({radii})")
    for d in r["distances"].iter_rows(named=True):
        print(
            f"  {d['kind']:8s} {d['mode']:6s} {d['units']:6d} moved   distance median {d['median_km']:.2f} km, "
            f"90% within {d['p90_km']:.2f} km, longest {d['max_km']:.2f} km"
        )
    print("                          before      after")
    print(
        f"overloaded cell-hours   {t['overloaded_before']:8d}   {t['overloaded_after']:8d}"
        f"   ({t['newly_overloaded']} pushed over by the moves)"
    )
    print(f"peak load ratio         {t['peak_before']:8.2f}   {t['peak_after']:8.2f}")
    print(f"late parcels (est.)     {t['late_before']:8.0f}   {t['late_after']:8.0f}")
    return 0
