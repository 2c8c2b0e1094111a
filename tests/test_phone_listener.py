# ruff: noqa: F811  (the shared ingest fixtures are imported by name and used as arguments)
"""The phone listener on a real port on 127.0.0.1, beside the main port's ``/osmand``.

It must answer every form of the OsmAnd protocol exactly as the main port does (one
endpoint object answers both), keep connections alive, acknowledge a fix only once it is
stored, and survive whatever bytes it is sent.
"""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import replace
from urllib.parse import urlencode, urlsplit

import pytest
import requests

from config import Settings
from data.store.database import Store
from tests.ingest_support import SHENZHEN, ThreadedServer, copy_store, store, template, tokens  # noqa: F401
from tests.test_osmand import CAPTURED, TRACCAR_CLIENT_JSON

LAT, LNG = SHENZHEN
T0 = 1_763_856_000  # 2025-11-23 00:00:00 UTC


@pytest.fixture(params=["thread", "process"])
def relay(request) -> bool:
    """Every test runs against the listener on a thread of the serving process and in a
    phone process of its own (``serve``'s way, :mod:`data.ingest.phone_relay`)."""
    return request.param == "process"


@pytest.fixture
def server(store, relay):
    with ThreadedServer(store, phones=True, relay=relay) as srv:
        yield srv


def port_of(url: str) -> int:
    return urlsplit(url).port


def answer(response: requests.Response) -> tuple:
    """What a phone sees of an answer: status, text and the headers that matter."""
    h = response.headers
    return (
        response.status_code,
        response.text,
        h.get("Content-Type"),
        h.get("Allow"),
        h.get("Retry-After"),
        h.get("X-Content-Type-Options"),
    )


def both(srv: ThreadedServer, method: str, target: str, phone_target: str | None = None, **kwargs):
    """The same request to the phone listener, then to the main port's ``/osmand``."""
    phone = requests.request(method, srv.phone_url + (phone_target or target), timeout=30, **kwargs)
    main = requests.request(method, srv.url + target, timeout=30, **kwargs)
    return phone, main


def q(**params) -> str:
    return "/osmand?" + urlencode(params)


def traccar_json(device: str, ts: str, **coords) -> dict:
    body = json.loads(json.dumps(TRACCAR_CLIENT_JSON))
    body["device_id"] = device
    body["location"]["timestamp"] = ts
    body["location"]["coords"].update(coords)
    return body


# (method, target on the main port, keyword arguments of requests, expected status)
FORMS = [
    (
        "GET",
        q(
            id="dev-010",
            lat=LAT,
            lon=LNG,
            timestamp=T0,
            speed=10,
            bearing=45,
            altitude=12,
            accuracy=5,
            hdop=0.9,
            batt=80,
        ),
        {},
        200,
    ),
    ("GET", q(deviceid="dev-010", location=f"{LAT},{LNG}", timestamp="2025-11-23 08:00:05"), {}, 200),
    ("GET", q(id="dev-010", lat=LAT, lon=LNG, timestamp=(T0 + 7) * 1000, heading=-1, accuracy=-1), {}, 200),
    ("GET", q(id="dev-010", lat=LAT, lon=LNG, timestamp="2025-11-23T00:00:09Z"), {}, 200),
    ("GET", q(id="dev-010", lat=LAT, lon=LNG, timestamp=T0 + 11, id2="x", token=""), {}, 200),
    ("POST", "/osmand", {"data": {"id": "dev-011", "lat": LAT, "lon": LNG, "timestamp": T0}}, 200),
    ("POST", q(id="dev-011"), {"data": {"lat": LAT, "lon": LNG, "timestamp": T0 + 1}}, 200),
    (
        "POST",
        "/osmand",
        {"json": traccar_json("dev-012", "2025-11-23T00:10:00.000Z", latitude=LAT, longitude=LNG)},
        200,
    ),
    (
        "POST",
        "/osmand",
        {
            "json": {
                "device_id": "dev-012",
                "location": [
                    {
                        "timestamp": "2025-11-23T00:10:01Z",
                        "coords": {"latitude": LAT, "longitude": LNG, "speed": -1},
                    },
                    {"timestamp": "2025-11-23T00:10:02Z", "coords": {"latitude": LAT, "longitude": LNG}},
                ],
            }
        },
        200,
    ),
    (
        "POST",
        "/osmand",
        {
            "data": json.dumps(traccar_json("dev-012", "2025-11-23T00:10:03Z", latitude=LAT, longitude=LNG)),
            "headers": {"Content-Type": "text/plain"},
        },
        200,
    ),
    ("GET", q(id="unknown-phone", lat=LAT, lon=LNG, timestamp=T0), {}, 403),  # kept on the phone
    ("GET", q(lat=LAT, lon=LNG), {}, 400),
    # refused for good: 200 (a phone resends its oldest fix until 200) and quarantined
    ("GET", q(id="dev-013", lat=0, lon=0, timestamp=T0), {}, 200),
    ("GET", q(id="dev-013", lat=123, lon=LNG, timestamp=T0), {}, 200),
    ("GET", q(id="dev-013", lat=LAT, lon=LNG, timestamp="yesterday"), {}, 200),
    ("GET", q(id="dev-013", lat=1.0, lon=1.0, timestamp=T0), {}, 200),  # outside every branch
    ("GET", q(id="dev-013", lat=LAT, lon=LNG, timestamp="9999-12-31T23:00:00Z"), {}, 200),
    ("GET", q(id="dev-013", deviceid="dev-014", lat=LAT, lon=LNG, timestamp=T0), {}, 400),
    ("POST", "/osmand", {"data": b'{"device_id": ', "headers": {"Content-Type": "application/json"}}, 400),
    ("POST", "/osmand", {"json": [1, 2]}, 400),
    ("POST", "/osmand", {"json": {"device_id": "dev-013"}}, 400),
    ("PUT", q(id="dev-013", lat=LAT, lon=LNG), {}, 405),
    ("DELETE", "/osmand", {}, 405),
    ("HEAD", q(id="dev-013", lat=LAT, lon=LNG), {}, 405),
]


@pytest.mark.parametrize("method, target, kwargs, status", FORMS)
def test_answers_as_the_main_port(server, store, method, target, kwargs, status):
    phone, main = both(server, method, target, **kwargs)
    assert phone.status_code == status, phone.text
    if status == 200 and phone.text == "OK\n":
        # acknowledged = committed: the fix is readable as soon as its 200 arrives
        assert store.scalar("SELECT count(*) FROM pings") >= 1
    elif status == 200:
        # refused for good: quarantined with its reason, from either port
        assert phone.text.startswith("refused for good, kept in quarantine: ")
        assert store.scalar("SELECT count(*) FROM quarantine") == 2
        assert store.scalar("SELECT count(*) FROM pings") == 0
    assert answer(phone) == answer(main)


@pytest.mark.parametrize("url, device, lat, lng, ts, speed", CAPTURED)
def test_captured_requests_on_the_root_path(server, store, url, device, lat, lng, ts, speed):
    """Traccar Client's server URL is the bare host and port: fixes arrive at ``/?id=...``."""
    phone, main = both(server, "GET", "/osmand" + url[1:], phone_target=url)
    assert (phone.status_code, phone.text) == (403, f"unknown device '{device}'\n")
    assert answer(phone) == answer(main)
    reasons = store.sql("SELECT reason FROM quarantine")["reason"].to_list()
    assert reasons == [f"unknown device '{device}'"] * 2  # quarantined from either port


def test_a_fix_is_stored_when_its_ok_arrives(server, store):
    for i in range(5):
        r = requests.get(
            f"{server.phone_url}/",
            params={"id": "dev-020", "lat": LAT, "lon": LNG, "timestamp": T0 + i},
            timeout=30,
        )
        assert (r.status_code, r.text) == (200, "OK\n")
        assert store.scalar("SELECT count(*) FROM pings WHERE device_id = 'dev-020'") == i + 1
        assert store.scalar("SELECT sum(pings) FROM cube_hourly") == i + 1
    r = requests.get(
        f"{server.phone_url}/", params={"id": "dev-020", "lat": LAT, "lon": LNG, "timestamp": T0}, timeout=30
    )
    assert r.status_code == 200  # the phone sent it again: stored once
    assert store.scalar("SELECT count(*) FROM pings") == 5
    assert store.scalar("SELECT min(courier_id) FROM pings") == "c-dev-020"


def test_tokens_and_auto_registration_as_the_main_port(store, tokens, relay):
    settings = replace(Settings.from_env({}), auto_register_devices=True, osmand_require_token=True)
    with ThreadedServer(store, settings, phones=True, relay=relay) as srv:
        params = {"id": "new-phone", "lat": LAT, "lon": LNG, "timestamp": T0}
        cases = [
            (q(**params), {}, 401),
            (q(**params, token="emap_wrong"), {}, 401),
            (q(**params, token=tokens["system"]), {}, 200),
            (q(**params, token=tokens["device"]), {}, 403),
            (q(**{**params, "id": "dev-000"}, token=tokens["device"]), {}, 200),
            (
                q(**{**params, "id": "dev-000", "timestamp": T0 + 1}),
                {"headers": {"Authorization": f"Bearer {tokens['device']}"}},
                200,
            ),
        ]
        for target, kwargs, status in cases:
            phone, main = both(srv, "GET", target, **kwargs)
            assert phone.status_code == status, (target, phone.text)
            assert answer(phone) == answer(main)
    assert store.sql("SELECT device_id, courier_id FROM devices WHERE device_id = 'new-phone'").rows() == [
        ("new-phone", "new-phone")
    ]
    assert store.scalar("SELECT count(*) FROM pings") == 3
    refusals = store.scalar("SELECT count(*) FROM audit_log WHERE action = 'refusal'")
    assert refusals == 2  # the device token used for another phone, on each port


def test_oversized_bodies_get_413_as_on_the_main_port(store, relay):
    settings = replace(Settings.from_env({}), ingest_max_body_bytes=2_000)
    with ThreadedServer(store, settings, phones=True, relay=relay) as srv:
        fix = traccar_json("dev-001", "2025-11-23T00:10:00Z", latitude=LAT, longitude=LNG)
        fix["location"]["extras"] = {"note": "x" * 3000}
        phone, main = both(srv, "POST", "/osmand", json=fix)
        assert phone.status_code == 413 and "larger than 2000 bytes" in phone.text
        assert answer(phone) == answer(main)
        # a chunked body (no Content-Length) is cut off at the limit too
        phone = requests.post(
            f"{srv.phone_url}/",
            data=iter([b'{"device_id": "dev-001", "x": "', b"y" * 3000, b'"}']),
            timeout=30,
        )
        assert phone.status_code == 413 and phone.headers["Connection"] == "close"
        ok = requests.post(
            f"{srv.phone_url}/", json={**fix, "location": {**fix["location"], "extras": {}}}, timeout=30
        )
        assert ok.status_code == 200
    assert store.scalar("SELECT count(*) FROM pings") == 1


# -- the connection ---------------------------------------------------------------------
def read_responses(sock: socket.socket, n: int) -> list[tuple[int, dict, bytes]]:
    """``n`` responses read off a socket: (status, lower-cased headers, body)."""
    buf, out = b"", []
    while len(out) < n:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed after {len(out)} responses: {buf!r}")
            buf += chunk
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
        if status == 100:
            out.append((100, headers, b""))
            continue
        length = int(headers["content-length"])
        while len(buf) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed inside a body")
            buf += chunk
        out.append((status, headers, buf[:length]))
        buf = buf[length:]
    return out


def closed(sock: socket.socket) -> bool:
    """True once the peer has closed (reads give EOF, or the connection is reset)."""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
    except ConnectionResetError:
        return True


def connect(url: str, timeout: float = 30) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port_of(url)), timeout=timeout)


def get(target: str, extra: str = "", version: str = "1.1") -> bytes:
    return f"GET {target} HTTP/{version}\r\nHost: phone\r\n{extra}\r\n".encode()


def test_keep_alive_over_many_requests(server, store):
    conn = http.client.HTTPConnection("127.0.0.1", port_of(server.phone_url), timeout=30)
    local = None
    for i in range(10):
        method = "GET" if i % 2 else "POST"
        params = urlencode({"id": "dev-030", "lat": LAT, "lon": LNG, "timestamp": T0 + i})
        if method == "GET":
            conn.request("GET", f"/?{params}")
        else:
            conn.request(
                "POST", "/", body=params, headers={"Content-Type": "application/x-www-form-urlencoded"}
            )
        r = conn.getresponse()
        assert (r.status, r.read()) == (200, b"OK\n")
        assert r.getheader("Connection") is None  # HTTP/1.1: kept open
        local = local or conn.sock.getsockname()
        assert conn.sock.getsockname() == local  # the same connection every time
    conn.close()
    assert store.scalar("SELECT count(*) FROM pings WHERE device_id = 'dev-030'") == 10


def test_pipelined_requests_are_answered_in_order(server, store):
    with connect(server.phone_url) as s:
        s.sendall(
            get(q(id="nobody", lat=LAT, lon=LNG, timestamp=T0))
            + get(q(id="dev-031", lat=LAT, lon=LNG, timestamp=T0))
            + get(q(lat=LAT, lon=LNG))
            + b"PATCH / HTTP/1.1\r\nHost: phone\r\nContent-Length: 3\r\n\r\nabc"
            + get(q(id="dev-031", lat=LAT, lon=LNG, timestamp=T0 + 1))
        )
        answers = [(st, body) for st, _, body in read_responses(s, 5)]
    assert answers == [
        (403, b"unknown device 'nobody'\n"),
        (200, b"OK\n"),
        (400, b"missing device id: send 'id' or 'deviceid'\n"),
        (405, b"method not allowed: use GET or POST\n"),
        (200, b"OK\n"),
    ]
    assert store.scalar("SELECT count(*) FROM pings WHERE device_id = 'dev-031'") == 2


def test_http10_expect_continue_and_connection_close(server, store):
    target = q(id="dev-032", lat=LAT, lon=LNG, timestamp=T0)
    with connect(server.phone_url) as s:  # HTTP/1.0 without keep-alive: answered, then closed
        s.sendall(get(target, version="1.0"))
        [(status, headers, body)] = read_responses(s, 1)
        assert (status, headers["connection"], body) == (200, "close", b"OK\n")
        assert closed(s)
    with connect(server.phone_url) as s:  # HTTP/1.0 asking for keep-alive
        s.sendall(get(target, "Connection: keep-alive\r\n", "1.0") * 2)
        assert [(st, h["connection"]) for st, h, _ in read_responses(s, 2)] == [(200, "keep-alive")] * 2
    with connect(server.phone_url) as s:  # HTTP/1.1 asking to close
        s.sendall(get(target, "Connection: close\r\n") + get(target))
        [(status, headers, _)] = read_responses(s, 1)
        assert (status, headers["connection"]) == (200, "close")
        assert closed(s)  # the request after "Connection: close" is not read
    body = urlencode({"id": "dev-032", "lat": LAT, "lon": LNG, "timestamp": T0 + 1}).encode()
    with connect(server.phone_url) as s:  # curl's way of sending a body
        s.sendall(
            b"POST / HTTP/1.1\r\nHost: phone\r\nExpect: 100-continue\r\nContent-Length: %d\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n\r\n" % len(body)
        )
        assert read_responses(s, 1)[0][0] == 100
        s.sendall(body)
        assert read_responses(s, 1)[0][::2] == (200, b"OK\n")
    with connect(server.phone_url) as s:  # the client half-closes after its requests
        s.sendall(get(q(id="dev-032", lat=LAT, lon=LNG, timestamp=T0 + 2)) * 2)
        s.shutdown(socket.SHUT_WR)
        assert [st for st, _, _ in read_responses(s, 2)] == [200, 200]
        assert closed(s)
    assert store.scalar("SELECT count(*) FROM pings WHERE device_id = 'dev-032'") == 3


BAD = [
    (b"GARBAGE\r\n\r\n", 400, b"malformed request"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400, b"malformed request"),
    (
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        400,
        b"malformed request",
    ),
    (b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, b"malformed request"),
    (
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)),
        400,
        b"malformed request",
    ),  # TLS hello
    (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 400, b"upgrade"),
    (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 400, b"CONNECT"),
    (b"GET /?id=" + b"9" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, b"request line longer"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", 431, b"larger than 16384"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Many: a\r\n" * 2_000 + b"\r\n", 431, b"larger than 16384"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: " + b"a" * 40_000, 431, b"larger than 16384"),  # never ends
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999\r\n\r\n", 413, b"body larger than"),
]


@pytest.mark.parametrize("data, status, words", BAD)
def test_bad_input_gets_a_clear_4xx_and_the_listener_keeps_serving(server, store, data, status, words):
    with connect(server.phone_url) as s:
        s.sendall(data)
        [(got, headers, body)] = read_responses(s, 1)
        assert (got, headers["connection"]) == (status, "close")
        assert words in body
        assert closed(s)
    r = requests.get(
        f"{server.phone_url}/", params={"id": "dev-040", "lat": LAT, "lon": LNG, "timestamp": T0}, timeout=30
    )
    assert r.status_code == 200


def test_answers_before_a_bad_request_are_still_sent(server, store):
    with connect(server.phone_url) as s:
        s.sendall(get(q(id="dev-041", lat=LAT, lon=LNG, timestamp=T0)) + b"NONSENSE \x00\r\n\r\n")
        assert [st for st, _, _ in read_responses(s, 2)] == [200, 400]
        assert closed(s)
    assert store.scalar("SELECT count(*) FROM pings WHERE device_id = 'dev-041'") == 1


def test_slow_and_idle_connections_are_closed(store, relay):
    with ThreadedServer(store, phones=True, relay=relay, request_timeout=1.0, idle_timeout=1.0) as srv:
        slow = [connect(srv.phone_url) for _ in range(20)]
        for i, s in enumerate(slow):  # slowloris: requests that never finish
            s.sendall(
                b"GET /?id=dev-001&lat=22.5 HTTP/1.1\r\nHost: x\r\n"
                if i % 2
                else b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"device_id"'
            )
        idle = connect(srv.phone_url)
        # meanwhile, a phone that sends whole requests is served
        r = requests.get(
            f"{srv.phone_url}/", params={"id": "dev-042", "lat": LAT, "lon": LNG, "timestamp": T0}, timeout=30
        )
        assert r.status_code == 200
        for s in slow:
            [(status, headers, body)] = read_responses(s, 1)
            assert (status, headers["connection"]) == (408, "close") and b"not received within 1 s" in body
            assert closed(s)
            s.close()
        assert closed(idle)  # an idle keep-alive connection is closed without a word
        idle.close()
        r = requests.get(
            f"{srv.phone_url}/",
            params={"id": "dev-042", "lat": LAT, "lon": LNG, "timestamp": T0 + 1},
            timeout=30,
        )
        assert r.status_code == 200
    assert store.scalar("SELECT count(*) FROM pings WHERE device_id = 'dev-042'") == 2


def test_connections_beyond_the_limit_are_refused(store, relay):
    with ThreadedServer(store, phones=True, relay=relay, max_connections=3) as srv:
        held = [connect(srv.phone_url) for _ in range(3)]
        for s in held:  # each is accepted (the listener answers on it)
            s.sendall(get(q(lat=LAT, lon=LNG)))
            assert read_responses(s, 1)[0][0] == 400
        with connect(srv.phone_url) as extra:
            [(status, headers, body)] = read_responses(extra, 1)
            assert (status, body) == (503, b"too many connections; retry\n") and headers["retry-after"] == "1"
        for s in held:
            s.close()
        deadline_requests = 50
        for _ in range(deadline_requests):  # closed connections are counted off, then served again
            try:
                r = requests.get(
                    f"{srv.phone_url}/",
                    params={"id": "dev-043", "lat": LAT, "lon": LNG, "timestamp": T0},
                    timeout=30,
                )
            except requests.ConnectionError:
                continue
            if r.status_code == 200:
                break
        assert r.status_code == 200


def test_a_fix_the_writer_cannot_take_gets_503_as_on_the_main_port(store, relay):
    with ThreadedServer(store, phones=True, relay=relay) as srv:
        srv.app.blueprints["ingest"].committer.close()  # the writer stops, as at shutdown
        phone, main = both(srv, "GET", q(id="dev-044", lat=LAT, lon=LNG, timestamp=T0))
        assert phone.status_code == 503 and phone.headers["Retry-After"] == "1"
        assert "nothing stored" in phone.text
        assert answer(phone) == answer(main)
    assert store.scalar("SELECT count(*) FROM pings") == 0


def test_main_port_serves_while_more_than_a_thousand_phones_are_connected(template, tmp_path):
    """The standalone server (waitress on the main port) shares its process's file
    descriptors with the phone listener: past 1,023 of them select() would fail."""
    import resource
    import signal

    from tests.ingest_support import free_port, start_subprocess_server

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2_600
    if soft != resource.RLIM_INFINITY and soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip(f"the open-file limit ({hard}) is below {want}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # this test process and its server
    db = copy_store(template[0], tmp_path / "emap.duckdb")
    port, phone_port = free_port(), free_port()
    server = start_subprocess_server(db, port, osmand_port=phone_port)
    phones = []
    try:
        for _ in range(1_100):
            phones.append(socket.create_connection(("127.0.0.1", phone_port), timeout=30))
        fix = {"id": "dev-045", "lat": LAT, "lon": LNG, "timestamp": T0}
        phones[-1].sendall(get("/?" + urlencode(fix)))  # the listener has accepted them all
        assert read_responses(phones[-1], 1)[0][0] == 200
        r = requests.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=30)
        assert r.status_code == 200 and r.json()["accepted"] == 1
        r = requests.get(f"http://127.0.0.1:{port}/osmand", params={**fix, "timestamp": T0 + 1}, timeout=30)
        assert (r.status_code, r.text) == (200, "OK\n")
    finally:
        for s in phones:
            s.close()
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    with Store(db, read_only=True) as store:
        assert store.scalar("SELECT count(*) FROM pings") == 2
