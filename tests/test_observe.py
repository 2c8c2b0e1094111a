# ruff: noqa: F811  (the shared ingest fixtures are imported by name and used as arguments)
"""GET /metrics and GET /api/v1/health on real servers on 127.0.0.1 with a real store:
the ingest app (werkzeug, threaded, with the phone listener) and the dashboard."""

from __future__ import annotations

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from config import Settings
from data.ingest import reasons
from observe import metrics as om
from observe.metrics import Metrics
from tests.ingest_support import SHENZHEN, ThreadedServer, store, template, tokens  # noqa: F401

LAT, LNG = SHENZHEN
T0 = 1_763_856_000  # 2025-11-23 00:00:00 UTC
TOKEN = "scrape-token-for-tests"
#: Every label a metric may carry, and the values it may take ("le": histogram buckets).
ALLOWED = {
    "endpoint": {*om.ENDPOINTS, om.OTHER},
    "kind": {*om.KINDS, om.OTHER},
    "status": {*om.STATUSES, om.OTHER},
    "reason": {*om.REASONS, om.OTHER},
    "phase": {*om.COMMIT_PHASES, om.OTHER},
}


def scrape(url: str, token: str = TOKEN) -> dict:
    """``{(sample name, ((label, value), ...)): value}`` of one scrape, parsed by
    prometheus-client's own parser."""
    r = requests.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def sample(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def label_values(samples: dict) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for _, labels in samples:
        for k, v in labels:
            out.setdefault(k, set()).add(v)
    return out


@pytest.fixture
def server(store):
    settings = Settings.from_env({"EMAP_METRICS_TOKEN": TOKEN})
    with ThreadedServer(store, settings, phones=True) as srv:
        yield srv


def test_metrics_need_the_token(server):
    url = f"{server.url}/metrics"
    missing = requests.get(url)
    assert missing.status_code == 401 and "Bearer" in missing.headers["WWW-Authenticate"]
    wrong = requests.get(url, headers={"Authorization": f"Bearer {TOKEN}x"})
    assert wrong.status_code == 401 and "emap_" not in wrong.text
    basic = requests.get(url, headers={"Authorization": f"Basic {TOKEN}"})
    assert basic.status_code == 401
    assert requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_no_token_configured_means_no_metrics(store):
    with ThreadedServer(store, Settings.from_env({})) as srv:
        for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer anything"}):
            r = requests.get(f"{srv.url}/metrics", headers=headers)
            assert r.status_code == 404 and "emap_" not in r.text


def test_counters_move_with_batches_and_phones(server, tokens):
    batch = [{"device_id": "dev-001", "ts": T0 + i, "lat": LAT, "lng": LNG} for i in range(6)]
    batch[1]["lat"] = 123.0
    batch[2]["device_id"] = "stranger"
    batch[3]["ts"] = "not a time"
    batch[4] = [1, 2, 3]
    batch[5]["lat"], batch[5]["lng"] = 1.0, 1.0
    auth = {"Authorization": f"Bearer {tokens['system']}"}
    assert requests.post(f"{server.url}/api/v1/pings", json=batch, headers=auth).json()["accepted"] == 1
    assert requests.post(f"{server.url}/api/v1/pings", json=batch[:1]).status_code == 401
    fix = {"id": "dev-002", "lat": LAT, "lon": LNG, "timestamp": T0}
    assert requests.get(f"{server.url}/osmand", params=fix).status_code == 200  # main port
    fix2 = {**fix, "id": "dev-003"}
    assert requests.get(f"{server.phone_url}/", params=fix2).status_code == 200  # phone listener
    assert requests.get(f"{server.phone_url}/", params={**fix, "id": "ghost"}).status_code == 403

    s = scrape(server.url)
    assert sample(s, "emap_records_accepted_total", endpoint="pings", kind="pings") == 1
    for reason in ("out_of_range", "unknown_device", "unreadable", "not_object", "outside_network"):
        assert sample(s, "emap_records_rejected_total", endpoint="pings", reason=reason) == 1, reason
    assert sample(s, "emap_ingest_requests_total", endpoint="pings", status="200") == 1
    assert sample(s, "emap_ingest_requests_total", endpoint="pings", status="401") == 1
    assert sample(s, "emap_ingest_requests_total", endpoint="osmand", status="200") == 2
    assert sample(s, "emap_ingest_requests_total", endpoint="osmand", status="403") == 1
    assert sample(s, "emap_records_accepted_total", endpoint="osmand", kind="pings") == 2
    assert sample(s, "emap_records_rejected_total", endpoint="osmand", reason="unknown_device") == 1
    # the writer: commits observed, its queue read at scrape time, its thread up
    assert sample(s, "emap_commit_duration_seconds_count", kind="pings") >= 3
    assert sample(s, "emap_commit_duration_seconds_sum", kind="pings") > 0
    assert sample(s, "emap_commit_batch_records_sum", kind="pings") >= 6 + 3
    # where the commits' time went, and how long requests waited for the writer
    for phase in ("validate", "prepare", "store", "quarantine"):
        assert sample(s, "emap_commit_phase_seconds_total", kind="pings", phase=phase) > 0, phase
    assert sample(s, "emap_writer_wait_seconds_count", kind="pings") >= 3
    assert sample(s, "emap_writer_queue_records") == 0
    assert sample(s, "emap_writer_up") == 1
    assert sample(s, "emap_store_bytes") > 0
    # labels hold fixed words only: no device, token or system name, no message
    values = label_values(s)
    for label, seen in values.items():
        if label != "le":
            assert seen <= ALLOWED[label], (label, seen - ALLOWED[label])
    every = {v for label, seen in values.items() if label != "le" for v in seen}
    assert not [v for v in every if any(w in v for w in ("dev-", "stranger", "ghost", "test-ops", " "))]


def test_health_checks_the_writer_and_the_store(server):
    r = requests.get(f"{server.url}/api/v1/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["checks"]["writer"]["ok"] and body["checks"]["store"]["ok"]
    assert "round_trip_ms" in body["checks"]["writer"] and "answered_ms" in body["checks"]["store"]
    assert "accepted" in body and "groups" in body  # the counters it always had

    server.app.blueprints["ingest"].committer.close()  # the writer stops
    r = requests.get(f"{server.url}/api/v1/health")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "failing"
    assert body["checks"]["writer"] == {"ok": False, "error": "ingest writer stopped"}
    assert body["checks"]["store"]["ok"]
    assert sample(scrape(server.url), "emap_writer_up") == 0


def test_health_fails_when_the_store_does_not_answer(server, store):
    store.close()
    r = requests.get(f"{server.url}/api/v1/health")
    assert r.status_code == 503
    checks = r.json()["checks"]
    assert checks["store"]["ok"] is False and checks["store"]["error"].startswith("store not answering")
    assert str(store.path) not in r.text  # the answer is public: no paths
    assert checks["writer"]["ok"]  # the writer still turns; the store is what failed
    # a scrape still answers (the store's size is read from the file system)
    assert sample(scrape(server.url), "emap_store_bytes") > 0


def test_callback_latency_by_output(small_store, settings):
    from observe.health import Health
    from observe.routes import make_observe_blueprint
    from pages.app import build_app
    from tests.conftest import served
    from views import state as st
    from views.model import Model

    metrics = Metrics()
    bp = make_observe_blueprint(metrics, Health(), TOKEN)
    app = build_app(small_store, settings, blueprints=[bp], warm=False, prefetch=False, metrics=metrics)
    out = "..kpis.children...trend.figure...status.children.."
    assert out in app.callback_map
    day = Model(small_store, settings).dates()[-1]
    body = {
        "output": out,
        "outputs": [
            {"id": o.rsplit(".", 1)[0], "property": o.rsplit(".", 1)[1]} for o in out.strip(".").split("...")
        ],
        "changedPropIds": ["state.data"],
        "inputs": [{"id": "state", "property": "data", "value": st.default(day=day)}],
        "state": [],
    }
    with served(app) as url:
        assert requests.post(f"{url}/_dash-update-component", json=body).status_code == 200
        forged = {**body, "output": "..device-0042.children.."}  # not an output of the app
        requests.post(f"{url}/_dash-update-component", json=forged)
        s = scrape(url)
    assert sample(s, "emap_callback_duration_seconds_count", output=out) == 1
    assert sample(s, "emap_callback_duration_seconds_sum", output=out) > 0
    assert sample(s, "emap_callback_duration_seconds_count", output="other") == 1
    assert not any("device-0042" in v for vs in label_values(s).values() for v in vs)


def test_every_rejection_message_has_a_fixed_code():
    messages = {
        "record is not a JSON object": "not_object",
        "'lat' must be one value, not a list": "malformed",
        "'device_id' is longer than 200 characters": "malformed",
        "conflicting values for 'lat': 'lat' is 1, 'latitude' is 2": "conflicting",
        "missing column 'ts'": "missing_field",
        "device_id is required": "missing_field",
        "ts could not be read as a timestamp": "unreadable",
        "lat out of range [-90, 90]": "out_of_range",
        "heading out of range [0, 360]": "out_of_range",
        "position 0,0 (no GPS fix)": "no_fix",
        "implausible time: ts before 2000-01-01": "implausible_time",
        "implausible time: ts more than 24 h after the server's clock": "implausible_time",
        "speed is negative": "implausible_value",
        "speed above 300 m/s (implausible)": "implausible_value",
        "accuracy is not a finite number": "implausible_value",
        "kind must be one of pickup, delivered": "invalid_value",
        "unknown device 'dev-777'": "unknown_device",
        "position outside every branch territory": "outside_network",
        "the token of device 'dev-000' cannot report for device 'dev-001'": "outside_scope",
        "could not be stored (ConversionException)": "not_stored",
        "a message nobody wrote": "other",
    }
    for message, code in messages.items():
        assert reasons.code_of(message) == code, message
        assert code in ALLOWED["reason"]


def test_metrics_of_two_apps_do_not_mix():
    a, b = Metrics(), Metrics()
    a.request("pings", 200)
    a.watch_store(lambda: 10)
    b.watch_store(lambda: 20)
    a.watch_store(lambda: 30)  # watching again points the gauge at the new source
    assert a.value("emap_ingest_requests_total", endpoint="pings", status="200") == 1
    assert b.value("emap_ingest_requests_total", endpoint="pings", status="200") is None
    assert (a.value("emap_store_bytes"), b.value("emap_store_bytes")) == (30, 20)
    b.live_subscribers.set_function(lambda: 2)
    assert (a.value("emap_live_subscribers"), b.value("emap_live_subscribers")) == (0, 2)
