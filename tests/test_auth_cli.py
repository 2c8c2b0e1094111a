"""``python app.py users`` and the demo accounts, on a copy of the small demo."""

from __future__ import annotations

import shutil
import stat

import pytest

import app
from auth import users
from data.demo.accounts import ACCOUNTS, create_accounts
from data.store.database import Store


@pytest.fixture
def data_dir(small_demo_path, tmp_path, monkeypatch):
    shutil.copy(small_demo_path, tmp_path / "emap.duckdb")
    monkeypatch.setenv("EMAP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("EMAP_NEW_PASSWORD", "first password 1")
    return tmp_path


def test_users_create_list_set_role_reset_disable(data_dir, monkeypatch, capsys):
    assert app.main(["users", "create", "alice", "--role", "viewer", "--node", "r-440300"]) == 0
    assert app.main(["users", "create", "alice", "--role", "viewer", "--node", "r-440300"]) == 2  # exists
    assert app.main(["users", "create", "bob", "--role", "manager", "--node", "nowhere"]) == 2
    assert (
        app.main(["users", "set-role", "alice", "--role", "manager", "--node", "b-440305", "--couriers"]) == 0
    )
    monkeypatch.setenv("EMAP_NEW_PASSWORD", "second password 2")
    assert app.main(["users", "reset-password", "alice"]) == 0
    assert app.main(["users", "disable", "alice"]) == 0
    capsys.readouterr()
    assert app.main(["users", "list"]) == 0
    listed = capsys.readouterr().out
    assert "alice" in listed and "password" not in listed and "scrypt" not in listed
    with Store(data_dir / "emap.duckdb") as store:
        u = users.get_user(store, "alice")
        assert (u["role"], u["node_id"], u["can_see_couriers"], u["disabled"]) == (
            "manager",
            "b-440305",
            True,
            True,
        )
        assert u["password_hash"].startswith("scrypt:") and "second" not in u["password_hash"]
        assert users.authenticate(store, "alice", "second password 2") is None  # disabled
        users.update_user(store, "alice", disabled=False)
        assert users.authenticate(store, "alice", "second password 2") is not None
        assert users.authenticate(store, "alice", "first password 1") is None
        changes = users.audit_log(store, "user_change")["detail"].to_list()
        assert any("password reset" in c for c in changes) and any("disabled=True" in c for c in changes)


def test_demo_accounts_one_per_level_with_a_private_password_file(data_dir, monkeypatch, capsys):
    monkeypatch.delenv("EMAP_DEMO_PASSWORD", raising=False)
    with Store(data_dir / "emap.duckdb") as store:
        path = create_accounts(store, data_dir)
        assert create_accounts(store, data_dir) is None  # only once
        listed = users.list_users(store)
        assert {(r["user_id"], r["role"], r["node_id"]) for r in listed.iter_rows(named=True)} == {
            (a[0], a[1], a[2]) for a in ACCOUNTS
        }
        levels = dict(store.sql("SELECT node_id, level FROM nodes").iter_rows())
        assert {levels[a[2]] for a in ACCOUNTS} == {"hq", "division", "region", "branch"}
        assert stat.S_IMODE((data_dir / "demo-accounts.txt").stat().st_mode) == 0o600
        password = open(path).read().split("password: ")[1].split()[0]
        assert password in capsys.readouterr().out
        assert users.authenticate(store, "nanshan", password)["node_id"] == "b-440305"
