"""One way to open SQLite on the SD card: WAL, synchronous=FULL, autocommit.

FULL makes every commit reach the card before it returns, which is what the store, the
journal and the offline queue all promise ("durable before the screen says so").
"""
import os
import sqlite3


def open_durable(path):
    """A connection to path (its folder created), WAL + FULL, each statement its own
    transaction unless the caller says BEGIN. Raises sqlite3.Error or OSError."""
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db
