"""DuckDB schema of the EMAP store. The README's schema section mirrors this file.

Times are ``TIMESTAMP`` in UTC (naive by convention); cells are res-9 H3 indexes as
``UBIGINT``. Dedupe keys: pings (device_id, ts); parcel events event_id.

Pings, by far the most numerous rows, are stored in ``ping_rows`` with a small integer
(``id_keys``) for each device, courier, vehicle and branch id: text costs DuckDB about
as much to store as all the other columns together. Readers use the ``pings`` view,
which has the ids as text again.
"""

TABLES = {
    "meta": """
        key VARCHAR PRIMARY KEY,  -- e.g. demo_seed, demo_size, created_at
        value VARCHAR""",
    "nodes": """
        node_id VARCHAR PRIMARY KEY,  -- hq, div-south, r-440300, b-440305
        level VARCHAR NOT NULL,       -- hq | division | region | branch
        name VARCHAR NOT NULL,        -- as in the boundary data (Chinese)
        name_en VARCHAR,
        parent_id VARCHAR,
        adcode VARCHAR,
        division_id VARCHAR,
        region_id VARCHAR,
        label_lat DOUBLE, label_lng DOUBLE,  -- a point inside the territory, for labels
        territory BLOB,               -- WKB polygon, full detail (spatial joins)
        outline BLOB                  -- WKB polygon simplified for drawing""",
    "node_branches": """
        ancestor_id VARCHAR NOT NULL,  -- any node
        branch_id VARCHAR NOT NULL     -- every branch in its subtree (itself for a branch)""",
    "cell_branch": """
        cell UBIGINT NOT NULL,  -- res-9 cell already located
        branch_id VARCHAR       -- branch holding the cell centre; NULL: outside the network""",
    "outlets": """
        outlet_id VARCHAR PRIMARY KEY,
        name VARCHAR,
        kind VARCHAR,                 -- outlet | hub
        branch_id VARCHAR,
        lat DOUBLE, lng DOUBLE, cell UBIGINT,
        capacity_couriers INTEGER,    -- couriers based here
        capacity_parcels_per_hour INTEGER""",
    "couriers": """
        courier_id VARCHAR PRIMARY KEY,
        name VARCHAR,
        outlet_id VARCHAR,
        branch_id VARCHAR,
        mode VARCHAR                  -- walk | ebike""",
    "vehicles": """
        vehicle_id VARCHAR PRIMARY KEY,
        plate VARCHAR,
        kind VARCHAR,                 -- van | truck
        outlet_id VARCHAR,            -- home outlet
        branch_id VARCHAR""",
    "devices": """
        device_id VARCHAR PRIMARY KEY,
        courier_id VARCHAR,           -- exactly one of courier_id / vehicle_id
        vehicle_id VARCHAR,
        registered_at TIMESTAMP""",
    "id_keys": """
        key INTEGER NOT NULL,         -- stands for the id in ping_rows
        id VARCHAR NOT NULL           -- a device, courier, vehicle or node id (one key each)""",
    "ping_rows": """
        device_key INTEGER NOT NULL,  -- id_keys.key of the device
        ts TIMESTAMP NOT NULL,
        lat DOUBLE NOT NULL, lng DOUBLE NOT NULL,
        speed REAL,                   -- m/s
        heading REAL,                 -- degrees from north
        accuracy REAL,                -- metres
        courier_key INTEGER,          -- the device's courier or vehicle when the fix came
        vehicle_key INTEGER,
        cell UBIGINT NOT NULL,        -- res 9, computed at ingest
        branch_key INTEGER NOT NULL   -- computed at ingest""",
    "parcel_events": """
        event_id VARCHAR NOT NULL,    -- record id; re-sent events are not stored twice
        parcel_id VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,        -- pickup_request | pickup | arrival | out_for_delivery | delivered
        ts TIMESTAMP NOT NULL,
        lat DOUBLE NOT NULL, lng DOUBLE NOT NULL,
        outlet_id VARCHAR, courier_id VARCHAR,
        promised_at TIMESTAMP,        -- delivery promise; on time = delivered at or before it
        dest_branch_id VARCHAR,       -- where a parcel in transit is going
        expected_at TIMESTAMP,        -- when it is expected there
        cell UBIGINT NOT NULL,
        branch_id VARCHAR NOT NULL""",
    "quarantine": """
        received_at TIMESTAMP NOT NULL,
        source VARCHAR NOT NULL,      -- file path or API endpoint
        row_number BIGINT,            -- 1-based data row in the source
        record_kind VARCHAR,          -- pings | parcel_events | outlets | couriers
        reason VARCHAR NOT NULL,
        raw VARCHAR                   -- the record as received (JSON)""",
    "cube_hourly": """
        hour TIMESTAMP NOT NULL,      -- UTC hour start
        cell UBIGINT NOT NULL,        -- res 9
        branch_id VARCHAR NOT NULL,
        pings BIGINT NOT NULL,        -- all pings (couriers and vehicles)
        couriers INTEGER NOT NULL,    -- distinct couriers seen in the cell-hour
        vehicles INTEGER NOT NULL,    -- distinct vehicles seen
        pickups INTEGER NOT NULL,
        deliveries INTEGER NOT NULL,
        on_time INTEGER NOT NULL,     -- deliveries at or before promised_at
        late INTEGER NOT NULL,        -- deliveries after promised_at
        scans BIGINT NOT NULL         -- all parcel events""",
    "cube_presence": """
        hour TIMESTAMP NOT NULL,
        cell UBIGINT NOT NULL,
        branch_id VARCHAR NOT NULL,
        actor_id VARCHAR NOT NULL,    -- courier or vehicle id
        actor_kind VARCHAR NOT NULL   -- courier | vehicle
        -- one row per distinct actor in a cell-hour: distinct counts at any roll-up
        -- are recounted from here, never summed""",
    "imports": """
        import_id VARCHAR PRIMARY KEY,  -- short random id (the page's links name it)
        started_at TIMESTAMP NOT NULL,  -- UTC
        user_id VARCHAR NOT NULL,       -- who: a user, a token's name, cli:<os user>
        channel VARCHAR NOT NULL,       -- page | api | cli
        file_name VARCHAR NOT NULL,     -- as sent (shown as text, never a path used)
        kind VARCHAR,                   -- pings | parcel_events | outlets | couriers
        scope_node VARCHAR,             -- rows outside it were refused; NULL: any node
        rows BIGINT NOT NULL,
        accepted BIGINT NOT NULL,
        rejected BIGINT NOT NULL,
        duplicates BIGINT NOT NULL,
        bytes BIGINT,
        seconds DOUBLE,
        quarantine_source VARCHAR NOT NULL  -- quarantine.source of its rejected rows""",
    "demo_surges": """
        branch_id VARCHAR, start_hour TIMESTAMP, end_hour TIMESTAMP,
        factor DOUBLE, cause VARCHAR  -- the surges the demo injected (the truth for alerts)""",
}

#: Views over the tables, created after them.
VIEWS = {
    # One row per ping, ids as text (id_keys holds one key per id, so the joins add no row).
    "pings": """
        SELECT d.id AS device_id, p.ts, p.lat, p.lng, p.speed, p.heading, p.accuracy,
               c.id AS courier_id, v.id AS vehicle_id, p.cell, b.id AS branch_id
        FROM ping_rows p
        JOIN id_keys d ON d.key = p.device_key
        JOIN id_keys b ON b.key = p.branch_key
        LEFT JOIN id_keys c ON c.key = p.courier_key
        LEFT JOIN id_keys v ON v.key = p.vehicle_key""",
}

CUBE_COUNTS = ["pings", "pickups", "deliveries", "on_time", "late", "scans"]
CUBE_DISTINCT = {"couriers": "courier", "vehicles": "vehicle"}
EVENT_KINDS = ("pickup_request", "pickup", "arrival", "out_for_delivery", "delivered")


def table_ddl() -> list[str]:
    """CREATE statements for every table."""
    return [f"CREATE TABLE IF NOT EXISTS {name} ({cols}\n)" for name, cols in TABLES.items()]


def view_ddl() -> list[str]:
    """CREATE statements for every view (after the tables)."""
    return [f"CREATE VIEW IF NOT EXISTS {name} AS {query}" for name, query in VIEWS.items()]


def ddl() -> list[str]:
    """CREATE statements for every table, then every view."""
    return table_ddl() + view_ddl()
