"""The imports history (data/store/imports.py) and the import rules (views/imports.py) on
a writable copy of the small demo: what each role may import and see, the quarantine
report of one import, refusals audited."""

from __future__ import annotations

import io
import shutil
from dataclasses import replace

import pytest

from auth import users
from auth.viewer import OutsideScope, Viewer
from config import Settings
from data.store import imports as history
from data.store.database import Store
from views import imports as imp

OWN_PLACE, OTHER_PLACE = (22.596615, 113.926888), (22.546487, 114.063211)  # b-440305, b-440304
T0 = 1_794_268_800  # 2026-11-10 00:00 UTC


@pytest.fixture(scope="module")
def store(small_demo_path, tmp_path_factory):
    path = tmp_path_factory.mktemp("imports") / "emap.duckdb"
    shutil.copy(small_demo_path, path)
    s = Store(path)
    users.ensure_tables(s)
    yield s
    s.close()


@pytest.fixture(scope="module")
def uploads(store, tmp_path_factory):
    settings = replace(Settings.from_env({}), data_dir=tmp_path_factory.mktemp("var"))
    return imp.Uploads(store, settings)


@pytest.fixture(scope="module")
def parents(store):
    n = store.nodes()
    return dict(zip(n["node_id"].to_list(), n["parent_id"].to_list(), strict=True))


def _viewer(parents, uid, role, node):
    return Viewer.for_user({"user_id": uid, "role": role, "node_id": node}, parents)


def _pings(store, *places, start: int = T0) -> bytes:
    device = store.scalar("SELECT min(device_id) FROM devices WHERE courier_id = 'c-000026'")
    lines = [f"{device},{start + 60 * i},{lat},{lng}" for i, (lat, lng) in enumerate(places)]
    return ("device_id,ts,lat,lng\n" + "\n".join(lines) + "\n").encode()


def test_each_role_imports_and_sees_what_the_rights_say(store, uploads, parents):
    boss = _viewer(parents, "boss", "admin", "hq")
    nanshan = _viewer(parents, "nanshan", "manager", "b-440305")
    futian = _viewer(parents, "futian", "manager", "b-440304")
    reader = _viewer(parents, "reader", "viewer", "r-440300")

    mine = imp.import_file(
        store, uploads, nanshan, io.BytesIO(_pings(store, OWN_PLACE, OTHER_PLACE)), "n.csv"
    )
    assert (mine.accepted, mine.rejected) == (1, 1)
    reason = store.scalar("SELECT reason FROM quarantine WHERE source = ?", [mine.quarantine_source])
    assert reason == imp.refusal(nanshan)
    anywhere = imp.import_file(
        store, uploads, boss, io.BytesIO(_pings(store, OTHER_PLACE, start=T0 + 3600)), "b.csv"
    )
    assert (anywhere.accepted, anywhere.rejected) == (1, 0)

    seen = set(imp.visible(store, boss)["import_id"])
    assert {mine.import_id, anywhere.import_id} <= seen
    assert mine.import_id in set(imp.visible(store, nanshan)["import_id"])
    assert anywhere.import_id not in set(imp.visible(store, nanshan)["import_id"])
    assert mine.import_id not in set(imp.visible(store, futian)["import_id"])
    with pytest.raises(OutsideScope):
        imp.quarantine_csv(store, futian, mine.import_id)
    with pytest.raises(OutsideScope):
        imp.visible(store, reader)
    before = store.scalar("SELECT count(*) FROM imports")
    with pytest.raises(OutsideScope):
        imp.import_file(store, uploads, reader, io.BytesIO(_pings(store, OWN_PLACE)), "r.csv")
    assert store.scalar("SELECT count(*) FROM imports") == before
    audited = store.scalar(
        "SELECT count(*) FROM audit_log WHERE user_id = 'nanshan' AND action = 'import' AND contains(detail, ?)",
        [mine.import_id],
    )
    assert audited == 1


def test_the_quarantine_report_is_one_imports_rows_safe_for_spreadsheets(store, parents):
    boss = _viewer(parents, "boss", "admin", "hq")
    import polars as pl

    bad = pl.DataFrame(
        {"_row": [7, 3], "reason": ["-1 is not a speed", "no ts"], "raw": ['=cmd|" /c calc"!A1', "@x"]},
        schema={"_row": pl.UInt32, "reason": pl.String, "raw": pl.String},
    )
    store.quarantine(bad, "report-test", "pings")
    store.quarantine(bad.head(1), "another file", "pings")
    import_id = history.record(
        store,
        user_id="boss",
        channel="api",
        file_name="x.csv",
        kind="pings",
        scope_node=None,
        rows=9,
        accepted=7,
        rejected=2,
        duplicates=0,
        quarantine_source="report-test",
    )
    name, text = imp.quarantine_csv(store, boss, import_id)
    assert name == f"emap-import-{import_id}-rejected.csv"
    assert text.splitlines() == [
        "row_number,reason,raw",
        "3,no ts,'@x",
        '7,\'-1 is not a speed,"\'=cmd|"" /c calc""!A1"',
    ]
    assert history.get_import(store, import_id)["rejected"] == 2
    with pytest.raises(OutsideScope):
        imp.quarantine_csv(store, boss, "no-such-id")
