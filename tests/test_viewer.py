"""The viewer and the view model as a viewer may use it: every read names a node and is
clamped to the viewer's subtree; reads naming no node are closed; the date list survives
whatever hours the store holds."""

from __future__ import annotations

import inspect
from datetime import datetime, timedelta

import pytest

from auth.viewer import OutsideScope, Viewer, operator
from config import Settings
from views import model as model_mod
from views.model import OPEN, Model, ViewerModel


@pytest.fixture(scope="module")
def tree_maps(small_store):
    n = small_store.nodes()
    ids = n["node_id"].to_list()
    return (
        dict(zip(ids, n["parent_id"].to_list(), strict=True)),
        dict(zip(ids, n["level"].to_list(), strict=True)),
    )


@pytest.fixture(scope="module")
def nanshan(tree_maps):
    parents, levels = tree_maps
    user = {"user_id": "nanshan", "role": "manager", "node_id": "b-440305", "can_see_couriers": False}
    return Viewer.for_user(user, parents, levels)


def _public_methods():
    return [n for n, f in inspect.getmembers(Model, callable) if not n.startswith("_")]


def test_every_model_read_is_either_checked_or_closed(small_model, nanshan):
    """A branch viewer reaches each Model method only if it names its node (then a node
    outside the branch is refused before anything is read) or is plain time arithmetic."""
    seen = ViewerModel(small_model, nanshan)
    checked, closed = [], []
    for name in _public_methods():
        where = model_mod._node_argument(name)
        if name in OPEN or name in vars(ViewerModel):  # time arithmetic, or the viewer's own
            continue
        if where is None:
            with pytest.raises(AttributeError):
                getattr(seen, name)
            closed.append(name)
            continue
        params = list(inspect.signature(getattr(Model, name)).parameters)[1:]
        args = {p: None for p in params}
        args[where] = (
            {
                "node": "hq",
                "date": None,
                "hour": 1,
                "metric": "scans",
                "layers": [],
                "lang": "zh",
                "basemap": "none",
            }
            if where == "state"
            else "hq"
        )
        with pytest.raises(OutsideScope):
            getattr(seen, name)(**args)
        checked.append(name)
    # the reads that would give away the network are closed, the view's own are checked
    assert {"hour_alerts", "rates", "nodes", "newest_hour", "warm", "everyone"} <= set(closed)
    assert {"kpis", "zones", "figure", "positions", "outlets", "child_table", "dates"} <= set(checked)


def test_a_viewer_reads_its_own_node_and_nothing_above(small_model, nanshan):
    seen = ViewerModel(small_model, nanshan)
    day = small_model.dates()[-1]
    own = seen.kpis("b-440305", day, 10)
    assert own == small_model.kpis("b-440305", day, 10)
    assert seen.root() == "b-440305"
    for node in ("hq", "r-440300", "b-440304", "no-such-node", 7, None):
        with pytest.raises(OutsideScope):
            seen.kpis(node, day, 10)


def test_positions_above_branch_level_need_the_grant(small_model, tree_maps):
    parents, levels = tree_maps
    region = {"user_id": "sz", "role": "manager", "node_id": "r-440300", "can_see_couriers": False}
    day = small_model.dates()[-1]
    plain = ViewerModel(small_model, Viewer.for_user(region, parents, levels))
    with pytest.raises(OutsideScope):
        plain.positions("r-440300", day, 10, "courier")
    assert plain.positions("b-440305", day, 10, "courier") is not None  # a branch: every role
    granted = ViewerModel(small_model, Viewer.for_user({**region, "can_see_couriers": True}, parents, levels))
    assert len(granted.positions("r-440300", day, 10, "courier"))
    # the same through a view state
    state = {"node": "r-440300", "date": day, "hour": 10, "metric": "scans", "layers": ["couriers"],
             "lang": "zh", "basemap": "none"}  # fmt: skip
    with pytest.raises(OutsideScope):
        plain.figure(state, {})


def test_an_operator_holds_the_tree_and_is_audited_by_name(tree_maps):
    parents, levels = tree_maps
    op = operator(parents, levels)
    assert op.holds("hq") and op.holds("b-440305") and op.may_act
    assert op.label.startswith("cli:")


def test_junk_in_place_of_a_node_is_outside_not_an_error(nanshan):
    """Lists, objects and numbers where a node belongs (a tampered request) are refused as
    outside the scope, never raise anything else."""
    for junk in (["b-440305"], {"node": "b-440305"}, 7, None, "x" * 10_000):
        assert not nanshan.holds(junk) and not nanshan.may_see_positions(junk)
        with pytest.raises(OutsideScope):
            nanshan.require(junk)
        with pytest.raises(OutsideScope):
            nanshan.require_layers(junk, ["couriers"])


def test_viewers_may_not_act(tree_maps):
    parents, levels = tree_maps
    v = Viewer.for_user({"user_id": "v", "role": "viewer", "node_id": "r-440300"}, parents, levels)
    assert not v.may_act
    with pytest.raises(OutsideScope):
        v.require_act("export")


def test_the_date_list_survives_stray_hours_and_keeps_to_90_days(empty_store):
    """Hours in 1900 and 9999 (a store filled before times were checked) do not reach the
    date list, which offers at most the 90 newest days holding data."""
    branch = empty_store.sql("SELECT branch_id FROM node_branches LIMIT 1")["branch_id"][0]
    newest = datetime.now().replace(minute=0, second=0, microsecond=0) - timedelta(days=1)
    hours = [newest - timedelta(days=i) for i in range(120)] + [
        datetime(1900, 1, 1),
        datetime(9999, 12, 31, 23),
    ]
    con = empty_store.cursor()
    for h in hours:
        con.execute("INSERT INTO cube_hourly VALUES (?, 1, ?, 1, 1, 0, 0, 0, 0, 0, 1)", [h, branch])
    m = Model(empty_store, Settings.from_env())
    days = m.dates()
    assert len(days) == 90
    assert days[-1] >= (newest - timedelta(days=1)).date().isoformat()
    assert all("2000" < d < "2100" for d in days)
    assert m.newest() is not None and m.newest()[0] == days[-1]
