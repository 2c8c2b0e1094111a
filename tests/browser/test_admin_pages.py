"""The administration pages in headless Chromium, one browser context per role: an admin
creates a user and resets a password; a branch manager registers a device for a courier
of their branch, is refused one of another branch and reads only their subtree's audit
lines; a viewer has no link and gets 403 on the URL."""

# ruff: noqa: F811  (the shared fixtures are imported by name and used as arguments)
from __future__ import annotations

import re

import pytest

from auth import users
from pages import ids
from tests.auth_support import PASSWORD, auth_store, auth_url, login  # noqa: F401

pytestmark = pytest.mark.browser


def _signed_in(browser, url: str, user: str):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{url}/login")
    page.fill("#user", user)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#breadcrumb button.current")
    return context, page


def _shown(page, selector: str, text: str) -> str:
    page.wait_for_selector(f"{selector}:has-text('{text}')")
    return page.inner_text(selector)


def _choose(page, dropdown: str, value: str) -> None:
    """Pick ``value`` in a searchable dropdown by typing it. Enter takes the first option
    the search shows; on a loaded machine the search may not have caught up with the
    typing yet, so the choice is checked and made again if another one was taken."""
    for _ in range(3):
        page.click(dropdown)
        page.keyboard.type(value)
        page.wait_for_timeout(400)
        page.keyboard.press("Enter")
        page.wait_for_timeout(200)
        if value in page.inner_text(dropdown):
            return
    raise AssertionError(f"could not choose {value} in {dropdown}: {page.inner_text(dropdown)!r}")


def test_an_admin_creates_a_user_and_resets_a_password(browser, auth_url, auth_store):
    context, page = _signed_in(browser, auth_url, "admin")
    try:
        page.click(f"#{ids.ADMIN_NAV} a[href='/admin/users']")
        page.wait_for_selector(f"#{ids.ADMIN_USERS_TABLE} table")
        page.fill(f"#{ids.ADMIN_USER_ID}", "browser-clerk")
        page.fill(f"#{ids.ADMIN_USER_NAME}", "<b>Clerk</b>")
        _choose(page, f"#{ids.ADMIN_USER_NODE}", "b-440305")
        page.click(f"#{ids.ADMIN_USER_CREATE}")
        said = _shown(page, f"#{ids.ADMIN_USERS_RESULT}", "shown once")
        first = re.search(r"\(shown once\): (\S+)", said).group(1)
        assert login(auth_url, "browser-clerk", first)[1].status_code == 302
        # the name from the form is text in the table, never markup
        assert page.locator(f"#{ids.ADMIN_USERS_TABLE} td:has-text('<b>Clerk</b>')").count() == 1
        assert page.locator(f"#{ids.ADMIN_USERS_TABLE} b").count() == 0

        page.fill(f"#{ids.ADMIN_USER_PICK}", "browser-clerk")
        page.click(f"#{ids.ADMIN_USER_RESET}")
        said = _shown(page, f"#{ids.ADMIN_USERS_RESULT}", "New password of browser-clerk")
        second = re.search(r"\(shown once\): (\S+)", said).group(1)
        assert second != first
        assert login(auth_url, "browser-clerk", first)[1].status_code == 401
        assert login(auth_url, "browser-clerk", second)[1].status_code == 302
        assert users.get_user(auth_store, "browser-clerk")["node_id"] == "b-440305"
    finally:
        context.close()


def test_a_branch_manager_registers_a_device_of_their_branch_only(browser, auth_url, auth_store):
    context, page = _signed_in(browser, auth_url, "nanshan")
    try:
        links = page.eval_on_selector_all(f"#{ids.ADMIN_NAV} a", "as => as.map(a => a.getAttribute('href'))")
        assert links == [
            "/",
            "/admin/devices",
            "/admin/tokens",
            "/admin/imports",
            "/admin/audit",
            "/schedules",
        ]
        assert page.goto(f"{auth_url}/admin/users").status == 403

        page.goto(f"{auth_url}/admin/devices")
        page.wait_for_selector(f"#{ids.ADMIN_DEVICES_TABLE} table")
        page.fill(f"#{ids.ADMIN_DEVICE_ID}", "browser-phone-1")
        page.fill(f"#{ids.ADMIN_DEVICE_OWNER}", "c-000026")  # a courier of b-440305
        page.click(f"#{ids.ADMIN_DEVICE_REGISTER}")
        _shown(page, f"#{ids.ADMIN_DEVICES_RESULT}", "Registered browser-phone-1")
        page.wait_for_selector(f"#{ids.ADMIN_DEVICES_TABLE} td:has-text('browser-phone-1')")

        refusals = auth_store.scalar(
            "SELECT count(*) FROM audit_log WHERE user_id = 'nanshan' AND action = 'refusal'"
        )
        page.fill(f"#{ids.ADMIN_DEVICE_ID}", "browser-phone-2")
        page.fill(f"#{ids.ADMIN_DEVICE_OWNER}", "c-000001")  # a courier of b-440304
        with page.expect_response(lambda r: "/_dash-update-component" in r.url) as answer:
            page.click(f"#{ids.ADMIN_DEVICE_REGISTER}")
        assert answer.value.status == 403
        assert auth_store.scalar("SELECT count(*) FROM devices WHERE device_id = 'browser-phone-2'") == 0
        assert "browser-phone-2" not in page.inner_text(f"#{ids.ADMIN_DEVICES_RESULT}")
        assert (
            auth_store.scalar(
                "SELECT count(*) FROM audit_log WHERE user_id = 'nanshan' AND action = 'refusal'"
            )
            == refusals + 1
        )

        page.click(f"#{ids.ADMIN_NAV} a[href='/admin/audit']")
        page.wait_for_selector(f"#{ids.ADMIN_AUDIT_TABLE} table")
        who = page.eval_on_selector_all(
            f"#{ids.ADMIN_AUDIT_TABLE} tbody tr td:nth-child(2)", "tds => tds.map(t => t.textContent)"
        )
        assert "nanshan" in who
        bound = dict(auth_store.sql("SELECT user_id, node_id FROM users").iter_rows())
        assert {bound.get(w) for w in who} == {"b-440305"}
    finally:
        context.close()


def test_a_viewer_has_no_administration_page(browser, auth_url):
    context, page = _signed_in(browser, auth_url, "sz-viewer")
    try:
        assert page.locator(f"#{ids.ADMIN_NAV}").count() == 0
        for name in ("users", "devices", "tokens", "imports", "audit"):
            assert page.goto(f"{auth_url}/admin/{name}").status == 403
    finally:
        context.close()
