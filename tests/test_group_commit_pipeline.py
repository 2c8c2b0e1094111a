# ruff: noqa: F811  (the shared ingest fixtures are imported by name and used as arguments)
"""The writer's two stages: the next group is prepared while the one before is stored;
the health probe passes both stages; closing stops both. (A group that cannot be
prepared or stored costs no other request its answer: tests/security/test_ingest_isolation.py.)"""

from __future__ import annotations

import threading
import time

from data.ingest.group_commit import GroupCommitter
from data.store.database import Store
from tests.ingest_support import copy_store, template  # noqa: F401
from tests.security.ingest_support import ping


class _SlowStore(Store):
    """A real store whose first commit of pings waits until the test lets it go, noting
    which devices were prepared meanwhile."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.committing = threading.Event()
        self.go_on = threading.Event()
        self.prepared_during_commit: list[str] = []
        self._commits = 0

    def prepare_pings(self, good):
        if self.committing.is_set() and not self.go_on.is_set():
            self.prepared_during_commit += good["device_id"].unique().to_list()
        return super().prepare_pings(good)

    def commit_batch(self, batch):
        self._commits += 1
        if self._commits == 1:
            self.committing.set()
            assert self.go_on.wait(30)
        return super().commit_batch(batch)


def test_the_next_group_is_prepared_while_the_one_before_is_stored(template, tmp_path):
    path, _ = template
    with _SlowStore(copy_store(path, tmp_path / "emap.duckdb")) as store:
        gc = GroupCommitter(store, "Asia/Shanghai", linger=0.0).start()
        try:
            first = gc.submit("pings", [ping("dev-010", i) for i in range(5)], "a")
            assert store.committing.wait(30)  # the first group is in the store's hands
            second = gc.submit("pings", [ping("dev-011", i) for i in range(5)], "b")
            # the second group is prepared while the first commit still waits
            for _ in range(300):
                if store.prepared_during_commit:
                    break
                time.sleep(0.1)
            assert store.prepared_during_commit == ["dev-011"]
            assert not first.done() and not second.done()  # nothing answered before stored
            store.go_on.set()
            assert first.result(30).accepted == 5 and second.result(30).accepted == 5
        finally:
            store.go_on.set()
            gc.close()
        assert store.scalar("SELECT count(*) FROM pings") == 10


def test_the_probe_passes_both_stages_and_closing_stops_them(template, tmp_path):
    path, _ = template
    with Store(copy_store(path, tmp_path / "emap.duckdb")) as store:
        gc = GroupCommitter(store, "Asia/Shanghai").start()
        threads = list(gc._threads)
        assert sorted(t.name for t in threads) == ["emap-group-commit", "emap-ingest-prepare"]
        pending = gc.submit("pings", [ping("dev-010", i) for i in range(3)], "a")
        assert gc.probe()["round_trip_ms"] >= 0
        assert pending.done() and pending.result().accepted == 3  # the probe came after it
        gc.close()
        assert not gc.alive() and not any(t.is_alive() for t in threads)
