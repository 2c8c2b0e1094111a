import numpy as np
import pandas as pd
import shapely

from geo.hierarchy import BranchLocator, ancestors, branch_closure, children


def test_levels_and_counts(tree):
    counts = tree["level"].value_counts().to_dict()
    assert counts["hq"] == 1
    assert counts["division"] == 8
    assert 330 < counts["region"] < 400
    assert 2800 < counts["branch"] < 2950
    assert tree["node_id"].is_unique


def test_every_branch_has_one_region_and_every_region_one_division(tree):
    ids = set(tree["node_id"])
    level = dict(zip(tree["node_id"], tree["level"]))
    branches = tree[tree["level"] == "branch"]
    regions = tree[tree["level"] == "region"]
    assert branches["parent_id"].map(level).eq("region").all()
    assert regions["parent_id"].map(level).eq("division").all()
    assert tree[tree["level"] == "division"]["parent_id"].eq("hq").all()
    assert set(branches["parent_id"]) <= ids and set(regions["parent_id"]) <= ids
    # the region/division columns agree with the parent links
    parent = dict(zip(tree["node_id"], tree["parent_id"]))
    assert (branches["region_id"] == branches["parent_id"]).all()
    assert (branches["division_id"] == branches["region_id"].map(parent)).all()
    assert tree.geometry.notna().all() and tree.geometry.is_valid.mean() > 0.99


def test_known_places(tree):
    by_id = tree.set_index("node_id")
    assert by_id.loc["b-440305", "name"] == "南山区"
    assert by_id.loc["b-440305", "parent_id"] == "r-440300"
    assert by_id.loc["r-440300", "parent_id"] == "div-south"
    assert by_id.loc["b-310115", "parent_id"] == "r-310000"  # Pudong is in the municipality Shanghai
    assert by_id.loc["r-310000", "parent_id"] == "div-east"
    assert ancestors(tree, "b-440305") == ["hq", "div-south", "r-440300", "b-440305"]
    assert set(children(tree, "r-440300")["node_id"]) >= {"b-440305", "b-440304", "b-440303"}


def test_point_inside_a_district_gets_that_branch(tree):
    branches = tree[tree["level"] == "branch"].sample(400, random_state=1)
    inner = shapely.point_on_surface(branches.geometry.values)
    got = BranchLocator(tree).locate(shapely.get_y(inner), shapely.get_x(inner))
    assert (got == branches["node_id"].to_numpy()).mean() == 1.0


def test_points_outside_china_get_no_branch(tree):
    got = BranchLocator(tree).locate(np.array([0.0, 48.85, 22.54]), np.array([0.0, 2.35, 114.05]))
    assert got[0] is None and got[1] is None and got[2] == "b-440304"


def test_closure_lists_each_branch_under_each_ancestor(tree):
    closure = branch_closure(tree)
    n_branches = (tree["level"] == "branch").sum()
    assert (closure["ancestor_id"] == "hq").sum() == n_branches
    per_branch = closure.groupby("branch_id").size()
    assert (per_branch == 4).all()
    south = set(closure.loc[closure["ancestor_id"] == "div-south", "branch_id"])
    assert "b-440305" in south and "b-310115" not in south
    assert isinstance(closure, pd.DataFrame)
