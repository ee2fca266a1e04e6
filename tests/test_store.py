"""SQLite store: durable, WAL, FULL sync; the same contract as the in-memory store."""
import sqlite3

import pytest

from drivers.store_sqlite import SQLiteStore, StoreError
from firmware.core.store import MemoryStore


def _op(op_id="1", role="supervisor"):
    return {"id": op_id, "name": "S" + op_id, "role": role, "salt": b"s" * 16,
            "pin_hash": b"h" * 32, "iterations": 10, "active": True}


@pytest.fixture(params=["sqlite", "memory"])
def store(request, tmp_path):
    s = SQLiteStore(str(tmp_path / "h.db")) if request.param == "sqlite" else MemoryStore()
    yield s
    s.close()


def test_contract_operators_settings_audit(store):
    assert store.operator_count() == 0
    store.add_operator(_op("2"))
    store.add_operator(_op("10", "cashier"))
    with pytest.raises(KeyError):
        store.add_operator(_op("2"))
    assert store.operator_count() == 2
    assert store.get_operator("2")["salt"] == b"s" * 16
    assert store.get_operator("3") is None
    assert [o["id"] for o in store.list_operators()] == ["2", "10"]
    assert store.get_setting("ui.language") is None
    store.set_setting("ui.language", "zh")
    store.set_setting("ui.language", "en")
    assert store.get_setting("ui.language") == "en"
    store.audit("login", "2", "supervisor")
    store.audit("logout", "2", "idle")
    log = store.audit_log()
    assert [row[1] for row in log] == ["logout", "login"]


def test_sqlite_is_wal_full_sync_and_survives_reopen(tmp_path):
    path = str(tmp_path / "h.db")
    s = SQLiteStore(path)
    s.add_operator(_op("5"))
    assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s.db.execute("PRAGMA synchronous").fetchone()[0] == 2      # FULL
    s.close()
    s2 = SQLiteStore(path)
    assert s2.get_operator("5")["name"] == "S5"
    assert s2.selftest() == (True, "ok")
    s2.close()


def test_unopenable_store_says_what_to_check(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError) as err:
        SQLiteStore(str(blocker / "sub" / "h.db"))
    assert "check the SD card" in str(err.value)


def test_store_from_a_newer_release_is_refused(tmp_path):
    path = str(tmp_path / "h.db")
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(StoreError) as err:
        SQLiteStore(path)
    assert "newer handpos" in str(err.value)
