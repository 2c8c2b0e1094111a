# ruff: noqa: F811  (the shared demo fixtures are imported by name and used as arguments)
"""The predicted-alerts section of the alert panel: rows from the view model, suggestions
attached to the zone they relieve, decisions recorded through the callback's call."""

import time
from datetime import UTC, timedelta

import polars as pl

from pages import outlook
from tests.forecast_support import (  # noqa: F401
    arrivals,
    forecast_demo_path,
    forecast_settings,
    forecast_store,
)
from views import outlook as vo
from views import state as st
from views.model import Model


def test_rows_list_predicted_alerts_before_the_surge_with_their_moves(forecast_store, forecast_settings):
    s = forecast_store.sql("SELECT * FROM demo_surges ORDER BY start_hour DESC LIMIT 1").row(0, named=True)
    model = Model(forecast_store, forecast_settings)
    local = model.local(s["start_hour"] - timedelta(hours=1))
    region = model.node(s["branch_id"])["region_id"]
    rows = vo.rows(model, model.everyone(), region, local.date().isoformat(), local.hour)
    assert 0 < len(rows) <= vo.MAX_ALERTS
    mine = [r for r in rows if r["branch_id"] == s["branch_id"]]
    assert mine and mine[0]["start"] <= s["start_hour"]
    assert {r["status"] for r in rows} <= {"confirmed", "missed", "pending"}
    assert all(r["start_local"].endswith(":00") and r["branch"] for r in rows)
    moves = [m for r in rows for m in r["moves"]]
    assert moves and all(m["couriers"] + m["vehicles"] > 0 and m["source"] for m in moves)
    for r in rows:
        assert all(int(m["zone_cell"]) in {int(c) for c in r["cells"]} for m in r["moves"])
    # the second call is served from the model's cache
    assert vo.rows(model, model.everyone(), region, local.date().isoformat(), local.hour) == rows


def _post(
    client, output: str, prop: str, inputs: list, state: dict | None = None, triggered=None, states=None
):
    body = {
        "output": f"{output}.{prop}",
        "outputs": {"id": output, "property": prop},
        "inputs": inputs,
        "changedPropIds": triggered or [f"{inputs[0]['id']}.{inputs[0]['property']}"],
    }
    if state is not None:
        body["state"] = [{"id": "state", "property": "data", "value": state}]
    if states is not None:
        body["state"] = states
    r = client.post("/_dash-update-component", json=body)
    assert r.status_code in (200, 204), r.data[:500]
    return r.get_json() if r.status_code == 200 else None


def test_panel_lists_predictions_and_records_a_decision(forecast_demo_path, forecast_settings, tmp_path):
    import json
    import shutil

    from data.store import decisions
    from data.store.database import Store
    from pages.app import build_app
    from views import state as st

    path = tmp_path / "emap.duckdb"
    shutil.copy(forecast_demo_path, path)
    with Store(path) as store:
        app = build_app(store, forecast_settings, warm=False, prefetch=False)
        s = store.sql("SELECT * FROM demo_surges ORDER BY start_hour DESC LIMIT 1").row(0, named=True)
        model = Model(store, forecast_settings)
        local = model.local(s["start_hour"] - timedelta(hours=1))
        view = st.default(node=s["branch_id"], day=local.date().isoformat(), hour=local.hour)
        client = app.server.test_client()
        page = [{"id": "outlook-client", "property": "data", "value": "page-1"}]
        out = _post(
            client, "outlook", "children", [{"id": "state", "property": "data", "value": view}], states=page
        )
        text = json.dumps(out, ensure_ascii=False)
        assert "已证实" in text  # the surge's prediction came true
        buttons = _buttons(out["response"]["outlook"]["children"])
        assert {b["decision"] for b in buttons} == {"accepted", "dismissed"}
        button = buttons[0]
        key = json.dumps(button, separators=(",", ":"), sort_keys=True)
        note = _post(
            client,
            "outlook-note",
            "children",
            [[{"id": b, "property": "n_clicks", "value": int(b == button)} for b in buttons]],
            state=view,
            triggered=[f"{key}.n_clicks"],
        )
        assert "已记录" in json.dumps(note, ensure_ascii=False)
        rec = decisions.decisions(store, view["node"]).row(0, named=True)
        assert rec["decision"] == button["decision"] and rec["couriers"] == button["n"]
        assert rec["source_cell"] == int(button["src"]) and rec["branch_id"] == button["branch"]


def _buttons(children) -> list[dict]:
    found = []

    def walk(node):
        if isinstance(node, list):
            for n in node:
                walk(n)
        elif isinstance(node, dict):
            props = node.get("props", {})
            if isinstance(props.get("id"), dict) and props["id"].get("type") == "decide":
                found.append(props["id"])
            walk(props.get("children"))

    walk(children)
    return found


def test_map_draws_the_suggested_moves_as_arrows(forecast_store, forecast_settings):
    s = forecast_store.sql("SELECT * FROM demo_surges ORDER BY start_hour DESC LIMIT 1").row(0, named=True)
    model = Model(forecast_store, forecast_settings)
    local = model.local(s["start_hour"] - timedelta(hours=1))
    region = model.node(s["branch_id"])["region_id"]
    state = {
        "node": region,
        "date": local.date().isoformat(),
        "hour": local.hour,
        "metric": "scans",
        "layers": ["dispatch_arrows"],
        "basemap": "none",
        "zone": None,
    }
    moves = model.next_hour_moves(region, state["date"], local.hour)
    assert len(moves) > 0 and moves["hour"].n_unique() == 1
    traces = model.traces(state, {}, None)
    arrows, labels = traces["dispatch_arrows"], traces["dispatch_labels"]
    assert arrows.get("visible", True) is not False
    assert labels["text"] == [f"+{int(c)}" for c in moves["couriers"]]
    assert sum(v is None for v in arrows["lat"]) == 3 * len(moves)  # shaft and two head strokes each
    off = model.traces({**state, "layers": []}, {}, None)
    assert off["dispatch_arrows"].get("visible") is False or not off["dispatch_arrows"].get("lat")


def _assert_same_outlook(got: dict, want: dict) -> None:
    from polars.testing import assert_frame_equal

    assert set(got) == set(want)
    for key in want:
        assert_frame_equal(got[key], want[key])


def test_cached_outlook_equals_the_uncached_one_and_keeps_to_its_scope(forecast_store, forecast_settings):
    from views import forecast as vf
    from views.cache import Cache

    s = forecast_store.sql("SELECT * FROM demo_surges ORDER BY start_hour DESC LIMIT 1").row(0, named=True)
    model = Model(forecast_store, forecast_settings, Cache(256))
    before = model.local(s["start_hour"] - timedelta(hours=1))
    day = before.date().isoformat()
    region = model.node(s["branch_id"])["region_id"]
    branch = s["branch_id"]
    inside = set(model.branches_of(branch).to_list())
    region_nodes = set()
    for scope in (region, branch, region):  # the region again: its entry, not the branch's
        for hour in (before.hour, before.hour - 3):
            start, _ = model.hour_window(day, hour)
            cached = vo.outlook(model, scope, day, hour)
            _assert_same_outlook(cached, vf.outlook(forecast_store, scope, start, forecast_settings))
            assert vo.outlook(model, scope, day, hour) is cached  # served from the cache
            if scope == branch:
                assert set(cached["alerts"]["branch_id"].to_list()) <= inside
                assert set(cached["moves"]["branch_id"].to_list()) <= inside
                assert set(cached["moves"]["source_branch_id"].to_list()) <= inside
                assert set(cached["nodes"]["node_id"].to_list()) <= inside
            else:
                region_nodes |= set(cached["nodes"]["node_id"].to_list())
    # the region's outlook covers other branches: the branch's view really was narrower
    assert region_nodes - inside
    rows = vo.rows(model, model.everyone(), branch, day, before.hour)
    assert all(r["branch_id"] == branch for r in rows)
    assert all(m["source_branch_id"] == branch for r in rows for m in r["moves"])


def test_new_data_for_a_live_day_changes_the_cached_outlook(forecast_demo_path, forecast_settings, tmp_path):
    import shutil

    from data.ingest.validate import check_events
    from data.store.database import Store
    from views import forecast as vf
    from views.cache import Cache

    path = tmp_path / "emap.duckdb"
    shutil.copy(forecast_demo_path, path)
    with Store(path) as store:
        s = store.sql("SELECT * FROM demo_surges ORDER BY start_hour DESC LIMIT 1").row(0, named=True)
        model = Model(store, forecast_settings, Cache(256))
        model.days.check_every = 0.0  # read the days' fingerprints on every request
        local = model.local(s["start_hour"] - timedelta(hours=1))
        day, hour = local.date().isoformat(), local.hour
        region = model.node(s["branch_id"])["region_id"]
        start, _ = model.hour_window(day, hour)
        old = vo.outlook(model, region, day, hour)
        assert vo.outlook(model, region, day, hour) is old
        # a surge announced: parcels scanned in for the branch, expected in two hours
        lat, lng = store.sql(
            "SELECT lat, lng FROM outlets WHERE branch_id = ? ORDER BY outlet_id LIMIT 1", [s["branch_id"]]
        ).row(0)
        n = 400
        latest, expected = start - timedelta(minutes=30), start + timedelta(hours=2, minutes=10)
        events = arrivals("late", n, latest, s["branch_id"], expected, lat, lng)
        assert store.ingest_events(check_events(events)[0])[0] == n
        # made less than outlook_refresh seconds ago, the outlook is reused ...
        model.outlook_refresh = 600.0
        assert vo.outlook(model, region, day, hour) is old
        # ... after it, a person is shown it at once while the new one is made aside ...
        model.outlook_refresh = 0.0
        assert vo.outlook(model, region, day, hour) is old
        deadline = time.monotonic() + 120
        while (new := vo.outlook(model, region, day, hour)) is old and time.monotonic() < deadline:
            time.sleep(0.2)
        assert new is not old, "the outlook was not made again in the background"
        assert not model.outlook_refreshing
        _assert_same_outlook(new, vf.outlook(store, region, start, forecast_settings))
        hour2 = pl.col("hour") == start + timedelta(hours=2)
        mine = (pl.col("node_id") == s["branch_id"]) & hour2
        assert new["nodes"].filter(mine)["workload"].sum() > old["nodes"].filter(mine)["workload"].sum()


def test_the_next_hour_is_prepared_after_a_view(forecast_store, forecast_settings):
    from views import forecast as vf
    from views.cache import Cache

    s = forecast_store.sql("SELECT * FROM demo_surges ORDER BY start_hour DESC LIMIT 1").row(0, named=True)
    model = Model(forecast_store, forecast_settings, Cache(256))
    local = model.local(s["start_hour"] - timedelta(hours=2))
    day, region = local.date().isoformat(), model.node(s["branch_id"])["region_id"]
    ahead = vo.Ahead(model)
    ahead.after_view(model.everyone(), region, day, local.hour)
    ahead.queue.join()

    def computing():
        raise AssertionError("the next hour's outlook was not prepared")

    # served from the cache: a computation would call ``pause`` between its reads
    got = vo.outlook(model, region, day, local.hour + 1, pause=computing)
    start, _ = model.hour_window(day, local.hour + 1)
    _assert_same_outlook(got, vf.outlook(forecast_store, region, start, forecast_settings))


def test_a_superseded_request_stops_and_leaves_nothing_behind(forecast_store, forecast_settings):
    from views import forecast as vf
    from views.cache import Cache

    requests = outlook.Requests()
    first = requests.begin("page-1")
    other = requests.begin("page-2")
    assert requests.newest("page-1", first)
    second = requests.begin("page-1")  # the page asked again (the next hour)
    assert not requests.newest("page-1", first) and requests.newest("page-1", second)
    assert requests.newest("page-2", other)  # another page is not affected

    s = forecast_store.sql("SELECT * FROM demo_surges ORDER BY start_hour DESC LIMIT 1").row(0, named=True)
    model = Model(forecast_store, forecast_settings, Cache(256))
    local = model.local(s["start_hour"] - timedelta(hours=1))
    day, region = local.date().isoformat(), model.node(s["branch_id"])["region_id"]
    try:
        vo.outlook(model, region, day, local.hour, wanted=lambda: requests.newest("page-1", first))
        raise AssertionError("a superseded request went on computing")
    except vo.Superseded:
        pass
    got = vo.outlook(model, region, day, local.hour, wanted=lambda: requests.newest("page-1", second))
    start, _ = model.hour_window(day, local.hour)
    _assert_same_outlook(got, vf.outlook(forecast_store, region, start, forecast_settings))


def test_outlooks_sliced_from_the_network_frames_equal_the_uncached_ones(forecast_store, forecast_settings):
    from views import forecast as vf
    from views.cache import Cache

    s = forecast_store.sql("SELECT * FROM demo_surges ORDER BY start_hour DESC LIMIT 1").row(0, named=True)
    model = Model(forecast_store, forecast_settings, Cache(256))
    before = model.local(s["start_hour"] - timedelta(hours=1))
    day = before.date().isoformat()
    start, _ = model.hour_window(day, before.hour)
    assert vo.network(model, start) is None  # nothing kept yet: a view reads its scope
    frames, irregular = vo.network(model, start, build=True)
    assert vo.network(model, start)[0] is frames and irregular == set()
    branch = s["branch_id"]
    node = model.node(branch)
    inside = set(model.branches_of(branch).to_list())
    for scope in ("hq", node["division_id"], node["region_id"], branch):
        assert not vo._direct(model, scope, (frames, irregular))
        for hour in (before.hour, before.hour + 2):
            start, _ = model.hour_window(day, hour)
            got = vo.outlook(model, scope, day, hour)
            _assert_same_outlook(got, vf.outlook(forecast_store, scope, start, forecast_settings))
            if scope == branch:
                assert set(got["alerts"]["branch_id"].to_list()) <= inside
                assert set(got["moves"]["source_branch_id"].to_list()) <= inside
                assert set(got["nodes"]["node_id"].to_list()) <= inside
    # a slice made no reads of its own: the view's only pauses are between dispatch hours
    calls = []
    start, _ = model.hour_window(day, before.hour + 1)
    got = vo.outlook(model, node["region_id"], day, before.hour + 1, pause=lambda: calls.append(1))
    hours = got["moves"]["hour"].n_unique() if len(got["moves"]) else 0
    assert 0 < len(calls) <= hours + 2


def test_a_scope_with_rerouted_parcels_is_read_not_sliced(forecast_demo_path, forecast_settings, tmp_path):
    import shutil

    from data.ingest.validate import check_events
    from data.store.database import Store
    from views import forecast as vf
    from views.cache import Cache

    path = tmp_path / "emap.duckdb"
    shutil.copy(forecast_demo_path, path)
    with Store(path) as store:
        s = store.sql("SELECT * FROM demo_surges ORDER BY start_hour DESC LIMIT 1").row(0, named=True)
        model = Model(store, forecast_settings, Cache(256))
        local = model.local(s["start_hour"] - timedelta(hours=1))
        day, hour = local.date().isoformat(), local.hour
        start, _ = model.hour_window(day, hour)
        branch = s["branch_id"]
        region = model.node(branch)["region_id"]
        other = store.sql(
            "SELECT node_id FROM nodes WHERE level = 'branch' AND region_id <> ? ORDER BY node_id LIMIT 1",
            [region],
        )["node_id"][0]
        lat, lng = store.sql(
            "SELECT lat, lng FROM outlets WHERE branch_id = ? ORDER BY outlet_id LIMIT 1", [branch]
        ).row(0)
        # parcels scanned for the branch, then re-routed to a branch of another region
        n = 300
        rows = []
        for i in range(n):
            for k, (dest, back) in enumerate(((branch, 3), (other, 1))):
                rows.append(
                    {
                        "event_id": f"rr-{i}-{k}",
                        "parcel_id": f"rr-p{i}",
                        "kind": "arrival",
                        "ts": (start - timedelta(hours=back, seconds=i)).replace(tzinfo=UTC),
                        "lat": lat,
                        "lng": lng,
                        "dest_branch_id": dest,
                        "expected_at": (start + timedelta(hours=2)).replace(tzinfo=UTC),
                    }
                )
        events = pl.DataFrame(rows).with_row_index("_row", offset=1)
        assert store.ingest_events(check_events(events)[0])[0] == 2 * n
        net = vo.network(model, start, build=True)
        assert {branch, other} <= net[1]
        # slicing would be wrong here: the region's scoped read still counts the parcels
        # for the branch (their re-routing is outside the region), the network's does not
        want = vf.forecast_inputs(store, region, [start], 8)["pipeline"]
        sliced = vf.sliced_inputs(store, region, [start], 8, net[0])["pipeline"]
        assert want["parcels"].sum() >= sliced["parcels"].sum() + n
        assert vo._direct(model, region, net)
        got = vo.outlook(model, region, day, hour)
        _assert_same_outlook(got, vf.outlook(store, region, start, forecast_settings))
        # a scope without the re-routed parcels' branches is still sliced
        far = store.sql(
            "SELECT region_id FROM nodes WHERE level = 'branch' AND region_id NOT IN (?, ?) ORDER BY node_id LIMIT 1",
            [region, model.node(other)["region_id"]],
        )["region_id"][0]
        assert not vo._direct(model, far, net)
        _assert_same_outlook(
            vo.outlook(model, far, day, hour), vf.outlook(store, far, start, forecast_settings)
        )


def test_the_busiest_children_are_prepared_after_a_view(forecast_store, forecast_settings):
    from views import forecast as vf
    from views.cache import Cache

    s = forecast_store.sql("SELECT * FROM demo_surges ORDER BY start_hour DESC LIMIT 1").row(0, named=True)
    model = Model(forecast_store, forecast_settings, Cache(256))
    local = model.local(s["start_hour"] - timedelta(hours=1))
    day, region = local.date().isoformat(), model.node(s["branch_id"])["region_id"]
    kids = model.drill_targets(region, day, local.hour, 2)
    assert kids
    ahead = vo.Ahead(model, children=2)
    ahead.after_view(model.everyone(), region, day, local.hour)
    ahead.queue.join()
    start, _ = model.hour_window(day, local.hour)
    assert vo.network(model, start) is not None  # the days' frames were read ahead

    def computing():
        raise AssertionError("the child's outlook was not prepared")

    for kid in kids:
        got = vo.outlook(model, kid, day, local.hour, pause=computing)
        _assert_same_outlook(got, vf.outlook(forecast_store, kid, start, forecast_settings))


def test_a_pause_ends_when_its_computation_is_no_longer_wanted(forecast_store, forecast_settings):
    """Between its steps a computation waits for the callbacks being served, but not once
    its view has been left, nor (a preparation ahead) once a user waits for another
    outlook: it stops at once, leaving the core and the lock to the user's request."""
    import threading
    import time

    from views.cache import Cache
    from views.prefetch import Activity

    s = forecast_store.sql("SELECT * FROM demo_surges ORDER BY start_hour DESC LIMIT 1").row(0, named=True)
    model = Model(forecast_store, forecast_settings, Cache(256))
    local = model.local(s["start_hour"] - timedelta(hours=1))
    day, region = local.date().isoformat(), model.node(s["branch_id"])["region_id"]
    busy = Activity()
    busy.enter()  # a callback that never ends: every pause would wait its whole patience
    pause = vo.GiveWay(model, busy, patience=60.0)

    left = threading.Event()
    threading.Timer(0.5, left.set).start()
    t = time.monotonic()
    try:
        vo.outlook(model, region, day, local.hour, pause, wanted=lambda: not left.is_set())
        raise AssertionError("a left view went on computing")
    except vo.Superseded:
        pass
    assert time.monotonic() - t < 20.0  # not a whole patience of 60 s

    other = ("outlook", region, model.hour_window(day, local.hour + 2)[0])
    waiting = threading.Timer(0.5, lambda: model.outlook_foreground.__setitem__(other, 1))
    waiting.start()  # a user's request for another outlook arrives during a pause
    t = time.monotonic()
    try:
        vo.outlook(model, region, day, local.hour + 1, pause, lambda: True, background=True)
        raise AssertionError("a preparation went on while a user waited for another outlook")
    except vo.Superseded:
        pass
    finally:
        waiting.join()
        model.outlook_foreground.pop(other, None)
    assert time.monotonic() - t < 20.0


def test_a_view_opened_by_its_address_queues_its_next_hour_before_its_own_answer(
    forecast_store, forecast_settings, monkeypatch
):
    """A page's first panel request queues its next hour at once (prepared as soon as
    that outlook is done, even when the user steps on before the answer); later requests
    queue theirs after their answer, and none when superseded."""
    from dash import Dash, html

    from pages import ids

    s = forecast_store.sql("SELECT * FROM demo_surges ORDER BY start_hour DESC LIMIT 1").row(0, named=True)
    model = Model(forecast_store, forecast_settings)
    local = model.local(s["start_hour"] - timedelta(hours=1))
    day, region = local.date().isoformat(), model.node(s["branch_id"])["region_id"]
    queued = []
    monkeypatch.setattr(vo.Ahead, "_run", lambda self: None)  # no worker: record only
    monkeypatch.setattr(vo.Ahead, "after_view", lambda self, viewer, *view: queued.append(view))

    seen = []

    def superseded(*_a, **_k):  # the user stepped on before the answer
        seen.append(len(queued))
        raise vo.Superseded(region)

    monkeypatch.setattr(outlook, "rows", superseded)
    app = Dash(__name__)
    app.layout = html.Div([html.Div(id=ids.OUTLOOK), html.Div(id=ids.OUTLOOK_NOTE)])
    outlook.register(app, model, {"en": {}}, ahead=True)
    client = app.server.test_client()
    view = {**st.default(node=region, day=day, hour=local.hour), "lang": "en"}
    page = [{"id": ids.OUTLOOK_CLIENT, "property": "data", "value": "page-1"}]
    inputs = [{"id": ids.STATE, "property": "data", "value": view}]
    assert _post(client, ids.OUTLOOK, "children", inputs, states=page) is None  # superseded: no answer
    assert seen == [1] and queued == [(region, day, local.hour)]  # queued before the answer
    later = [{"id": ids.STATE, "property": "data", "value": {**view, "hour": local.hour + 1}}]
    assert _post(client, ids.OUTLOOK, "children", later, states=page) is None
    assert queued == [(region, day, local.hour)]  # a later request superseded: nothing queued
