"""A demo store with enough days for baselines, built once per test session.

``tests/conftest.py`` builds two days; the forecast needs earlier days at the same hour.
The fixture lives here (imported by the forecast, dispatch and simulate tests) and keeps
its file under the session's base temporary folder, so however many test modules
import it the demo is generated once (and once per run: xdist's workers each get a copy,
tests/built_once.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from tests.conftest import DEMO_END

#: Days of the forecast demo (the last is scored; the earlier ones are its history).
FORECAST_DAYS = 4


@pytest.fixture(scope="session")
def forecast_demo_path(tmp_path_factory, tree):
    from data.demo import generator as demo
    from data.store.database import Store
    from tests.built_once import built_once

    def build(path):
        with Store(path) as store:
            store.save_tree(tree)
            demo.generate(store, size="small", seed=7, days=FORECAST_DAYS, end_date=DEMO_END)

    base = tmp_path_factory.getbasetemp()
    path = base / "forecast-demo" / "emap.duckdb"
    done = path.with_suffix(".done")
    if not done.exists():
        built_once("forecast-demo", base, path, build)
        done.touch()
    return path


@pytest.fixture(scope="session")
def forecast_store(forecast_demo_path):
    from data.store.database import Store

    store = Store(forecast_demo_path, read_only=True)
    yield store
    store.close()


@pytest.fixture(scope="session")
def forecast_settings(forecast_demo_path):
    from config import Settings

    return Settings.from_env({}, data_dir=forecast_demo_path.parent, db_name=forecast_demo_path.name)


def arrivals(prefix: str, n: int, latest: datetime, dest: str, expected: datetime, lat: float, lng: float):
    """``n`` parcels scanned in at (``lat``, ``lng``) for the branch ``dest`` and expected at
    ``expected``: one ``arrival`` event each, a second apart back from ``latest`` (naive
    UTC), as rows for ``data.ingest.validate.check_events``."""
    return pl.DataFrame(
        {
            "event_id": [f"{prefix}-{i}" for i in range(n)],
            "parcel_id": [f"{prefix}-p{i}" for i in range(n)],
            "kind": ["arrival"] * n,
            "ts": [(latest - timedelta(seconds=i)).replace(tzinfo=UTC) for i in range(n)],
            "lat": [lat] * n,
            "lng": [lng] * n,
            "dest_branch_id": [dest] * n,
            "expected_at": [expected.replace(tzinfo=UTC)] * n,
        }
    ).with_row_index("_row", offset=1)
