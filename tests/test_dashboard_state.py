"""The view state <-> URL query string, and the view model's time conversion."""

from views import state as st


def test_roundtrip():
    s = st.default(node="r-440300", day="2026-11-20", hour=9)
    s.update(metric="load_ratio", layers=["hexes", "zones"], lang="en", basemap="amap", zone=2)
    q = st.encode(s)
    back = st.parse(q, st.default(day="2026-11-19"), {"hq", "r-440300"}, ["2026-11-19", "2026-11-20"])
    assert back == s


def test_invalid_parts_fall_back():
    base = st.default(day="2026-11-20", hour=10)
    s = st.parse(
        "?node=b-999999&date=1999-01-01&hour=25&metric=eval&layers=hexes,bogus&lang=fr&zone=x",
        base,
        {"hq"},
        ["2026-11-20"],
    )
    assert s["node"] == "hq" and s["date"] == "2026-11-20" and s["hour"] == 10
    assert s["metric"] == base["metric"] and s["layers"] == ["hexes"] and s["lang"] == "zh"
    assert s["zone"] is None


def test_empty_query_is_the_default():
    base = st.default(day="2026-11-20")
    assert st.parse("", base, {"hq"}, ["2026-11-20"]) == base


def test_hour_window_is_local_time(small_store):
    from config import Settings
    from views.model import Model

    m = Model(small_store, Settings.from_env())
    start, end = m.hour_window("2026-11-20", 0)
    assert (start.day, start.hour, (end - start).seconds) == (19, 16, 3600)
    assert m.local(start).hour == 0


def test_a_finished_day_opens_on_its_busiest_hour_a_live_one_on_its_newest(small_store):
    from datetime import timedelta

    from config import Settings
    from views.model import Model

    model = Model(small_store, Settings.from_env({}))
    day, newest_hour = model.newest()
    trend = model.trend("hq", day)
    busiest = int(trend.sort("scans", descending=True)["local_hour"][0])
    assert busiest != newest_hour  # the demo's newest hour is the quiet evening
    hi = model.data_hours("hq")[1]
    assert model.landing("hq", now=hi + timedelta(days=2)) == (day, busiest)
    assert model.landing("hq", now=hi + timedelta(minutes=30)) == (day, newest_hour)


def test_the_reducer_steps_controls_buttons_and_pattern_triggers(small_model):
    """One step of the view-state reducer per trigger; a breadcrumb's pattern id arrives
    as Dash's (unhashable) AttributeDict."""
    import pytest
    from dash._utils import AttributeDict

    from auth.viewer import OutsideScope, of_store
    from pages import ids
    from pages.view_state import step
    from views.model import ViewerModel

    m = ViewerModel(small_model, small_model.everyone())
    base = st.default(node="r-440300", day="2026-11-20", hour=0)
    s = step(m, dict(base), ids.HOUR, {ids.HOUR: 7})
    assert s["hour"] == 7 and s["zone"] is None
    assert step(m, dict(base), ids.HOUR, {ids.HOUR: None})["hour"] == 0  # no value: unchanged
    assert step(m, dict(base), ids.HOUR_PREV, {})["hour"] == 23
    crumb = AttributeDict(type=ids.CRUMB, node="hq")
    assert step(m, dict(base), crumb, {})["node"] == "hq"
    assert step(m, dict(base), crumb, {}, pressed=False) is None  # drawn, not clicked
    assert step(m, dict(base), ids.DRILL, {}, drill="b-440305")["node"] == "b-440305"
    assert step(m, dict(base), ids.MAP, {}, click={"points": [{"location": "nowhere"}]}) is None
    branch = ViewerModel(
        small_model, of_store(small_model.store, {"user_id": "u", "role": "manager", "node_id": "r-440300"})
    )
    with pytest.raises(OutsideScope):
        step(branch, dict(base), AttributeDict(type=ids.CRUMB, node="hq"), {})
