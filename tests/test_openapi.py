"""The served OpenAPI description against real responses of a running server."""

from __future__ import annotations

import pytest
import requests
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from data.store.database import Store
from tests.ingest_support import SHENZHEN, ThreadedServer, copy_store

LAT, LNG = SHENZHEN


@pytest.fixture(scope="module")
def served(ingest_template, tmp_path_factory):
    template, tokens = ingest_template
    path = copy_store(template, tmp_path_factory.mktemp("openapi") / "emap.duckdb")
    with Store(path) as store, ThreadedServer(store, phones=True) as srv:
        spec = requests.get(f"{srv.url}/api/v1/openapi.json").json()
        yield srv, spec, tokens


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def check(spec: dict, path: str, method: str, response: requests.Response) -> None:
    """Fail unless the response's status, media type and body are as the spec says."""
    op = spec["paths"][path][method]
    status = str(response.status_code)
    assert status in op["responses"], f"{method.upper()} {path}: {status} not described"
    content = op["responses"][status]["content"]
    mime = response.headers["Content-Type"].split(";")[0]
    assert mime in content, f"{method.upper()} {path} {status}: {mime} not described"
    registry = Registry().with_resource("urn:emap", Resource.from_contents(spec, DRAFT202012))
    ref = "urn:emap#/" + _pointer("paths", path, method, "responses", status, "content", mime, "schema")
    body = response.json() if mime == "application/json" else response.text
    Draft202012Validator({"$ref": ref}, registry=registry).validate(body)


def test_spec_shape(served):
    srv, spec, _ = served
    assert spec["openapi"].startswith("3.1")
    assert spec["servers"] == [{"url": srv.url}]
    rules = {r.rule.rstrip("/") for r in srv.app.url_map.iter_rules()}
    assert set(spec["paths"]) <= rules  # every described path is served
    for schema in spec["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_check_catches_a_response_off_the_spec(served):
    _, spec, _ = served
    fake = requests.Response()
    fake.status_code, fake.headers["Content-Type"] = 200, "application/json"
    fake._content = b'{"accepted": "all of them"}'
    with pytest.raises(Exception, match="required property|is not of type"):
        check(spec, "/api/v1/pings", "post", fake)
    fake.status_code = 418
    with pytest.raises(AssertionError, match="not described"):
        check(spec, "/api/v1/pings", "post", fake)


def test_batch_responses_match_the_spec(served):
    srv, spec, tokens = served
    h = {"Authorization": f"Bearer {tokens['system']}"}
    good = [{"device_id": "dev-001", "ts": 1_763_856_000 + i, "lat": LAT, "lng": LNG} for i in range(5)]
    cases = [
        ("/api/v1/pings", requests.post(f"{srv.url}/api/v1/pings", json=good, headers=h), 200),
        (
            "/api/v1/pings",
            requests.post(f"{srv.url}/api/v1/pings", json=[*good, {"lat": 1}, 7], headers=h),
            200,
        ),
        ("/api/v1/pings", requests.post(f"{srv.url}/api/v1/pings", data=b"[{", headers=h), 400),
        ("/api/v1/pings", requests.post(f"{srv.url}/api/v1/pings", json=good), 401),
        (
            "/api/v1/pings",
            requests.post(f"{srv.url}/api/v1/pings", data=b" " * (17 * 1024 * 1024), headers=h),
            413,
        ),
        (
            "/api/v1/events",
            requests.post(
                f"{srv.url}/api/v1/events",
                json=[
                    {"parcel_id": "p", "kind": "pickup", "ts": 1_763_856_000, "lat": LAT, "lng": LNG},
                    {"parcel_id": "p", "kind": "lost", "ts": 1_763_856_000, "lat": LAT, "lng": LNG},
                ],
                headers=h,
            ),
            200,
        ),
        ("/api/v1/events", requests.post(f"{srv.url}/api/v1/events", json=[], headers=h), 200),
    ]
    for path, response, status in cases:
        assert response.status_code == status, (path, response.text)
        check(spec, path, "post", response)


def test_osmand_and_service_responses_match_the_spec(served):
    srv, spec, tokens = served
    q = {"id": "dev-002", "lat": LAT, "lon": LNG, "timestamp": 1_763_856_000}
    cases = [
        ("/osmand", "get", requests.get(f"{srv.url}/osmand", params=q), 200),
        ("/osmand", "get", requests.get(f"{srv.url}/osmand", params={**q, "id": "ghost"}), 403),
        ("/osmand", "get", requests.get(f"{srv.url}/osmand", params={"lat": LAT, "lon": LNG}), 400),
        ("/osmand", "get", requests.get(f"{srv.url}/osmand", params={**q, "lat": 0, "lon": 0}), 200),
        ("/osmand", "get", requests.get(f"{srv.url}/osmand", params={**q, "token": "wrong"}), 401),
        ("/osmand", "get", requests.get(f"{srv.url}/osmand", params={**q, "token": tokens["device"]}), 403),
        (
            "/osmand",
            "post",
            requests.post(
                f"{srv.url}/osmand",
                json={
                    "device_id": "dev-002",
                    "location": {
                        "timestamp": "2025-11-23T00:00:09Z",
                        "coords": {"latitude": LAT, "longitude": LNG},
                    },
                },
            ),
            200,
        ),
        ("/osmand", "post", requests.post(f"{srv.url}/osmand", data=q), 200),
        ("/api/v1/health", "get", requests.get(f"{srv.url}/api/v1/health"), 200),
        ("/api/v1/openapi.json", "get", requests.get(f"{srv.url}/api/v1/openapi.json"), 200),
    ]
    for path, method, response, status in cases:
        assert response.status_code == status, (path, response.text)
        check(spec, path, method, response)


def test_phone_listener_answers_match_the_osmand_spec(served):
    """The phone listener's port is described by the spec's ``/osmand`` operations."""
    srv, spec, tokens = served
    url = f"{srv.phone_url}/"
    q = {"id": "dev-003", "lat": LAT, "lon": LNG, "timestamp": 1_763_856_000}
    cases = [
        ("get", requests.get(url, params=q), 200),
        ("get", requests.get(url, params={**q, "id": "ghost"}), 403),
        ("get", requests.get(url, params={"lat": LAT, "lon": LNG}), 400),
        ("get", requests.get(url, params={**q, "lat": 0, "lon": 0}), 200),
        ("get", requests.get(url, params={**q, "token": "wrong"}), 401),
        ("get", requests.get(url, params={**q, "token": tokens["device"]}), 403),
        (
            "post",
            requests.post(
                url,
                json={
                    "device_id": "dev-003",
                    "location": {
                        "timestamp": "2025-11-23T00:00:09Z",
                        "coords": {"latitude": LAT, "longitude": LNG},
                    },
                },
            ),
            200,
        ),
        ("post", requests.post(url, data={**q, "timestamp": 1_763_856_001}), 200),
    ]
    for method, response, status in cases:
        assert response.status_code == status, response.text
        check(spec, "/osmand", method, response)
