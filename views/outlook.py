"""The outlook of a view: predicted peak-load alerts and the moves suggested for them.

Kept in the model's cache per (scope, issued hour), computed one at a time and giving way
to the callbacks being served; prepared ahead for the views a user is likely to open next
(:class:`Ahead`). The figures come from :func:`views.forecast.outlook`; the panel that
shows them is ``pages/outlook.py``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import datetime, timedelta

from data.store import forecast_reads as fq
from data.store import tracking
from views import forecast as vf

log = logging.getLogger(__name__)

#: Predicted alerts listed at most (most severe first).
MAX_ALERTS = 8


#: Hours ahead the panel forecasts (``views.forecast.outlook``'s default).
HORIZON = 6


#: Seconds the tree, rosters and travel modes read for outlooks are kept (they change
#: only when couriers, vehicles or outlets are registered).
STATIC_TTL = 60.0


#: Seconds an outlook is reused after the data it was made from changed (a live day
#: changes with every commit, about every second): a forecast of the next hours made half
#: a minute ago still holds, and making one takes seconds of a core that ingest needs.
REFRESH_SECONDS = 30.0


#: Seconds an outlook made for older data is still shown while a new one is made in the
#: background: a person sees the panel at once instead of waiting for a forecast that a
#: machine busy with ingest makes slowly.
STALE_SECONDS = 300.0


#: Seconds an outlook computation waits, at each of its steps, for the callbacks being
#: served (map, KPIs) to finish before it takes a core from them.
PATIENCE = 2.0


def _reach(issued: datetime, horizon: int) -> tuple[datetime, datetime]:
    """The time span an outlook issued at ``issued`` reads from the store."""
    from ops import forecast as fc

    back = max(fc.candidate_days(fc.PARAMS)) * fc.DAY + fq.PIPELINE_LOOKBACK
    return issued - back, issued + timedelta(hours=horizon)


def fingerprint(model, scope: str, issued: datetime, horizon: int = HORIZON) -> tuple:
    """What an outlook issued at ``issued`` depends on: the data fingerprints
    (``Model.version``) of the local days it reads (the earlier days of the baseline and
    the pipeline, up to the end of its horizon) and the scope's newest hour up to that
    end (which forecast hours can already be confirmed). A finished day's outlook keeps
    its fingerprint; data arriving for a live day changes it."""
    lo, hi = _reach(issued, horizon)
    days = []
    for d in model.dates():
        a, b = model.day_window(d)
        if b > lo and a < hi:
            days.append((d, model.version(d)))
    newest = model.data_hours(scope)[1]
    return (tuple(days), None if newest is None else min(newest, hi))


class GiveWay:
    """The pause between the steps of an outlook computation: waits for the callbacks
    being served (an ``Activity``) to finish, at most ``patience`` seconds, in short waits
    so that a caller needing an outlook now (``Model.outlook_wanted``) or ``until()``
    (the computation is no longer wanted: its view was left, or a user waits for another
    outlook) ends the waiting at once."""

    def __init__(self, model, activity=None, patience: float = PATIENCE):
        self.model = model
        self.activity = activity
        self.patience = patience

    def __call__(self, until=None) -> None:
        end = time.monotonic() + self.patience
        while self.activity is not None and not self.model.outlook_wanted and time.monotonic() < end:
            if until is not None and until():
                return
            if self.activity.wait_idle(0.1):
                return


class Superseded(Exception):
    """The view an outlook was being computed for has been left."""


def windows(model, issued: datetime, horizon: int = HORIZON) -> list[tuple[datetime, datetime]]:
    """UTC windows of the local days holding data that an outlook issued at ``issued``
    reads (oldest first): the days whose network-wide frames it is sliced from."""
    lo, hi = _reach(issued, horizon)
    out = []
    for d in model.dates():
        a, b = model.day_window(d)
        if b > lo and a < hi:
            out.append((a, b))
    return out


def network(model, issued: datetime, build: bool = False, pause=None):
    """The network-wide frames an outlook issued at ``issued`` is sliced from, with the
    irregular branches (``data.store.day_cache.ForecastDays.frames``); ``None`` when they are not
    kept and ``build`` is false."""
    return model.forecast.frames(windows(model, issued), build, pause)


def _direct(model, scope: str, net) -> bool:
    """Whether ``scope`` is answered by scoped reads rather than slices: no frames kept,
    or one of its branches has parcels whose part depends on the scope (re-routed)."""
    if net is None:
        return True
    return bool(net[1]) and not net[1].isdisjoint(model.branches_of(scope).to_list())


def _scoped(model, scope: str, net) -> dict:
    """The frames an outlook of ``scope`` is sliced from: the scope's rows of the
    network-wide ones (kept with them for the next hours of the same view), or all of
    them at the root."""
    if scope == model.root():
        return net[0]
    return net.scoped(scope, lambda: model.branches_of(scope))


def outlook(
    model, scope: str, day: str, hour: int, pause=None, wanted=None, background: bool = False
) -> dict:
    """The outlook issued at the start of the selected local hour.

    Kept in the model's cache per (scope, issued hour) and recomputed only when its
    :func:`fingerprint` changes; equal to ``views.forecast.outlook`` (the
    uncached path). Its inputs are slices of the network-wide frames of the days it
    reads (:func:`network`) when those are kept and the scope holds no re-routed parcels,
    else read for the scope. One outlook is computed at a time (``Model.outlook_lock``),
    so the forecasting of a burst of views never takes both cores; ``pause`` is called
    between its steps. With ``wanted``, a computation whose view has been left
    (``wanted()`` false) stops and raises :class:`Superseded`. A ``background``
    computation (a view prepared ahead) also stops when a user's request waits for
    another outlook. A :class:`GiveWay` pause ends as soon as the computation is no
    longer wanted, which then stops at once instead of after the pause.
    """
    model.store.check_scope(scope)
    start, _ = model.hour_window(day, hour)
    key = ("outlook", scope, start)

    def waited_for() -> bool:
        with model.outlook_wanted_lock:
            return any(k != key for k, n in model.outlook_foreground.items() if n > 0)

    def stop() -> bool:
        # the computation is no longer wanted: check() stops it, and a pause ends early
        return (background and waited_for()) or (
            wanted is not None and not model.outlook_wanted and not wanted()
        )

    def check():
        if stop():
            raise Superseded(scope, start)

    def step():
        check()
        if pause is not None and not model.outlook_wanted:
            if isinstance(pause, GiveWay):
                pause(stop)
            else:
                pause()
            check()

    def make():
        with model.outlook_lock:
            check()
            made = time.monotonic()
            made_now = _forecast(model, scope, start, step)
            with model.outlook_wanted_lock:
                if len(model.outlook_made) > 4096:  # bounded: views of many scopes and hours
                    model.outlook_made.clear()
                model.outlook_made[key] = (version, made)
            return made_now

    version = fingerprint(model, scope, start)
    kept = recent(model, key, version, (scope, day, hour) if not background else None)
    if kept is not None:
        return kept
    if background:
        return model.cache.get_current(key, version, make)
    with model.outlook_wanted_lock:
        model.outlook_foreground[key] = model.outlook_foreground.get(key, 0) + 1
        # A caller that cannot wait (the map): whatever is computing stops giving way meanwhile.
        if pause is None and wanted is None:
            model.outlook_wanted += 1
    try:
        return model.cache.get_current(key, version, make)
    finally:
        with model.outlook_wanted_lock:
            n = model.outlook_foreground.pop(key) - 1
            if n > 0:
                model.outlook_foreground[key] = n
            if pause is None and wanted is None:
                model.outlook_wanted -= 1


def _forecast(model, scope: str, start: datetime, step) -> dict:
    """The outlook of ``scope`` issued at ``start``, computed now (``step`` between steps)."""
    memo = lambda k, read: model.cache.get(k, read, ttl=STATIC_TTL)  # noqa: E731
    net = network(model, start)
    if _direct(model, scope, net):
        return vf.outlook(model.store, scope, start, model.settings, memo=memo, pause=step)
    return vf.outlook(
        model.store,
        scope,
        start,
        model.settings,
        memo=memo,
        pause=step,
        net=_scoped(model, scope, net),
        newest=model.data_hours(scope)[1],
    )


def recent(model, key, version, view=None):
    """An outlook of ``key`` made for other data that may stand for the one of ``version``,
    else None.

    * Made less than ``model.outlook_refresh`` seconds ago (:data:`REFRESH_SECONDS`): it
      still holds. An answer built on it ends when it would be made again.
    * Made less than ``model.outlook_stale`` seconds ago (:data:`STALE_SECONDS`) and asked
      for a ``view`` (scope, day, hour) a person waits for: it is given at once while a
      new one is made in the background (:func:`_refresh_later`); making one can take many
      seconds on a machine busy with ingest. An answer built on it is not kept.
    """
    with model.outlook_wanted_lock:
        made = model.outlook_made.get(key)
    if made is None or made[0] == version:
        return None
    age = time.monotonic() - made[1]
    if age >= max(model.outlook_refresh, model.outlook_stale if view is not None else 0.0):
        return None
    kept = model.cache.peek((key, made[0]))
    if kept is None:
        return None
    if age < model.outlook_refresh:
        tracking.expires_at(made[1] + model.outlook_refresh)
    else:
        tracking.store_read()  # its successor is being made: nothing says when it lands
        _refresh_later(model, *view)
    return kept


def _refresh_later(model, scope: str, day: str, hour: int) -> None:
    """Make the outlook of a view again in a background thread (one per view at a time),
    giving way to the callbacks being served as the panel's other work does."""
    view = (scope, day, hour)
    with model.outlook_wanted_lock:
        if view in model.outlook_refreshing:
            return
        model.outlook_refreshing.add(view)

    def run() -> None:
        try:
            outlook(model, scope, day, hour, model.outlook_pause, background=True)
        except Superseded:
            pass  # a user waits for another outlook: the next request starts it again
        except Exception:  # noqa: BLE001 - the kept outlook stands; the next request retries
            log.exception("making the outlook of %s again failed", view)
        finally:
            with model.outlook_wanted_lock:
                model.outlook_refreshing.discard(view)

    threading.Thread(target=run, name="emap-outlook-refresh", daemon=True).start()


def rows(model, viewer, scope: str, day: str, hour: int, pause=None, wanted=None) -> list[dict]:
    """Predicted alerts with their suggestions inside ``scope``, as plain dicts for
    rendering, for ``viewer`` (``auth.viewer.Viewer``; ``OutsideScope`` unless they hold
    ``scope``)."""
    viewer.require(scope)
    o = outlook(model, scope, day, hour, pause, wanted)
    alerts = o["alerts"].sort("excess", descending=True).head(MAX_ALERTS).sort("start", "alert_id")
    names = dict(model.nodes().select("node_id", "name").iter_rows())
    outlet_names = _outlet_names(model)
    # the moves of each hour in their order: one pass instead of a filter of the whole
    # frame per alert (the panel is asked for on every view)
    moves_in: dict = {}
    for r in o["moves"].iter_rows(named=True):
        moves_in.setdefault(r["hour"], []).append(r)
    out = []
    for a in alerts.iter_rows(named=True):
        cells = set(int(c) for c in a["cells"])
        m = [r for r in moves_in.get(a["start"], ()) if r["zone_cell"] in cells]
        out.append(
            {
                **a,
                "branch": names.get(a["branch_id"], a["branch_id"] or ""),
                "start_local": model.local(a["start"]).strftime("%H:00"),
                "end_local": model.local(a["end"] + timedelta(hours=1)).strftime("%H:00"),
                "moves": [
                    {
                        **r,
                        "source": names.get(r["source_branch_id"], r["source_branch_id"]),
                        "outlet_name": outlet_names.get(r["source_outlet"]) if r["source_outlet"] else None,
                    }
                    for r in m
                ],
            }
        )
    return out


def _outlet_names(model) -> dict:
    return model.cache.get(
        ("outlet-names",),
        lambda: dict(model.store.cursor().execute("SELECT outlet_id, name FROM outlets").fetchall()),
    )


class Ahead:
    """One background worker preparing the outlooks a user is likely to ask for next, so
    that the panel mostly reads the cache: after each view, the network-wide frames of the
    days its forecasts read (if not kept), the outlook of the hour after (the ▶ button
    steps to it), then, when the frames are kept, those of its busiest children at the
    same hour (the likely next drill-downs). Only the newest view counts; hours after the newest data are left alone
    (a live view moves on when the data does); a user's request for another outlook
    interrupts a preparation, which resumes after it."""

    def __init__(self, model, pause=None, children: int = 6):
        self.model = model
        self.pause = pause
        self.children = children
        self.queue: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="emap-outlook-ahead", daemon=True)
        self.thread.start()

    def after_view(self, viewer, scope: str, day: str, hour: int) -> None:
        """Prepare ahead what ``viewer`` may open next from the view of ``scope``: only
        nodes the viewer holds (``scope`` itself and its children)."""
        viewer.require(scope)
        self.queue.put((scope, day, int(hour)))

    def _left(self) -> bool:
        return not self.queue.empty()

    def _run(self) -> None:
        while True:
            scope, day, hour = self.queue.get()
            try:
                if not self._left():
                    self._prepare(scope, day, hour)
            except Exception:  # a failed or left look ahead only means a slower next view
                pass
            finally:
                self.queue.task_done()

    def _prepare(self, scope: str, day: str, hour: int) -> None:
        model = self.model
        newest = model.data_hours(scope)[1]
        if newest is None:
            return
        # the days' frames first: then every job is a slice
        sliced = network(model, model.hour_window(day, hour)[0], build=True, pause=self._step) is not None
        jobs = []
        if hour < 23 and model.hour_window(day, hour + 1)[0] <= newest:
            jobs.append((scope, hour + 1))
        # the children only as slices (read per scope, six of them would take long)
        if self.children and sliced:
            jobs += [(c, hour) for c in model.drill_targets(scope, day, hour, self.children)]
        for s, h in jobs:
            network(model, model.hour_window(day, h)[0], build=True, pause=self._step)
            for _attempt in range(3):
                if self._left():
                    return
                try:
                    outlook(model, s, day, h, self.pause, lambda: not self._left(), background=True)
                    break
                except Superseded:
                    self._wait_foreground()

    def _step(self) -> None:
        if self._left():
            raise Superseded("frames")
        if self.pause is not None:
            self.pause()

    def _wait_foreground(self, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end and not self._left():
            with self.model.outlook_wanted_lock:
                if not any(self.model.outlook_foreground.values()):
                    return
            time.sleep(0.02)
