"""The administration rules (views/admin.py): each right of the table in docs/admin.md,
allowed and refused, on a writable copy of the small demo."""

from __future__ import annotations

import shutil
import time

import pytest

from auth import users
from auth.viewer import OutsideScope, Viewer
from data.ingest import tokens as tok
from data.ingest.group_commit import GroupCommitter
from data.store.database import Store
from views import admin

OWN_COURIER, OTHER_COURIER = "c-000026", "c-000001"  # of b-440305 and of b-440304
OWN_PLACE, OTHER_PLACE = (22.596615, 113.926888), (22.546487, 114.063211)


@pytest.fixture(scope="module")
def store(small_demo_path, tmp_path_factory):
    path = tmp_path_factory.mktemp("admin") / "emap.duckdb"
    shutil.copy(small_demo_path, path)
    s = Store(path)
    users.ensure_tables(s)
    users.create_user(s, "nanshan", "a long password", "manager", "b-440305", by="test")
    users.create_user(s, "futian", "a long password", "manager", "b-440304", by="test")
    yield s
    s.close()


@pytest.fixture(scope="module")
def parents(store):
    n = store.nodes()
    return dict(zip(n["node_id"].to_list(), n["parent_id"].to_list(), strict=True))


def _viewer(parents, uid, role, node):
    return Viewer.for_user({"user_id": uid, "role": role, "node_id": node}, parents)


@pytest.fixture(scope="module")
def boss(parents):
    return _viewer(parents, "boss", "admin", "hq")


@pytest.fixture(scope="module")
def nanshan(parents):
    return _viewer(parents, "nanshan", "manager", "b-440305")


@pytest.fixture(scope="module")
def reader(parents):
    return _viewer(parents, "reader", "viewer", "r-440300")


def _lines(store, who, action):
    return store.scalar("SELECT count(*) FROM audit_log WHERE user_id = ? AND action = ?", [who, action])


def test_pages_by_role(boss, nanshan, reader):
    assert admin.pages_for(boss) == admin.PAGES
    assert admin.pages_for(nanshan) == ("devices", "tokens", "imports", "audit")
    assert admin.pages_for(reader) == ()
    for page in admin.PAGES:
        with pytest.raises(OutsideScope):
            admin.require_page(reader, page)


def test_users_are_the_admins_alone(store, boss, nanshan, reader):
    password = admin.create_user(store, boss, "new-clerk", "New clerk", "viewer", "b-440305")
    assert users.authenticate(store, "new-clerk", password) is not None
    admin.update_user(store, boss, "new-clerk", role="manager", node_id="r-440300", can_see_couriers=True)
    row = users.get_user(store, "new-clerk")
    assert (row["role"], row["node_id"], row["can_see_couriers"]) == ("manager", "r-440300", True)
    again = admin.reset_password(store, boss, "new-clerk")
    assert again != password and users.authenticate(store, "new-clerk", again) is not None
    admin.update_user(store, boss, "new-clerk", disabled=True)
    assert users.authenticate(store, "new-clerk", again) is None
    assert _lines(store, "boss", "user_change") >= 4
    with pytest.raises(admin.AdminError):
        admin.create_user(store, boss, "new-clerk", "", "viewer", "hq")  # taken
    with pytest.raises(admin.AdminError):
        admin.update_user(store, boss, "boss-missing", role="superuser")
    for who in (nanshan, reader):
        with pytest.raises(OutsideScope):
            admin.create_user(store, who, "sneaky", "", "admin", "hq")
        with pytest.raises(OutsideScope):
            admin.reset_password(store, who, "nanshan")
        with pytest.raises(OutsideScope):
            admin.list_users(store, who)


def test_a_manager_registers_devices_of_their_branch_only(store, boss, nanshan, reader):
    admin.register_device(store, nanshan, "rule-phone-1", OWN_COURIER)
    assert "rule-phone-1" in admin.list_devices(store, nanshan)["device_id"].to_list()
    assert _lines(store, "nanshan", "device_change") == 1
    with pytest.raises(OutsideScope):
        admin.register_device(store, nanshan, "rule-phone-2", OTHER_COURIER)
    with pytest.raises(OutsideScope):
        admin.register_device(store, nanshan, "rule-phone-3", None, "v-0001")  # a vehicle of b-440304
    with pytest.raises(OutsideScope):
        admin.register_device(store, reader, "rule-phone-4", OWN_COURIER)
    admin.register_device(store, boss, "rule-phone-5", OTHER_COURIER)
    with pytest.raises(OutsideScope):  # a device of another branch cannot be taken over
        admin.attach_device(store, nanshan, "rule-phone-5", OWN_COURIER)
    with pytest.raises(OutsideScope):  # nor one of theirs sent elsewhere
        admin.attach_device(store, nanshan, "rule-phone-1", OTHER_COURIER)
    admin.attach_device(store, boss, "rule-phone-5", OWN_COURIER)
    assert set(admin.list_devices(store, nanshan)["branch_id"].to_list()) == {"b-440305"}
    with pytest.raises(admin.AdminError):
        admin.register_device(store, nanshan, "rule-phone-1", OWN_COURIER)  # registered already


def test_bulk_refuses_a_managers_lines_outside_their_subtree(store, nanshan):
    data = (
        "device_id,courier_id\n"
        f"bulk-1,{OWN_COURIER}\n"
        f"bulk-2,{OTHER_COURIER}\n"
        "bulk-3,no-such-courier\n"
        f"bulk-4,{OWN_COURIER}\n"
    ).encode()
    result = admin.bulk_devices(store, nanshan, data)
    assert result.registered == 2
    assert [n for n, _ in result.refused] == [3, 4]
    assert "outside" in result.refused[0][1] and "no courier" in result.refused[1][1]


def _quarantine_fixes(store, device, place, n):
    gc = GroupCommitter(store, "Asia/Shanghai").start()
    try:
        now = int(time.time())
        fixes = [
            {"id": device, "lat": place[0], "lon": place[1], "timestamp": now - 60 * i} for i in range(n)
        ]
        outcome = gc.submit("pings", fixes, "phone-test").result(timeout=30)
    finally:
        gc.close()
    assert outcome.accepted == 0


def test_unknown_devices_are_listed_by_territory_and_registered_with_their_fixes(store, boss, nanshan):
    _quarantine_fixes(store, "stray-own", OWN_PLACE, 3)
    _quarantine_fixes(store, "stray-other", OTHER_PLACE, 2)
    seen = admin.unknown_devices(store, boss)
    assert {"stray-own": 3, "stray-other": 2}.items() <= dict(
        seen.select("device_id", "fixes").iter_rows()
    ).items()
    mine = admin.unknown_devices(store, nanshan)
    assert mine["device_id"].to_list() == ["stray-own"]
    assert mine["branch_id"].to_list() == ["b-440305"]
    with pytest.raises(OutsideScope):
        admin.register_unknown(store, nanshan, "stray-other", OWN_COURIER, local_tz="Asia/Shanghai")
    before = store.scalar("SELECT count(*) FROM ping_rows")
    done = admin.register_unknown(store, nanshan, "stray-own", OWN_COURIER, local_tz="Asia/Shanghai")
    assert (done.stored, done.still_refused) == (3, 0)
    assert store.scalar("SELECT count(*) FROM ping_rows") == before + 3
    assert "stray-own" not in admin.unknown_devices(store, boss)["device_id"].to_list()
    assert store.scalar("SELECT count(*) FROM quarantine WHERE contains(raw, 'stray-own')") == 0


def test_tokens_of_a_manager(store, boss, nanshan, reader):
    device_token = admin.create_token(store, nanshan, "device", "rule-phone-1")
    assert tok.TokenCache(store).lookup(device_token).device_id == "rule-phone-1"
    admin.create_token(store, nanshan, "system", "nanshan-wms", "b-440305")
    with pytest.raises(OutsideScope):
        admin.create_token(store, nanshan, "system", "city-wms", "r-440300")  # above their branch
    with pytest.raises(admin.AdminError):
        admin.create_token(store, nanshan, "system", "anywhere-wms")  # unbound
    admin.register_device(store, boss, "rule-phone-9", OTHER_COURIER)
    with pytest.raises(OutsideScope):
        admin.create_token(store, nanshan, "device", "rule-phone-9")
    with pytest.raises(OutsideScope):
        admin.create_token(store, reader, "device", "rule-phone-1")
    boss_token = admin.create_token(store, boss, "system", "hq-wms", "b-440305")
    listed = admin.list_tokens(store, nanshan)
    assert set(listed["subject"].to_list()) == {"rule-phone-1", "nanshan-wms", "hq-wms"}
    mine = dict(listed.select("subject", "mine").iter_rows())
    assert mine == {"rule-phone-1": True, "nanshan-wms": True, "hq-wms": False}
    hq_id = tok.hash_token(boss_token)[:12]
    with pytest.raises(OutsideScope):  # made by someone else
        admin.revoke_token(store, nanshan, hq_id)
    cache = tok.TokenCache(store)
    assert cache.lookup(device_token) is not None
    admin.revoke_token(store, nanshan, tok.hash_token(device_token)[:12])
    assert cache.lookup(device_token) is None  # at once, not after the cache's seconds
    admin.revoke_token(store, boss, hq_id)
    assert _lines(store, "nanshan", "token_change") == 3


def test_audit_lines_of_a_manager_are_their_subtrees(store, boss, nanshan, reader):
    users.audit(store, "futian", "export", "a line of another branch")
    users.audit(store, "nanshan", "export", '=HYPERLINK("http://x")')
    mine = admin.audit_lines(store, nanshan)
    assert set(mine["user_id"].to_list()) == {"nanshan"}
    every = admin.audit_lines(store, boss, action="export")
    assert {"nanshan", "futian"} <= set(every["user_id"].to_list())
    assert admin.audit_lines(store, boss, text="ANOTHER BRANCH")["user_id"].to_list() == ["futian"]
    text = admin.audit_csv(store, nanshan, action="export")
    assert "'=HYPERLINK" in text and "another branch" not in text
    assert _lines(store, "nanshan", "export") == 2  # the line above, and the download
    with pytest.raises(OutsideScope):
        admin.audit_lines(store, reader)
