"""The imports page, the imports history, one-click registration of an unknown device,
the devices' bulk CSV form and the tokens page, in headless Chromium with one browser
context per role (on the shared sign-in server of tests/auth_support.py)."""

# ruff: noqa: F811  (the shared fixtures are imported by name and used as arguments)
from __future__ import annotations

import csv
import re
import time

import pytest

from data.ingest import tokens as tok
from data.ingest.group_commit import GroupCommitter
from pages import ids
from tests.auth_support import auth_store, auth_url  # noqa: F401
from tests.browser.test_admin_pages import _shown, _signed_in

pytestmark = pytest.mark.browser

OWN_COURIER = "c-000026"  # a courier of b-440305 (Nanshan)
OWN_PLACE, OTHER_PLACE = (22.596615, 113.926888), (22.546487, 114.063211)  # b-440305, b-440304
T0 = 1_794_268_800  # 2026-11-10 00:00 UTC, before the demo's days: no ping of the file is stored yet


def _device_of(store, courier: str) -> str:
    return store.scalar("SELECT min(device_id) FROM devices WHERE courier_id = ?", [courier])


_DROP = """([name, text]) => {
    const moved = new DataTransfer();
    moved.items.add(new File([text], name, {type: "text/csv"}));
    const zone = document.getElementById("import-drop");
    zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: moved, bubbles: true, cancelable: true}));
    zone.dispatchEvent(new DragEvent("drop", {dataTransfer: moved, bubbles: true, cancelable: true}));
    return document.getElementById("import-file").files[0].name;
}"""


def _import(page, url: str, name: str, body: bytes, drop: bool = False) -> dict:
    """Choose (or drop) a file on the imports page, send it, and read the counts shown."""
    page.goto(f"{url}/admin/imports")
    if drop:
        assert page.evaluate(_DROP, [name, body.decode()]) == name
    else:
        page.set_input_files("#import-file", files=[{"name": name, "mimeType": "text/csv", "buffer": body}])
    page.click("#import-submit")
    page.wait_for_selector("#import-result")
    return {
        "id": page.get_attribute("#import-result", "data-import"),
        **{
            k: int(page.inner_text(f"#import-{k}"))
            for k in ("rows", "accepted", "rejected-count", "duplicates")
        },
    }


def _download(page, selector: str) -> tuple[str, list[list[str]]]:
    with page.expect_download() as got:
        page.click(selector)
    path = got.value.path()
    with open(path, encoding="utf-8", newline="") as fh:
        return got.value.suggested_filename, list(csv.reader(fh))


def _history_ids(page, url: str) -> set[str]:
    page.goto(f"{url}/admin/imports")
    return set(page.eval_on_selector_all("#imports-history tbody tr", "rs => rs.map(r => r.dataset.import)"))


@pytest.fixture(scope="module")
def admin_import(browser, auth_url, auth_store):
    """An admin imports a file of 3 good rows, one of them twice, and 2 bad ones."""
    device = _device_of(auth_store, OWN_COURIER)
    lat, lng = OWN_PLACE
    body = (
        "device_id,ts,lat,lng\n"
        f"{device},{T0},{lat},{lng}\n"
        f"{device},{T0 + 60},{lat},{lng}\n"
        f"{device},{T0 + 120},not-a-latitude,{lng}\n"  # line 4: unreadable
        '=HYPERLINK("http://x"),1\n'  # line 5: ragged, and a formula if opened as it is
        f"{device},{T0 + 180},{lat},{lng}\n"
        f"{device},{T0 + 60},{lat},{lng}\n"  # the same record again
    ).encode()
    context, page = _signed_in(browser, auth_url, "admin")
    try:
        shown = _import(page, auth_url, "admin-pings.csv", body)
        name, rows = _download(page, "#import-result a.import-report")
    finally:
        context.close()
    return shown, name, rows, device


def test_an_admin_imports_a_file_and_downloads_its_rejected_rows(admin_import, auth_store):
    shown, name, rows, device = admin_import
    assert (shown["rows"], shown["accepted"], shown["rejected-count"], shown["duplicates"]) == (6, 3, 2, 1)
    stored = auth_store.scalar(
        "SELECT count(*) FROM pings WHERE device_id = ? AND epoch(ts) BETWEEN ? AND ?", [device, T0, T0 + 180]
    )
    assert stored == 3
    assert name == f"emap-import-{shown['id']}-rejected.csv"
    assert rows[0] == ["row_number", "reason", "raw"]
    assert [r[0] for r in rows[1:]] == ["4", "5"]
    assert "not-a-latitude" in rows[1][2]
    # the ragged line is there as sent, and no cell can run as a formula in a spreadsheet
    assert "=HYPERLINK" in rows[2][2] and "fields" in rows[2][1]
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)
    row = auth_store.sql("SELECT * FROM imports WHERE import_id = ?", [shown["id"]]).row(0, named=True)
    assert (row["user_id"], row["channel"], row["scope_node"], row["accepted"]) == ("admin", "page", None, 3)


@pytest.fixture(scope="module")
def manager_import(browser, auth_url, auth_store):
    """The Nanshan manager drops a file with one row in Futian, outside their branch."""
    device = _device_of(auth_store, OWN_COURIER)
    body = (
        "device_id,ts,lat,lng\n"
        f"{device},{T0 + 600},{OWN_PLACE[0]},{OWN_PLACE[1]}\n"
        f"{device},{T0 + 660},{OTHER_PLACE[0]},{OTHER_PLACE[1]}\n"
    ).encode()
    context, page = _signed_in(browser, auth_url, "nanshan")
    try:
        shown = _import(page, auth_url, "nanshan <b>pings</b>.csv", body, drop=True)
        reasons = page.eval_on_selector_all(
            "#import-rejected tbody tr td:nth-child(2)", "tds => tds.map(t => t.textContent)"
        )
        heading = page.inner_text("#import-result h3")
        bold = page.locator("#import-result b").count()
    finally:
        context.close()
    return shown, reasons, heading, bold


def test_a_managers_rows_outside_their_subtree_are_quarantined_with_the_reason(manager_import, auth_store):
    shown, reasons, heading, bold = manager_import
    assert (shown["rows"], shown["accepted"], shown["rejected-count"]) == (2, 1, 1)
    assert len(reasons) == 1 and "outside node 'b-440305'" in reasons[0]
    # the file's name is text, never markup
    assert "<b>pings</b>" in heading and bold == 0
    row = auth_store.sql("SELECT scope_node, user_id FROM imports WHERE import_id = ?", [shown["id"]]).row(0)
    assert row == ("b-440305", "nanshan")
    assert auth_store.scalar("SELECT count(*) FROM pings WHERE epoch(ts) = ?", [T0 + 660]) == 0


def test_the_history_shows_an_admin_every_import_and_a_manager_their_subtrees(
    browser, auth_url, admin_import, manager_import
):
    admin_id, manager_id = admin_import[0]["id"], manager_import[0]["id"]
    context, page = _signed_in(browser, auth_url, "admin")
    try:
        assert {admin_id, manager_id} <= _history_ids(page, auth_url)
    finally:
        context.close()
    context, page = _signed_in(browser, auth_url, "nanshan")
    try:
        links = page.eval_on_selector_all(f"#{ids.ADMIN_NAV} a", "as => as.map(a => a.getAttribute('href'))")
        assert "/admin/imports" in links
        seen = _history_ids(page, auth_url)
        assert manager_id in seen and admin_id not in seen
        # the manager's own report downloads; the admin's is refused
        name, rows = _download(page, f'#imports-history tr[data-import="{manager_id}"] a.import-report')
        assert len(rows) == 2 and "outside node" in rows[1][1]
        assert page.goto(f"{auth_url}/admin/imports/{admin_id}/rejected.csv").status == 403
    finally:
        context.close()


def test_a_viewer_cannot_open_the_imports_page(browser, auth_url, auth_store):
    lines = (
        "SELECT count(*) FROM audit_log WHERE user_id = 'sz-viewer' AND action = 'refusal' "
        "AND contains(detail, 'GET /admin/imports')"
    )
    before = auth_store.scalar(lines)
    context, page = _signed_in(browser, auth_url, "sz-viewer")
    try:
        assert page.locator("a[href='/admin/imports']").count() == 0
        assert page.goto(f"{auth_url}/admin/imports").status == 403
        assert "Import" not in page.content()
    finally:
        context.close()
    assert auth_store.scalar(lines) == before + 1


def _quarantine_fixes(store, device: str, place, n: int) -> None:
    """Fixes of an unregistered device, refused and kept in quarantine as a phone's are."""
    gc = GroupCommitter(store, "Asia/Shanghai").start()
    try:
        now = int(time.time())
        fixes = [
            {"id": device, "lat": place[0], "lon": place[1], "timestamp": now - 60 * i} for i in range(n)
        ]
        assert gc.submit("pings", fixes, "phone-test").result(timeout=30).accepted == 0
    finally:
        gc.close()


def test_a_manager_registers_a_seen_device_in_one_click(browser, auth_url, auth_store):
    _quarantine_fixes(auth_store, "seen-phone-1", OWN_PLACE, 2)
    context, page = _signed_in(browser, auth_url, "nanshan")
    try:
        page.goto(f"{auth_url}/admin/devices")
        row = f"#{ids.ADMIN_UNKNOWN_TABLE} tr[data-device='seen-phone-1']"
        page.wait_for_selector(row)
        page.click(f"{row} .Select-control, {row} .dash-dropdown")
        page.keyboard.type(OWN_COURIER)
        page.keyboard.press("Enter")
        page.click(f"{row} button.admin-unknown-register")
        _shown(page, f"#{ids.ADMIN_UNKNOWN_RESULT}", "Registered seen-phone-1")
        assert "2 fixes stored" in page.inner_text(f"#{ids.ADMIN_UNKNOWN_RESULT}")
        # the tables are drawn again: the device is registered, no longer unknown
        page.wait_for_selector(f"#{ids.ADMIN_DEVICES_TABLE} td:has-text('seen-phone-1')")
        assert page.locator(row).count() == 0
    finally:
        context.close()
    assert auth_store.scalar("SELECT count(*) FROM pings WHERE device_id = 'seen-phone-1'") == 2
    assert auth_store.scalar("SELECT courier_id FROM devices WHERE device_id = 'seen-phone-1'") == OWN_COURIER
    assert auth_store.scalar("SELECT count(*) FROM quarantine WHERE contains(raw, 'seen-phone-1')") == 0


def test_a_manager_registers_devices_from_a_bulk_csv(browser, auth_url, auth_store):
    body = f"device_id,courier_id\nbulk-web-1,{OWN_COURIER}\nbulk-web-2,c-000001\nbulk-web-3,{OWN_COURIER}\n"
    context, page = _signed_in(browser, auth_url, "nanshan")
    try:
        page.goto(f"{auth_url}/admin/devices")
        page.wait_for_selector(f"#{ids.ADMIN_DEVICES_TABLE} table")
        page.set_input_files(
            f"#{ids.ADMIN_DEVICE_BULK} input[type=file]",
            files=[{"name": "devices.csv", "mimeType": "text/csv", "buffer": body.encode()}],
        )
        said = _shown(page, f"#{ids.ADMIN_DEVICES_RESULT}", "devices registered or attached")
        assert said.startswith("2 devices registered or attached, 1 lines refused")
        assert re.search(r"line 3: .*outside", said)
        page.wait_for_selector(f"#{ids.ADMIN_DEVICES_TABLE} td:has-text('bulk-web-3')")
    finally:
        context.close()
    registered = set(
        auth_store.sql("SELECT device_id FROM devices WHERE device_id LIKE 'bulk-web-%'")["device_id"]
    )
    assert registered == {"bulk-web-1", "bulk-web-3"}


def test_a_manager_creates_and_revokes_their_own_token_only(browser, auth_url, auth_store):
    device = _device_of(auth_store, OWN_COURIER)
    theirs = tok.create_token(auth_store, "system", "browser-wms", node_id="b-440305")
    tok.record_creator(auth_store, theirs, "admin")
    theirs_id = tok.hash_token(theirs)[:12]
    context, page = _signed_in(browser, auth_url, "nanshan")
    try:
        page.goto(f"{auth_url}/admin/tokens")
        page.wait_for_selector(f"#{ids.ADMIN_TOKENS_TABLE} table")
        page.fill(f"#{ids.ADMIN_TOKEN_SUBJECT}", device)
        page.click(f"#{ids.ADMIN_TOKEN_CREATE}")
        said = _shown(page, f"#{ids.ADMIN_TOKENS_RESULT}", "shown once")
        token = re.search(r"\(shown once\): (\S+)", said).group(1)
        assert tok.TokenCache(auth_store).lookup(token).device_id == device
        token_id = tok.hash_token(token)[:12]
        page.wait_for_selector(f"#{ids.ADMIN_TOKENS_TABLE} td:has-text('{token_id}')")

        page.fill(f"#{ids.ADMIN_TOKEN_ID}", token_id)
        page.click(f"#{ids.ADMIN_TOKEN_REVOKE}")
        _shown(page, f"#{ids.ADMIN_TOKENS_RESULT}", f"Revoked {token_id}")
        assert tok.TokenCache(auth_store).lookup(token) is None

        page.fill(f"#{ids.ADMIN_TOKEN_ID}", theirs_id)
        with page.expect_response(lambda r: "/_dash-update-component" in r.url) as answer:
            page.click(f"#{ids.ADMIN_TOKEN_REVOKE}")
        assert answer.value.status == 403
        assert tok.TokenCache(auth_store).lookup(theirs) is not None
    finally:
        context.close()
