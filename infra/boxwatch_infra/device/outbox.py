"""The durable outbox: an alarm is on disk before it is sent and leaves only on PUBACK.

A box that loses its link or restarts sends every alarm still in the outbox, oldest first, once
it is connected again; the backend stores (box, seq) once, so a resend after a lost PUBACK is
harmless. One SQLite file can hold the outboxes of many boxes (a fleet on one machine).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any


class OutboxStore:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a process crash
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, box TEXT NOT NULL,"
            " topic TEXT NOT NULL, payload TEXT NOT NULL)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS outbox_box ON outbox (box, id)")
        self.lock = threading.Lock()

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.lock:
            return self._db.execute(sql, args).fetchall()

    def close(self) -> None:
        with self.lock:
            self._db.close()


class Outbox:
    def __init__(self, store: OutboxStore, box_id: str):
        self.store = store
        self.box_id = box_id

    def put(self, topic: str, payload: dict[str, Any]) -> int:
        rows = self.store.execute("INSERT INTO outbox (box, topic, payload) VALUES (?, ?, ?) RETURNING id",
                                  (self.box_id, topic, json.dumps(payload)))
        return int(rows[0][0])

    def pending(self, limit: int = 100) -> list[tuple[int, str, bytes]]:
        rows = self.store.execute("SELECT id, topic, payload FROM outbox WHERE box = ? ORDER BY id LIMIT ?",
                                  (self.box_id, limit))
        return [(int(i), str(t), str(p).encode()) for i, t, p in rows]

    def ack(self, entry_id: int) -> None:
        self.store.execute("DELETE FROM outbox WHERE id = ?", (entry_id,))

    def __len__(self) -> int:
        return int(self.store.execute("SELECT COUNT(*) FROM outbox WHERE box = ?", (self.box_id,))[0][0])
