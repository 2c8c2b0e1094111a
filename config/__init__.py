"""EMAP settings: one place for every default, each overridable from the environment.

Every setting is documented here and in the README table. Read them with
``Settings.from_env()``; nothing is read at import time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _default_resolutions() -> dict[str, int]:
    # Hex resolution drawn at each level, chosen so that no view ships more than
    # about 10,000 hexes (res 5 ~ 250 km², res 7 ~ 5 km², res 9 ~ 0.1 km²).
    return {"hq": 5, "division": 6, "region": 7, "branch": 9}


@dataclass(frozen=True)
class Settings:
    """Documented defaults; ``EMAP_<NAME>`` in the environment overrides each one."""

    #: Folder for the DuckDB file and generated files.
    data_dir: Path = PROJECT_ROOT / "var"
    #: Name of the DuckDB file inside ``data_dir``.
    db_name: str = "emap.duckdb"
    #: Address and port the dashboard listens on.
    host: str = "127.0.0.1"
    port: int = 8050
    #: Time zone of the network's local clock (hours on the dashboard, naive inputs).
    local_tz: str = "Asia/Shanghai"
    #: DuckDB buffer pool limit (the store spills to disk beyond it).
    duckdb_memory_limit: str = "1GB"
    #: Rows per batch when importing files (memory stays flat with file size).
    import_batch_rows: int = 1_000_000
    #: Parcels one courier can handle in one hour; capacity present = couriers x this.
    parcels_per_courier_hour: float = 12.0
    #: A cell is over load when workload / capacity present exceeds this.
    load_ratio_threshold: float = 1.5
    #: ... or when its volume exceeds its baseline for the hour by this factor.
    baseline_factor: float = 2.0
    #: Resolution at which peak-load zones are detected (res 8 cells ~0.74 km²).
    alert_resolution: int = 8
    #: A cell needs at least this many parcels in the hour to count toward a zone
    #: (keeps one-parcel cells with a thin baseline from raising alerts).
    alert_min_workload: float = 20.0
    # -- dispatch suggestions (ops/dispatch.py) ----------------------------------------------
    #: Longest trip to a peak-load zone, minutes: a courier or van sent further would spend
    #: too much of the hour it relieves on the road. Radius of a mode = speed x this.
    dispatch_max_minutes: float = 15.0
    #: Street speeds (km/h) of walking couriers, e-bike couriers and vans in town:
    #: with 15 minutes, radii of 1.1, 3.75 and 6 street km.
    dispatch_walk_kmh: float = 4.5
    dispatch_ebike_kmh: float = 15.0
    dispatch_van_kmh: float = 24.0
    #: Parcels a van and its driver handle in an hour when sent to a zone (bulk drops at
    #: lockers, shops and compounds; relaying loads to the zone's couriers).
    dispatch_vehicle_parcels_per_hour: float = 36.0
    #: A courier whose newest fix is older than this many minutes is "offline".
    offline_after_minutes: int = 15
    #: Hex resolution per level of the organisation tree.
    resolutions: dict[str, int] = field(default_factory=_default_resolutions)
    #: Seed of the demo generator.
    demo_seed: int = 7
    #: Size of the demo generated on first run: small, default or large.
    demo_size: str = "default"
    #: Days of demo generated on first run (earlier days are the forecast's baseline).
    demo_days: int = 3
    #: Play a live demo day while serving a demo store (``data/demo/live.py``; never on a
    #: store holding real data). ``serve --no-live-demo`` also turns it off.
    live_demo: bool = True
    #: Data seconds of the live demo day per wall-clock second. 1: its records are
    #: stamped with the time they are sent, so "live" means now and the day rolls on.
    live_speedup: float = 1.0
    #: Web worker processes answering the dashboard's callbacks (``cli/web_pool.py``). 0:
    #: the serving process answers them itself. With workers, figures are built beside
    #: the ingest API and the writer instead of on their interpreter (ingest under
    #: dashboard load: 2.5 times the pings, docs/operations.md "Web workers").
    web_processes: int = 1
    #: How much lower than the serving process the workers are scheduled (``nice``): when
    #: the machine's cores are all busy, ingest goes first and the dashboard waits.
    web_nice: int = 10
    #: How an open live page learns that its data changed: ``push`` (a server-sent event
    #: stream, ``GET /live/events``) or ``poll`` (a request every 2 s). See
    #: docs/operations.md, "The live view and ingest under load", for the figures.
    live_channel: str = "push"
    #: Megabytes of panel answers kept for every viewer of the same scope until the data
    #: they were built from changes (``views/answers.py``), in each process answering
    #: callbacks. 0: every request is built anew.
    answer_cache_mb: int = 64
    # -- live ingest (data/ingest/http_api.py) ---------------------------------------------------
    #: Largest request body the ingest API reads; larger ones get 413.
    ingest_max_body_bytes: int = 16 * 1024 * 1024
    #: Largest file ``POST /api/v1/import`` takes (spooled to disk under ``data_dir``, not
    #: held in memory); larger ones get 413.
    import_max_bytes: int = 4 * 1024**3
    #: Milliseconds the ingest writer waits for concurrent requests to join one commit.
    ingest_linger_ms: float = 2.0
    #: Register a device the first time it reports (as a courier of the same id) instead
    #: of rejecting its positions as "unknown device".
    auto_register_devices: bool = False
    #: Unit of ``speed`` in the OsmAnd query form: kn (Traccar Client), mps, kmh or mph.
    osmand_speed_unit: str = "kn"
    #: Require a token (``?token=`` in the URL typed into the phone) on the OsmAnd endpoint.
    #: Off by default: stock phone apps cannot send headers, and only registered devices
    #: are accepted anyway.
    osmand_require_token: bool = False
    #: Port of the phone listener: the OsmAnd protocol on a port of its own (as Traccar's
    #: 5055), served by an event loop that answers thousands of phones a second; on the same
    #: address as the dashboard. 0: off (phones can still use ``/osmand`` on the main port).
    osmand_port: int = 5055
    #: Serve the phone listener from a process of its own (``serve``): its HTTP work then
    #: does not take the serving process's interpreter lock from the writer and the
    #: dashboard (``docs/operations.md``, "Phones in a process of their own"). Off: a
    #: thread of the serving process.
    phone_process: bool = True
    #: Plausible times of pings and scans: none before this UTC date, none more than
    #: ``ingest_max_ahead_hours`` after the server's clock. Others are quarantined with the
    #: reason "implausible time" (a year-9999 fix would break every date list downstream).
    ingest_earliest_ts: str = "2000-01-01"
    ingest_max_ahead_hours: float = 24.0
    #: Largest plausible speed (m/s; 300 m/s = 1,080 km/h) and GPS accuracy radius (m).
    ingest_max_speed_mps: float = 300.0
    ingest_max_accuracy_m: float = 100_000.0
    #: Quarantine caps: rows kept per source (a file, an API client, the phone endpoint)
    #: and in total (the oldest go first), days a row is kept, and bytes of each raw copy.
    #: A phone's refused fix is answered 200 and quarantined, so these bound the disk.
    quarantine_max_rows_per_source: int = 100_000
    quarantine_max_rows: int = 1_000_000
    quarantine_retention_days: int = 30
    quarantine_max_raw_bytes: int = 4096

    # -- logs (cli/logs.py; docs/operations.md) ---------------------------------------------
    #: Level of the log on stderr: debug, info, warning, error or critical; a logger may get
    #: its own after a comma, e.g. "info,emap.access=debug" (every phone fix's request line).
    log_level: str = "INFO"
    #: Format of the log: text (one line a record) or json (one JSON object a line).
    log_format: str = "text"
    #: One log record per HTTP request answered by ``serve`` and ``ingest`` (logger
    #: ``emap.access``; phone fixes at debug). Query values of tokens and passwords are
    #: never logged, nor request headers.
    access_log: bool = True

    # -- metrics (observe/; docs/operations.md "Metrics") -------------------------------------
    #: Bearer token a Prometheus scraper sends to read ``GET /metrics``
    #: (``Authorization: Bearer <token>``). A secret: set it in the environment only.
    #: Empty (the default): ``/metrics`` answers 404, so it is never public.
    metrics_token: str = ""

    # -- report renders (reports/chromium.py) ------------------------------------------------
    #: Chromium binary that renders PNG and PDF reports.
    chromium: str = "/usr/bin/chromium"
    #: Seconds a PNG or PDF render may take (the PDF's map image included); the browser is
    #: then killed and the export fails with a message instead of hanging.
    render_timeout_seconds: float = 30.0
    #: Account Chromium runs as when EMAP runs as root (its sandbox does not start as root).
    render_user: str = "nobody"
    #: Render without Chromium's sandbox (hosts without user namespaces); logged as a warning
    #: on every render. The renderer stays offline and time-limited either way.
    render_no_sandbox: bool = False

    # -- scheduled reports (reports/scheduler.py; docs/reports.md) --------------------------
    #: Seconds between two looks of the server's report scheduler for schedules that are
    #: due; 0: the scheduler is off.
    schedule_check_seconds: float = 30.0
    #: Seconds before a schedule whose report failed (a render error, an empty period) is
    #: tried again.
    schedule_retry_seconds: float = 300.0

    # -- lake (lake/) ------------------------------------------------------------------------
    #: Serve the dashboard from a lake's partitions (written by the Spark job or by
    #: ``python app.py lake export``) instead of the embedded store; empty: off.
    lake_dir: str = ""

    # -- access (auth/) ---------------------------------------------------------------------
    #: Hours a sign-in lasts.
    session_hours: int = 12
    #: Send the session cookie over HTTPS only (turn on behind TLS).
    cookie_secure: bool = False
    #: Failed sign-ins per address and user name within the window before 429.
    login_max_failures: int = 5
    login_window_seconds: float = 300.0
    #: Reverse proxies in front of the server (comma-separated addresses or CIDR
    #: networks, e.g. "127.0.0.1,10.0.0.0/8"). Only a request whose socket peer is one of
    #: them has its client taken from ``X-Forwarded-For`` (the nearest address that is
    #: not a trusted proxy); anyone else could write any address there. Empty: none.
    trusted_proxies: str = ""

    @property
    def db_path(self) -> Path:
        return Path(self.data_dir) / self.db_name

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> Settings:
        """Build settings from defaults, then ``EMAP_*`` variables, then keyword overrides.

        Examples
        --------
        >>> Settings.from_env({"EMAP_PORT": "9000"}).port
        9000
        """
        env = os.environ if environ is None else environ
        values: dict = {}
        for f in fields(cls):
            raw = env.get(f"EMAP_{f.name.upper()}")
            if raw is None:
                continue
            if f.name == "resolutions":
                # "hq=4,division=6,region=7,branch=8"
                values[f.name] = {k.strip(): int(v) for k, v in (p.split("=") for p in raw.split(",") if p)}
            elif f.name == "data_dir":
                values[f.name] = Path(raw)
            elif isinstance(getattr(cls, f.name, None), bool):
                values[f.name] = raw.strip().lower() in ("1", "true", "yes", "on")
            else:
                kind = type(getattr(cls, f.name, "")) if f.name != "resolutions" else dict
                try:
                    values[f.name] = kind(raw)
                except ValueError as exc:
                    raise ValueError(f"EMAP_{f.name.upper()}={raw!r}: {exc}") from None
        values.update(overrides)
        return cls(**values)
