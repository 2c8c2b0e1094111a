"""Forged requests to the administration callbacks and pages over HTTP: a manager asking
for an admin-only action, or for something outside their subtree, and a viewer asking
for anything, get 403 and an audit line; nothing changes."""

# ruff: noqa: F811  (the shared fixtures are imported by name and used as arguments)
from __future__ import annotations

import pytest

from auth import users
from data.ingest import tokens as tok
from pages import ids
from tests.auth_support import auth_store, auth_url, login  # noqa: F401


@pytest.fixture(scope="module")
def dependencies(auth_url):
    s, _ = login(auth_url, "admin")
    return {d["output"]: d for d in s.get(f"{auth_url}/_dash-dependencies").json()}


def _body(dependencies, first_output: str, values: dict, clicked: str | None) -> dict:
    """The request a browser sends for the callback whose first output is ``first_output``."""
    output = next(o for o in dependencies if o.lstrip(".").startswith(first_output + "."))
    dep = dependencies[output]

    def items(part):
        return [
            {
                "id": d["id"],
                "property": d["property"],
                "value": values.get(d["id"], 1 if d["id"] == clicked else None),
            }
            for d in dep[part]
        ]

    outs = [{"id": o.rsplit(".", 1)[0], "property": o.rsplit(".", 1)[1]} for o in output[2:-2].split("...")]
    return {
        "output": output,
        "outputs": outs,
        "inputs": items("inputs"),
        "state": items("state"),
        "changedPropIds": [f"{clicked}.n_clicks"] if clicked else [],
    }


def _refusals(store, user: str) -> int:
    return store.scalar("SELECT count(*) FROM audit_log WHERE user_id = ? AND action = 'refusal'", [user])


def test_a_manager_forging_an_admin_only_action_is_refused_and_audited(auth_url, auth_store, dependencies):
    s, _ = login(auth_url, "nanshan")
    before = _refusals(auth_store, "nanshan")
    body = _body(
        dependencies,
        ids.ADMIN_USERS_RESULT,
        {ids.ADMIN_USER_ID: "forged-admin", ids.ADMIN_USER_ROLE: "admin", ids.ADMIN_USER_NODE: "b-440305"},
        ids.ADMIN_USER_CREATE,
    )
    r = s.post(f"{auth_url}/_dash-update-component", json=body)
    assert r.status_code == 403
    assert users.get_user(auth_store, "forged-admin") is None
    assert _refusals(auth_store, "nanshan") == before + 1
    body = _body(dependencies, ids.ADMIN_USERS_RESULT, {ids.ADMIN_USER_PICK: "admin"}, ids.ADMIN_USER_RESET)
    assert s.post(f"{auth_url}/_dash-update-component", json=body).status_code == 403
    assert _refusals(auth_store, "nanshan") == before + 2


def test_a_manager_forging_a_device_of_another_branch_is_refused(auth_url, auth_store, dependencies):
    s, _ = login(auth_url, "nanshan")
    before = _refusals(auth_store, "nanshan")
    body = _body(
        dependencies,
        ids.ADMIN_DEVICES_RESULT,
        {ids.ADMIN_DEVICE_ID: "forged-phone", ids.ADMIN_DEVICE_OWNER: "c-000001"},
        ids.ADMIN_DEVICE_REGISTER,
    )
    assert s.post(f"{auth_url}/_dash-update-component", json=body).status_code == 403
    assert auth_store.scalar("SELECT count(*) FROM devices WHERE device_id = 'forged-phone'") == 0
    assert _refusals(auth_store, "nanshan") == before + 1


def test_a_manager_cannot_revoke_a_token_made_by_someone_else(auth_url, auth_store, dependencies):
    token = tok.create_token(auth_store, "system", "forged-wms", node_id="b-440305")
    tok.record_creator(auth_store, token, "admin")
    token_id = tok.hash_token(token)[:12]
    s, _ = login(auth_url, "nanshan")
    body = _body(
        dependencies, ids.ADMIN_TOKENS_RESULT, {ids.ADMIN_TOKEN_ID: token_id}, ids.ADMIN_TOKEN_REVOKE
    )
    assert s.post(f"{auth_url}/_dash-update-component", json=body).status_code == 403
    assert tok.TokenCache(auth_store).lookup(token) is not None


def test_a_viewer_gets_nothing(auth_url, auth_store, dependencies):
    s, _ = login(auth_url, "sz-viewer")
    before = _refusals(auth_store, "sz-viewer")
    for first in (
        ids.ADMIN_USERS_RESULT,
        ids.ADMIN_DEVICES_RESULT,
        ids.ADMIN_TOKENS_RESULT,
        ids.ADMIN_AUDIT_TABLE,
    ):
        r = s.post(f"{auth_url}/_dash-update-component", json=_body(dependencies, first, {}, None))
        assert r.status_code == 403, first
    for name in ("users", "devices", "tokens", "audit"):
        assert s.get(f"{auth_url}/admin/{name}?node=r-440300").status_code == 403
    assert _refusals(auth_store, "sz-viewer") == before + 8


def test_a_manager_reads_their_own_audit_lines_only(auth_url, auth_store, dependencies):
    users.audit(auth_store, "shenzhen", "export", "forged-test: a line of the region manager")
    s, _ = login(auth_url, "nanshan")
    body = _body(dependencies, ids.ADMIN_AUDIT_TABLE, {ids.ADMIN_AUDIT_TEXT: "forged-test"}, None)
    r = s.post(f"{auth_url}/_dash-update-component", json=body)
    assert r.status_code == 200
    assert "a line of the region manager" not in r.text
    s, _ = login(auth_url, "admin")
    assert "a line of the region manager" in s.post(f"{auth_url}/_dash-update-component", json=body).text
