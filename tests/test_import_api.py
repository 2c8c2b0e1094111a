# ruff: noqa: F811  (the shared ingest fixtures are imported by name and used as arguments)
"""``POST /api/v1/import`` on a real HTTP server on 127.0.0.1 (werkzeug, threaded) and a
real store: files imported through the server, scoped by the token, one at a time, while
live batches keep being acknowledged."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import polars as pl
import pytest
import requests

from config import Settings
from data.ingest import uploads as uploads_module
from data.ingest.tokens import create_token
from tests.ingest_support import SHENZHEN, ThreadedServer, store, template, tokens  # noqa: F401

LAT, LNG = SHENZHEN  # Futian, branch b-440304
NANSHAN = (22.5330, 113.9300)  # branch b-440305
T0 = 1_763_856_000  # 2025-11-23 00:00:00 UTC


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def pings_csv(n, device="dev-001", start=T0, where=SHENZHEN) -> str:
    lines = ["device_id,ts,lat,lng"]
    lines += [f"{device},{start + i},{where[0] + (i % 50) * 1e-5},{where[1]}" for i in range(n)]
    return "\n".join(lines) + "\n"


@pytest.fixture
def server(store, tmp_path):
    settings = replace(Settings.from_env({}), data_dir=tmp_path / "var", import_max_bytes=200_000)
    with ThreadedServer(store, settings) as srv:
        yield srv


def post_file(server, body, token, **params):
    return requests.post(
        f"{server.url}/api/v1/import",
        params=params,
        data=body,
        headers=auth(token) if token else {},
        timeout=120,
    )


def test_a_good_file_is_imported_once(server, store, tokens):
    body = pings_csv(300)
    r = post_file(server, body.encode(), tokens["system"], name="pings-monday.csv")
    assert r.status_code == 200, r.text
    answer = r.json()
    # the import is in the history, under the id the answer gives
    row = store.sql(
        "SELECT user_id, channel, file_name, accepted FROM imports WHERE import_id = ?",
        [answer.pop("import_id")],
    )
    assert row.rows() == [("system:test-ops", "api", "pings-monday.csv", 300)]
    assert answer == {
        "kind": "pings",
        "rows": 300,
        "accepted": 300,
        "rejected": 0,
        "duplicates": 0,
        "quarantine_source": "POST /api/v1/import pings-monday.csv (system:test-ops)",
        "rejected_lines": [],
    }
    assert store.scalar("SELECT count(*) FROM pings") == 300
    assert store.scalar("SELECT sum(pings) FROM cube_hourly") == 300
    again = post_file(server, body.encode(), tokens["system"], name="pings-monday.csv").json()
    assert (again["accepted"], again["duplicates"]) == (0, 300)
    assert store.scalar("SELECT sum(pings) FROM cube_hourly") == 300
    # Parquet, kind given, name without a type: told from the file's first bytes
    frame = pl.DataFrame(
        {
            "device_id": ["dev-002"] * 20,
            "ts": [T0 + i for i in range(20)],
            "lat": [LAT] * 20,
            "lng": [LNG] * 20,
        }
    )
    path = server.settings.data_dir.parent / "upload.parquet"
    frame.write_parquet(path)
    r = post_file(server, path.read_bytes(), tokens["system"], kind="pings", name="export")
    assert r.status_code == 200 and r.json()["accepted"] == 20
    assert list((server.settings.data_dir / "uploads").iterdir()) == []  # spool files removed


def test_a_ragged_file_answers_its_bad_line_numbers(server, store, tokens):
    lines = pings_csv(30).splitlines()
    lines[4] = lines[4].rsplit(",", 2)[0]  # line 5 cut short
    lines[10] += ",7,extra"  # line 11 too long
    lines[20] = lines[20].replace(",", ',"', 1)  # line 21: a quote never closed
    body = ("\n".join(lines) + "\n").encode()
    r = post_file(server, body, tokens["system"], name="pings-cut.csv")
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["rows"], answer["accepted"], answer["rejected"], answer["duplicates"]) == (30, 27, 3, 0)
    assert answer["rejected_lines"] == [
        {"line": 5, "reason": "2 fields where the header has 4"},
        {"line": 11, "reason": "6 fields where the header has 4"},
        {"line": 21, "reason": "broken quotes: unexpected end of data"},
    ]
    source = answer["quarantine_source"]
    assert store.scalar("SELECT count(*) FROM quarantine WHERE source = ?", [source]) == 3
    post_file(server, body, tokens["system"], name="pings-cut.csv")
    assert store.scalar("SELECT count(*) FROM quarantine WHERE source = ?", [source]) == 3  # not twice


def test_a_node_token_imports_inside_its_node_only(server, store, tokens):
    futian = create_token(store, "system", "futian-ops", node_id="b-440304")
    store.upsert(
        "outlets",
        pl.DataFrame(
            {
                "outlet_id": ["o-nanshan"],
                "name": ["南山1号"],
                "branch_id": ["b-440305"],
                "lat": [NANSHAN[0]],
                "lng": [NANSHAN[1]],
                "capacity_couriers": [9],
            }
        ),
        "outlet_id",
    )
    outlets = (
        "outlet_id,name,lat,lng,capacity_couriers\n"
        f"o-futian,福田1号,{LAT},{LNG},5\n"
        f"o-nanshan,taken over,{LAT},{LNG},1\n"  # stored outside: not overwritten
        f"o-new-nanshan,南山2号,{NANSHAN[0]},{NANSHAN[1]},4\n"
    )  # outside the node
    r = post_file(server, outlets.encode(), futian, name="outlets.csv")
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["accepted"], answer["rejected"]) == (1, 2)
    refusal = "the token of system 'futian-ops' cannot write outside node 'b-440304'"
    assert answer["rejected_lines"] == [
        {"line": 3, "reason": f"{refusal}: outlet_id 'o-nanshan' is stored outside it"},
        {"line": 4, "reason": refusal},
    ]
    assert store.sql(
        "SELECT outlet_id, name, branch_id, capacity_couriers FROM outlets ORDER BY 1"
    ).rows() == [("o-futian", "福田1号", "b-440304", 5), ("o-nanshan", "南山1号", "b-440305", 9)]

    couriers = (
        "courier_id,outlet_id,device_id\n"
        "c-f1,o-futian,phone-f1\n"
        "c-f2,o-nanshan,dev-041\n"
    )  # a courier of an outlet outside the node
    answer = post_file(server, couriers.encode(), futian, name="couriers.csv").json()
    assert (answer["accepted"], answer["rejected"]) == (1, 1)
    assert answer["rejected_lines"] == [{"line": 3, "reason": refusal}]
    # dev-041 still belongs to the courier it had
    assert store.scalar("SELECT courier_id FROM devices WHERE device_id = 'dev-041'") == "c-dev-041"

    body = pings_csv(10) + "\n".join(pings_csv(5, start=T0 + 100, where=NANSHAN).splitlines()[1:]) + "\n"
    answer = post_file(server, body.encode(), futian, name="pings.csv").json()
    assert (answer["rows"], answer["accepted"], answer["rejected"]) == (15, 10, 5)
    assert {x["reason"] for x in answer["rejected_lines"]} == {refusal}
    assert [x["line"] for x in answer["rejected_lines"]] == [12, 13, 14, 15, 16]
    assert store.scalar("SELECT count(*) FROM pings WHERE branch_id <> 'b-440304'") == 0


def test_refusals_store_nothing(server, store, tokens):
    before = store.counts()
    body = pings_csv(20).encode()
    r = requests.post(f"{server.url}/api/v1/import", data=body, timeout=30)
    assert r.status_code == 401
    assert post_file(server, body, tokens["device"]).status_code == 403
    r = post_file(server, body, tokens["system"], kind="parcels")
    assert r.status_code == 400 and "unknown kind 'parcels'" in r.json()["error"]
    r = post_file(server, b"\x00\x01\x02 not a file \x00", tokens["system"], name="pings.csv")
    assert r.status_code == 400 and "binary data" in r.json()["error"]
    r = post_file(server, b"PAR1 broken", tokens["system"], name="pings.parquet")
    assert r.status_code == 400 and "cannot be read" in r.json()["error"]
    big = pings_csv(6000).encode()
    assert len(big) > server.settings.import_max_bytes
    r = post_file(server, big, tokens["system"], name="pings.csv")  # by its Content-Length
    assert r.status_code == 413
    r = post_file(
        server,
        iter([big[i : i + 65536] for i in range(0, len(big), 65536)]),  # chunked
        tokens["system"],
        name="pings.csv",
    )
    assert r.status_code == 413
    assert store.counts() == before
    assert list((server.settings.data_dir / "uploads").iterdir()) == []


def test_live_batches_are_acknowledged_while_a_file_is_imported(store, tokens, tmp_path, monkeypatch):
    monkeypatch.setattr(uploads_module, "BATCH_ROWS", 5_000)  # many batches, many turns
    n = 60_000
    settings = replace(Settings.from_env({}), data_dir=tmp_path / "var")
    body = pings_csv(n, device="dev-010").encode()
    with ThreadedServer(store, settings) as server:
        answers = {}

        def import_it():
            answers["import"] = post_file(server, body, tokens["system"], name="pings-big.csv")
            answers["import_done"] = time.monotonic()

        worker = threading.Thread(target=import_it)
        worker.start()
        uploads = server.app.blueprints["ingest"].uploads
        while not uploads.busy and worker.is_alive():
            time.sleep(0.005)
        second = post_file(server, pings_csv(5).encode(), tokens["system"], name="pings-other.csv")
        acked = []
        i = 0
        while worker.is_alive():
            batch = [
                {"device_id": "dev-020", "ts": T0 + i * 10 + k, "lat": LAT, "lng": LNG} for k in range(10)
            ]
            r = requests.post(
                f"{server.url}/api/v1/pings", json=batch, headers=auth(tokens["system"]), timeout=60
            )
            assert r.status_code == 200 and r.json()["accepted"] == 10
            acked.append(time.monotonic())
            i += 1
        worker.join()
    assert second.status_code == 409 and "another import" in second.json()["error"]
    assert answers["import"].status_code == 200 and answers["import"].json()["accepted"] == n
    during = [t for t in acked if t < answers["import_done"]]
    print(f"live batches acknowledged while the import ran: {len(during)} of {len(acked)}")
    assert during  # live ingest was not held off until the import ended
    assert store.scalar("SELECT count(*) FROM pings") == n + 10 * len(acked)
    assert store.scalar("SELECT sum(pings) FROM cube_hourly") == n + 10 * len(acked)


def test_answers_match_the_openapi_spec(server, tokens):
    from tests.test_openapi import check

    spec = requests.get(f"{server.url}/api/v1/openapi.json", timeout=30).json()
    ragged = pings_csv(10).replace("\n", "\ncut,short\n", 1)
    answers = [
        post_file(server, pings_csv(10).encode(), tokens["system"], name="pings.csv"),
        post_file(server, ragged.encode(), tokens["system"], name="pings-ragged.csv"),
        requests.post(f"{server.url}/api/v1/import", data=b"x", timeout=30),
        post_file(server, b"x", tokens["device"]),
        post_file(server, b"x", tokens["system"], kind="nope"),
        post_file(server, b"x" * 300_000, tokens["system"], name="pings.csv"),
    ]
    assert [r.status_code for r in answers] == [200, 200, 401, 403, 400, 413]
    assert answers[1].json()["rejected_lines"] == [{"line": 2, "reason": "2 fields where the header has 4"}]
    for r in answers:
        check(spec, "/api/v1/import", "post", r)
