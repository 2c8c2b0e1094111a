"""The lake without Spark: export from the store, the dashboard's reads over the lake,
day replacement and tiering."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from lake import layout
from lake.export import export_store
from lake.serve import LakeError, LakeStore
from lake.tiering import copy_branch

DAY = "2026-11-20"
WINDOW = (datetime(2026, 11, 19), datetime(2026, 11, 21))


@pytest.fixture(scope="module")
def lake(small_store, tmp_path_factory):
    root = tmp_path_factory.mktemp("lake") / "lake"
    export_store(small_store, root)
    return root


@pytest.fixture(scope="module")
def lake_store(lake, tmp_path_factory):
    store = LakeStore(tmp_path_factory.mktemp("serve") / "lake.duckdb", lake)
    yield store
    store.close()


def _scopes(store) -> list[str]:
    """Headquarters and the busiest division, region and branch."""
    figures = store.node_figures("hq", *WINDOW, level="branch").sort("pings", descending=True)
    branch = figures["node_id"][0]
    row = store.sql("SELECT region_id, division_id FROM nodes WHERE node_id = ?", [branch]).row(0)
    return ["hq", row[1], row[0], branch]


def _rows(frame_sql: str) -> int:
    return duckdb.sql(f"SELECT count(*) FROM ({frame_sql})").fetchall()[0][0]


def test_lake_layout_is_partitioned_by_day_division_and_branch(lake, small_store):
    days = layout.days_in(lake, "fine_hourly")
    assert DAY in days and len(days) >= 2
    branch_dirs = list((lake / "cube/fine/hourly" / f"date={DAY}").glob("division_id=*/branch_id=b-*"))
    assert branch_dirs, "fine cubes are partitioned down to the branch"
    assert not list((lake / "cube/coarse/hourly").rglob("branch_id=*")), "the coarse tier is per division"
    # Raw records carry no derived columns; clean ones hold the store's columns.
    raw_cols = duckdb.sql(f"SELECT * FROM ({layout.read_sql(lake, 'raw_pings')}) LIMIT 0").columns
    assert "cell" not in raw_cols and "branch_id" not in raw_cols
    assert _rows(layout.read_sql(lake, "clean_pings")) == small_store.scalar("SELECT count(*) FROM pings")


@pytest.mark.parametrize("res", [9, 8, 7, 6, 5, 4])
def test_reads_over_the_lake_equal_the_store(small_store, lake_store, res):
    for scope in _scopes(small_store):
        want = small_store.cube(scope, *WINDOW, res=res)
        got = lake_store.cube(scope, *WINDOW, res=res)
        assert len(want) > 0
        assert got.equals(want), (scope, res)
    assert lake_store.cube_sources(res)[0] == ("cube_hourly_coarse" if res <= 6 else "cube_hourly")


def test_node_figures_over_the_lake_equal_the_store(small_store, lake_store):
    for scope in _scopes(small_store)[:3]:
        assert lake_store.node_figures(scope, *WINDOW).equals(small_store.node_figures(scope, *WINDOW))
    for level in ("division", "region", "branch"):
        want = small_store.node_figures("hq", *WINDOW, level=level)
        assert lake_store.node_figures("hq", *WINDOW, level=level).equals(want)
        assert want["couriers"].sum() > 0


def test_dashboard_model_over_the_lake(small_store, lake_store, settings):
    from views.model import Model

    on_store, on_lake = Model(small_store, settings), Model(lake_store, settings)
    day, hour = on_store.landing("hq")
    assert on_lake.landing("hq") == (day, hour)
    assert on_lake.kpis("hq", day, hour) == on_store.kpis("hq", day, hour)
    region = _scopes(small_store)[2]
    assert on_lake.kpis(region, day, hour) == on_store.kpis(region, day, hour)


def test_headquarters_reads_only_the_coarse_tier(small_store, lake, tmp_path):
    hq_lake = tmp_path / "hq"
    shutil.copytree(lake, hq_lake)
    shutil.rmtree(hq_lake / "cube" / "fine")
    with LakeStore(tmp_path / "hq.duckdb", hq_lake) as store:
        for res in (6, 5, 4):
            assert store.cube("hq", *WINDOW, res=res).equals(small_store.cube("hq", *WINDOW, res=res))
        assert store.node_figures("hq", *WINDOW, level="region").equals(
            small_store.node_figures("hq", *WINDOW, level="region")
        )
        assert store.cube("hq", *WINDOW, res=9).is_empty()  # no fine tier here
        # The dashboard's headquarters view works from the coarse tier alone.
        from config import Settings
        from views.model import Model

        settings = Settings.from_env({})
        on_store, on_lake = Model(small_store, settings), Model(store, settings)
        day, hour = on_store.landing("hq")
        # Every figure but the zone count: zones are found at res 8, from the fine tier.
        want = [k for k in on_store.kpis("hq", day, hour) if k["key"] != "zones"]
        assert [k for k in on_lake.kpis("hq", day, hour) if k["key"] != "zones"] == want
        hexes = on_lake.hex_frame("hq", day, hour, "scans")
        assert hexes.drop("node").equals(on_store.hex_frame("hq", day, hour, "scans").drop("node"))
        assert len(hexes) > 0
        # Names under the hexes come from res-6 cells here (res-9 in the store): a hex on a
        # border may be named after the other side, but every hex is named.
        assert hexes["node"].null_count() == 0


def test_reexporting_a_day_replaces_it(small_store, lake, tmp_path):
    again = tmp_path / "lake"
    shutil.copytree(lake, again)
    stale = again / "cube/fine/hourly" / f"date={DAY}" / "division_id=div-x" / "branch_id=b-stale"
    stale.mkdir(parents=True)
    shutil.copy(next((again / "cube/fine/hourly").rglob("*.parquet")), stale / "part-old.parquet")
    before = _rows(layout.read_sql(lake, "fine_hourly"))
    export_store(small_store, again, days=[DAY], raw=False)
    assert not stale.exists()
    assert _rows(layout.read_sql(again, "fine_hourly")) == before
    assert _rows(layout.read_sql(again, "clean_pings")) == _rows(layout.read_sql(lake, "clean_pings"))
    assert not list(again.glob(".staging-*")) and not list(again.rglob(".old-*"))


def test_copying_a_branch_into_a_coarse_lake_is_idempotent(small_store, lake, tmp_path):
    hq_lake = tmp_path / "hq"
    shutil.copytree(lake, hq_lake)
    shutil.rmtree(hq_lake / "cube" / "fine")
    branch = _scopes(small_store)[3]
    assert copy_branch(lake, hq_lake, branch) > 0
    first = sorted(p.relative_to(hq_lake) for p in (hq_lake / "cube/fine").rglob("*.parquet"))
    assert copy_branch(lake, hq_lake, branch) == copy_branch(lake, hq_lake, branch)
    assert sorted(p.relative_to(hq_lake) for p in (hq_lake / "cube/fine").rglob("*.parquet")) == first
    assert {p.parts[5] for p in first} == {f"branch_id={branch}"}
    with LakeStore(tmp_path / "hq.duckdb", hq_lake) as store:
        assert store.cube(branch, *WINDOW, res=9).equals(small_store.cube(branch, *WINDOW, res=9))
    with pytest.raises(LookupError, match="b-nowhere"):
        copy_branch(lake, hq_lake, "b-nowhere")


def test_a_lake_store_refuses_records_and_non_lakes(lake_store, tmp_path):
    import polars as pl

    with pytest.raises(LakeError, match="lake"):
        lake_store.commit("pings", pl.DataFrame({"_row": [1]}))
    with pytest.raises(LakeError, match="reference/nodes.parquet"):
        LakeStore(tmp_path / "x.duckdb", tmp_path / "not-a-lake")


def test_lake_command_line(small_demo_path, tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    env = {"EMAP_DATA_DIR": str(small_demo_path.parent), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [
            sys.executable,
            "app.py",
            "lake",
            "export",
            "--lake",
            str(tmp_path / "l"),
            "--date",
            DAY,
            "--no-raw",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "fine_hourly" in out.stdout
    listing = subprocess.run(
        [sys.executable, "app.py", "lake", "list", "--lake", str(tmp_path / "l")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    assert f"fine_hourly              1 days  {DAY} .. {DAY}" in listing.stdout
    assert "raw_pings                0 days" in listing.stdout
    bad = subprocess.run(
        [sys.executable, "app.py", "lake", "export", "--lake", str(tmp_path / "l"), "--date", "20-11-2026"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "20-11-2026" in bad.stderr


def test_reports_and_users_over_the_lake(lake, tmp_path):
    """With EMAP_LAKE_DIR set, the commands use the lake's store: a user can be created
    and a report of a region exported from the lake's partitions."""
    import subprocess
    import sys

    import polars as pl

    root = Path(__file__).resolve().parent.parent
    env = {
        "EMAP_DATA_DIR": str(tmp_path),
        "EMAP_LAKE_DIR": str(lake),
        "PATH": "/usr/bin:/bin",
        "EMAP_NEW_PASSWORD": "a-long-password-1",
    }
    made = subprocess.run(
        [sys.executable, "app.py", "users", "create", "li.wei", "--role", "manager", "--node", "r-440300"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    out = tmp_path / "shenzhen.csv"
    report = subprocess.run(
        [
            sys.executable,
            "app.py",
            "export",
            "--node",
            "r-440300",
            "--date",
            DAY,
            "--format",
            "csv",
            "--out",
            str(out),
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    assert report.returncode == 0, report.stderr
    cells = pl.read_csv(out)
    assert len(cells) > 10 and cells["scans"].sum() > 0
    assert (tmp_path / "lake.duckdb").is_file() and not (tmp_path / "emap.duckdb").exists()


def test_a_branch_user_over_the_lake_sees_only_its_branch(lake_store):
    """Lake mode serves the same app with the same checks: a branch manager's request for
    headquarters is refused (403, audited), its own branch answers."""
    import requests

    from auth import users
    from config import Settings
    from pages.app import build_app
    from tests.auth_support import PASSWORD, login
    from tests.conftest import served
    from views import state as st
    from views.model import Model

    users.create_user(lake_store, "lake-nanshan", PASSWORD, "manager", "b-440305", by="test")
    day = Model(lake_store, Settings.from_env()).dates()[-1]
    app = build_app(lake_store, Settings.from_env(), warm=False, prefetch=False, auth=True)
    out = "..kpis.children...trend.figure...status.children.."
    outputs = [
        {"id": o.rsplit(".", 1)[0], "property": o.rsplit(".", 1)[1]} for o in out.strip(".").split("...")
    ]

    def kpis(session, url, node):
        view = st.default(node=node, day=day)
        body = {
            "output": out,
            "outputs": outputs,
            "changedPropIds": ["state.data"],
            "inputs": [{"id": "state", "property": "data", "value": view}],
            "state": [],
        }
        return session.post(f"{url}/_dash-update-component", json=body)

    with served(app) as url:
        s, r = login(url, "lake-nanshan")
        assert r.status_code == 302
        assert kpis(s, url, "b-440305").status_code == 200
        refused = kpis(s, url, "hq")
        assert refused.status_code == 403 and "kpi-" not in refused.text
        assert (
            requests.get(f"{url}/?node=hq", cookies=s.cookies, allow_redirects=False)
            .headers["Location"]
            .endswith("node=b-440305")
        )
    log = users.audit_log(lake_store, "refusal")
    assert (log["user_id"] == "lake-nanshan").sum() >= 1


def test_a_served_lake_has_health_and_metrics(lake_store):
    """Composed as ``serve --lake`` composes it: the store's check and size, callback
    latency, no writer (a lake has none); /metrics behind its token, not the sign-in."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    from auth import users
    from cli.serve import observed
    from config import Settings
    from observe.routes import make_observe_blueprint
    from pages.app import build_app
    from tests.auth_support import PASSWORD, login
    from tests.conftest import served
    from views import state as st
    from views.model import Model

    token = "lake-scrape-token"
    metrics, health = observed(lake_store)
    settings = Settings.from_env({})
    app = build_app(
        lake_store,
        settings,
        blueprints=[make_observe_blueprint(metrics, health, token)],
        warm=False,
        prefetch=False,
        auth=True,
        metrics=metrics,
    )
    users.create_user(lake_store, "lake-metrics", PASSWORD, "manager", "b-440305", by="test")
    out = "..kpis.children...trend.figure...status.children.."
    view = st.default(node="b-440305", day=Model(lake_store, settings).dates()[-1])
    body = {
        "output": out,
        "outputs": [
            {"id": o.rsplit(".", 1)[0], "property": o.rsplit(".", 1)[1]} for o in out.strip(".").split("...")
        ],
        "changedPropIds": ["state.data"],
        "inputs": [{"id": "state", "property": "data", "value": view}],
        "state": [],
    }
    with served(app) as url:
        health_answer = requests.get(f"{url}/api/v1/health")
        assert health_answer.status_code == 200
        assert set(health_answer.json()["checks"]) == {"store"}
        anonymous = requests.get(f"{url}/metrics", allow_redirects=False)
        assert anonymous.status_code == 401  # its token, never the sign-in redirect
        assert requests.get(f"{url}/metrics/x", allow_redirects=False).status_code == 302
        s, _ = login(url, "lake-metrics")
        assert s.post(f"{url}/_dash-update-component", json=body).status_code == 200
        text = requests.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"}).text
    samples = {
        (x.name, tuple(sorted(x.labels.items()))): x.value
        for family in text_string_to_metric_families(text)
        for x in family.samples
    }
    assert samples[("emap_store_bytes", ())] > 0
    assert samples[("emap_callback_duration_seconds_count", (("output", out),))] == 1
    assert not any(name.startswith("emap_writer_") for name, _ in samples)
