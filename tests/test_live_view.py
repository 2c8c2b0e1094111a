# ruff: noqa: F811  (the shared ingest fixtures are imported by name and used as arguments)
"""What a live page polls carries only its viewer's data: fixes acknowledged in one
region change that region's fingerprint within a second, and never another region's."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
import requests

from auth.viewer import OutsideScope, Viewer
from config import Settings
from tests.ingest_support import SHENZHEN, ThreadedServer, store, template, tokens  # noqa: F401
from views import live
from views.model import Model, ViewerModel


def _viewer(store, node: str) -> Viewer:
    n = store.nodes()
    ids = n["node_id"].to_list()
    parents = dict(zip(ids, n["parent_id"].to_list(), strict=True))
    levels = dict(zip(ids, n["level"].to_list(), strict=True))
    user = {"user_id": node, "role": "manager", "node_id": node, "can_see_couriers": False}
    return Viewer.for_user(user, parents, levels)


def _fixes(devices: list[str]) -> list[dict]:
    now = int(datetime.now(UTC).timestamp())
    lat, lng = SHENZHEN
    return [{"device_id": d, "ts": now - 5, "lat": lat, "lng": lng, "speed": 3.0} for d in devices]


def test_a_fix_changes_its_regions_fingerprint_and_no_other(store, tokens):
    model = Model(store, Settings.from_env({}))
    shenzhen = ViewerModel(model, _viewer(store, "r-440300"))
    guangzhou = ViewerModel(model, _viewer(store, "r-440100"))
    with ThreadedServer(store) as server:
        auth = {"Authorization": f"Bearer {tokens['system']}"}
        assert requests.post(f"{server.url}/api/v1/pings", json=_fixes(["dev-001"]), headers=auth).ok
        first_sz = live.fingerprint(shenzhen, "r-440300")
        assert first_sz is not None  # Shenzhen has data now
        first_gz = live.fingerprint(guangzhou, "r-440100")

        assert requests.post(f"{server.url}/api/v1/pings", json=_fixes(["dev-002"]), headers=auth).ok
        time.sleep(1.2)  # the day's fingerprint is trusted for a second (FRESHNESS_SECONDS)
        assert live.fingerprint(shenzhen, "r-440300")["v"] != first_sz["v"]
        assert live.fingerprint(guangzhou, "r-440100") == first_gz  # nothing of Shenzhen's


def test_a_refresh_sees_a_fix_the_trusted_reads_do_not_yet(store, tokens, monkeypatch):
    # a web worker trusts its reads of the newest data for a while; a page the push
    # channel told of new data has them read again (pages/live.py)
    import views.model as model_module

    monkeypatch.setattr(model_module, "FRESHNESS_SECONDS", 600.0)  # trusted all test long
    model = Model(store, Settings.from_env({}))
    shenzhen = ViewerModel(model, _viewer(store, "r-440300"))
    with ThreadedServer(store) as server:
        auth = {"Authorization": f"Bearer {tokens['system']}"}
        assert requests.post(f"{server.url}/api/v1/pings", json=_fixes(["dev-001"]), headers=auth).ok
        before = live.fingerprint(shenzhen, "r-440300")
        assert requests.post(f"{server.url}/api/v1/pings", json=_fixes(["dev-002"]), headers=auth).ok
        assert live.fingerprint(shenzhen, "r-440300") == before  # the trusted reads
        shenzhen.refresh("r-440300")
        assert live.fingerprint(shenzhen, "r-440300")["v"] != before["v"]
        with pytest.raises(OutsideScope):
            shenzhen.refresh("r-440100")  # another region's: not this viewer's to ask


def test_the_version_a_page_sends_back_is_checked():
    assert live.known({"v": "abc", "at": "09:00:00", "since": 1.0}) == {
        "v": "abc",
        "at": "09:00:00",
        "since": 1.0,
    }
    for forged in (
        None,
        "abc",
        {"v": "abc", "at": "<script>", "since": 1.0},
        {"v": "x" * 100, "at": "09:00:00", "since": 1.0},
        {"v": "abc", "at": "09:00:00", "since": True},
        {"v": ["abc"], "at": "09:00:00", "since": 1.0},
    ):
        assert live.known(forged) is None
