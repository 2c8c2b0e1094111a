"""The cases of issue 16, one test each, from the browser's recorded requests replayed
as the branch user ``nanshan`` (b-440305) against a real server on loopback."""

# ruff: noqa: F811
from __future__ import annotations

import copy
import json
import re

import pytest

from pages import ids
from tests.security.scope_support import (
    OWN,
    USER,
    audit_count,
    decoded,
    header_problems,
    post,
    retarget,
    wait_for_audit,
)


def _output_ids(output: str) -> list[str]:
    return [o.rsplit(".", 1)[0] for o in output.strip(".").split("...")]


def _clicked(body: dict) -> bool:
    def walk(x):
        if isinstance(x, list):
            return any(walk(v) for v in x)
        return isinstance(x, dict) and x.get("property") == "n_clicks" and bool(x.get("value"))

    return walk(body.get("inputs"))


def _recorded(recorded, output_id: str, trigger: str | None = None, clicked: bool = False) -> dict:
    """A recorded request of the callback whose outputs include ``output_id`` (the first
    one triggered by ``trigger``, or by a click, if asked)."""
    for output, bodies in recorded["bodies"].items():
        if output_id in _output_ids(output):
            for b in bodies:
                if trigger is not None and not any(trigger in str(c) for c in b.get("changedPropIds") or []):
                    continue
                if clicked and not _clicked(b):
                    continue
                return copy.deepcopy(b)
    pytest.fail(f"no recorded request of {output_id} (trigger {trigger}); steps {recorded['steps']}")


def _state_item(body: dict) -> dict:
    for section in ("inputs", "state"):
        for it in body.get(section) or []:
            if isinstance(it, dict) and it.get("id") == ids.STATE:
                return it
    raise AssertionError(f"no view state in {body['output']}")


def _refused(resp, store, before: int, user: str = USER) -> None:
    """A 403 JSON error with the security headers and a new refusal line in the audit log."""
    assert resp.status_code == 403, (resp.status_code, resp.text[:300])
    assert "error" in resp.json()
    assert not header_problems(resp), header_problems(resp)
    assert wait_for_audit(store, "refusal", before, user) > before


def _refused_as_sent_and_renamed(b, output, target, clients, auth_url, auth_store, secrets) -> None:
    """The branch user's request, as sent and with the state's id renamed: refused,
    audited, and carrying none of ``target``'s data."""
    for rename in (False, True):
        if rename:
            b = copy.deepcopy(b)
            _state_item(b)["id"] = "x"
        before = audit_count(auth_store, "refusal")
        r = post(clients[USER], auth_url, b)
        _no_leak(r, secrets, output, target)
        _refused(r, auth_store, before)


def _no_leak(resp, secrets, output: str, target: str) -> None:
    data, text = decoded(resp)
    assert not secrets.leaks(output, target, data, text)


def test_kpis_of_hq_with_the_state_id_renamed(recorded, clients, auth_url, auth_store, secrets):
    body = retarget(_recorded(recorded, ids.KPIS), secrets.nodes, "hq")
    own = retarget(body, secrets.nodes, OWN)
    admin = post(clients["admin"], auth_url, body)
    assert admin.status_code == 200
    kpis = [s for s in json.dumps(admin.json(), ensure_ascii=False).split('"') if s[:1].isdigit()]
    for rename in (False, True):
        b = copy.deepcopy(body)
        if rename:
            _state_item(b)["id"] = "x"
        before = audit_count(auth_store, "refusal")
        r = post(clients[USER], auth_url, b)
        assert r.text != admin.text
        _refused(r, auth_store, before)
    # the user's own KPIs still come
    r = post(clients[USER], auth_url, own)
    assert r.status_code == 200 and '"kpi-' in r.text
    assert kpis  # admin's answer held figures to leak


def test_map_shows_no_courier_of_another_branch(recorded, clients, auth_url, auth_store, secrets):
    body = _recorded(recorded, ids.MAP)
    # other branches, where every role with the branch sees positions (above branch
    # level even admin needs the grant)
    for target in ("b-440304", "b-440106"):
        b = retarget(body, secrets.nodes, target)
        state = _state_item(b)
        state["value"] = {**state["value"], "layers": ["hexes", "couriers", "vehicles"]}
        admin = post(clients["admin"], auth_url, b)
        why = (
            auth_store.sql("SELECT detail FROM audit_log WHERE user_id = 'admin' ORDER BY rowid DESC LIMIT 1")
            .to_series()
            .to_list()
        )
        assert admin.status_code == 200, (admin.status_code, why)
        assert secrets.foreign_things & set(re.findall(r"c-\d{6}", admin.text)), "admin sees their couriers"
        _refused_as_sent_and_renamed(b, body["output"], target, clients, auth_url, auth_store, secrets)


@pytest.mark.parametrize("output_id", [ids.ALERTS, ids.OUTLOOK])
def test_alerts_and_outlook_of_other_nodes(output_id, recorded, clients, auth_url, auth_store, secrets):
    body = _recorded(recorded, output_id)
    for target in ("hq", "r-440100", "b-440304"):
        b = retarget(body, secrets.nodes, target)
        _refused_as_sent_and_renamed(b, body["output"], target, clients, auth_url, auth_store, secrets)


def test_export_of_hq_is_refused_and_an_allowed_export_is_audited(
    recorded, clients, auth_url, auth_store, secrets
):
    body = _recorded(recorded, ids.EXPORT_DOWNLOAD)
    hq = retarget(body, secrets.nodes, "hq")
    for rename in (False, True):
        b = copy.deepcopy(hq)
        if rename:
            _state_item(b)["id"] = "x"
        before = audit_count(auth_store, "refusal")
        r = post(clients[USER], auth_url, b)
        assert '"content"' not in r.text
        _refused(r, auth_store, before)
    before = audit_count(auth_store, "export", USER)
    own = retarget(body, secrets.nodes, OWN)
    _state_item(own)["value"]["hour"] = 10  # an hour with parcels in the branch
    r = post(clients[USER], auth_url, own)
    assert r.status_code == 200 and '"content"' in r.text
    assert audit_count(auth_store, "export", USER) == before + 1
    # a viewer may not export at all, not even their own node
    before = audit_count(auth_store, "export", "sz-viewer")
    r = post(clients["sz-viewer"], auth_url, retarget(body, secrets.nodes, "r-440300"))
    assert r.status_code == 403 and audit_count(auth_store, "export", "sz-viewer") == before


def test_a_pattern_id_sent_as_a_json_string(recorded, clients, auth_url, auth_store, secrets):
    """A breadcrumb button naming hq, its id sent as the JSON text of the pattern id."""
    body = retarget(_recorded(recorded, ids.STATE, trigger='"type":"crumb"'), secrets.nodes, OWN)
    crumb = json.dumps({"node": "hq", "type": ids.CRUMB}, sort_keys=True, separators=(",", ":"))
    for section in ("inputs",):
        for i, it in enumerate(body[section]):
            if isinstance(it, list) and (
                not it or (isinstance(it[0].get("id"), dict) and "node" in it[0]["id"])
            ):
                body[section][i] = [{"id": crumb, "property": "n_clicks", "value": 1}]
    body["changedPropIds"] = [f"{crumb}.n_clicks"]
    before = audit_count(auth_store, "refusal")
    r = post(clients[USER], auth_url, body)
    if r.status_code == 200:  # clamped to the user's own node, nothing of hq
        assert r.json()["response"][ids.STATE]["data"]["node"] == OWN
        _no_leak(r, secrets, body["output"], "hq")
    else:
        _refused(r, auth_store, before)


def test_a_dispatch_decision_with_its_target_only_in_changed_prop_ids(
    recorded, clients, auth_url, auth_store, secrets
):
    body = _recorded(recorded, ids.OUTLOOK_NOTE, clicked=True)
    clicked = json.loads(body["changedPropIds"][0].rsplit(".", 1)[0])
    foreign = {**clicked, "branch": "b-440304"}
    own = retarget(body, secrets.nodes, OWN)  # the buttons and view of the user's branch
    own["changedPropIds"] = [json.dumps(foreign, sort_keys=True, separators=(",", ":")) + ".n_clicks"]
    rows = auth_store.scalar("SELECT count(*) FROM dispatch_decisions WHERE branch_id = 'b-440304'")
    before = audit_count(auth_store, "refusal")
    r = post(clients[USER], auth_url, own)
    assert r.status_code < 500
    assert auth_store.scalar("SELECT count(*) FROM dispatch_decisions WHERE branch_id = 'b-440304'") == rows
    _refused(r, auth_store, before)


def test_a_dispatch_decision_is_stored_with_its_user(recorded, clients, auth_url, auth_store):
    body = _recorded(recorded, ids.OUTLOOK_NOTE, clicked=True)
    assert _state_item(body)["value"]["node"] == "r-440300"  # recorded in Shenzhen's view
    before = auth_store.scalar("SELECT count(*) FROM dispatch_decisions WHERE user_name = 'shenzhen'")
    r = post(clients["shenzhen"], auth_url, body)
    assert r.status_code == 200, r.text[:300]
    after = auth_store.sql(
        "SELECT user_name, branch_id FROM dispatch_decisions ORDER BY decided_at DESC LIMIT 1"
    ).row(0, named=True)
    assert after["user_name"] == "shenzhen"
    assert (
        auth_store.scalar("SELECT count(*) FROM dispatch_decisions WHERE user_name = 'shenzhen'")
        == before + 1
    )


def test_url_search_and_drill_naming_hq(recorded, clients, auth_url, auth_store, secrets):
    body = retarget(_recorded(recorded, ids.STATE), secrets.nodes, OWN)
    url_at = next(i for i, it in enumerate(body["inputs"]) if isinstance(it, dict) and it["id"] == ids.URL)
    drill_at = next(
        i for i, it in enumerate(body["inputs"]) if isinstance(it, dict) and it["id"] == ids.DRILL
    )
    for at, value, changed in ((url_at, "?node=hq", "url.search"), (drill_at, "hq", "drill.value")):
        b = copy.deepcopy(body)
        b["inputs"][at]["value"] = value
        b["changedPropIds"] = [changed]
        before = audit_count(auth_store, "refusal")
        r = post(clients[USER], auth_url, b)
        assert r.status_code < 500
        if r.status_code == 200:  # clamped to the user's own node
            assert r.json()["response"][ids.STATE]["data"]["node"] == OWN
            assert "node=hq" not in r.text
        else:
            _refused(r, auth_store, before)
    # a page address naming hq goes to the user's own node
    r = clients[USER].get(f"{auth_url}/?node=hq", allow_redirects=False)
    assert (
        r.status_code == 302 and f"node={OWN}" in r.headers["Location"] and "hq" not in r.headers["Location"]
    )
