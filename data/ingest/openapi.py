"""The OpenAPI 3.1 description of the ingest API (served at ``/api/v1/openapi.json``)."""

from __future__ import annotations

API_VERSION = "1.0.0"


# -- OpenAPI ------------------------------------------------------------------------------
def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _content(schema: dict, mime: str = "application/json") -> dict:
    return {"content": {mime: {"schema": schema}}}


_KINDS = ("pings", "parcel_events", "outlets", "couriers")


def _import_op(err) -> dict:
    """``POST /api/v1/import``: a file as the body."""
    return {
        "summary": "Import a CSV or Parquet file (pings, parcel events, outlets or couriers)",
        "description": "The body is the file itself, streamed to disk on the server (at most "
        "EMAP_IMPORT_MAX_BYTES) and imported batch by batch, one import at a time. Bad rows "
        "(CSV lines that cannot be parsed included) are quarantined and the others stored; "
        "records already stored are not stored again. A token bound to a node imports only "
        "records inside the node and overwrites no outlet, courier or device outside it.",
        "security": [{"bearer": []}],
        "parameters": [
            {
                "name": "kind",
                "in": "query",
                "required": False,
                "schema": {"enum": list(_KINDS)},
                "description": "What the file holds; default: told from its name or columns.",
            },
            {
                "name": "name",
                "in": "query",
                "required": False,
                "schema": {"type": "string"},
                "description": "The file's name (its type .csv/.tsv/.parquet, and words such as "
                "'pings'); also names it in the quarantine.",
            },
        ],
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        },
        "responses": {
            "200": {"description": "Imported.", **_content(_ref("ImportResult"))},
            "400": err("The file cannot be read at all, or an unknown kind; nothing was stored."),
            "401": err("Missing, unknown or revoked token."),
            "403": err("A device token: files are imported with a system token."),
            "409": err("Another import is running on this server; try again when it is done."),
            "413": err("File larger than EMAP_IMPORT_MAX_BYTES; nothing was stored."),
        },
    }


def openapi_spec(server_url: str = "") -> dict:
    """The OpenAPI 3.1 description of the ingest API (served at ``/api/v1/openapi.json``)."""
    error = {"description": "", **_content(_ref("Error"))}
    text = {"type": "string"}

    def err(description: str) -> dict:
        return {**error, "description": description}

    batch_responses = {
        "200": {
            "description": "Processed: accepted records are committed; rejected ones are "
            "listed and kept in quarantine.",
            **_content(_ref("IngestResult")),
        },
        "400": err("Malformed JSON; the message gives the line and column (or NDJSON line)."),
        "401": err("Missing, unknown or revoked token."),
        "413": err("Body larger than the configured limit."),
        "503": err(
            "Nothing was stored (busy or failing store); retry later, re-sent records are not stored twice."
        ),
    }

    def batch_op(summary: str, item: str) -> dict:
        return {
            "summary": summary,
            "security": [{"bearer": []}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"oneOf": [{"type": "array", "items": _ref(item)}, _ref(item)]}
                    },
                    "application/x-ndjson": {
                        "schema": {"type": "string", "description": f"One {item} JSON object per line."}
                    },
                },
            },
            "responses": batch_responses,
        }

    osmand_params = [
        {"name": n, "in": "query", "required": False, "schema": s, "description": d}
        for n, s, d in [
            ("id", text, "Device identifier (or `deviceid`)."),
            ("deviceid", text, "Device identifier (or `id`)."),
            ("lat", {"type": "number"}, "Latitude, WGS-84 degrees."),
            ("lon", {"type": "number"}, "Longitude, WGS-84 degrees."),
            ("location", text, "`lat,lon` instead of `lat` and `lon`."),
            (
                "timestamp",
                text,
                "Unix seconds or milliseconds, ISO 8601, or `YYYY-MM-DD HH:MM:SS` "
                "(local time). Missing: the time received.",
            ),
            ("speed", {"type": "number"}, "Speed, in knots unless configured otherwise."),
            ("bearing", {"type": "number"}, "Heading in degrees (or `heading`)."),
            ("heading", {"type": "number"}, "Heading in degrees (or `bearing`)."),
            ("altitude", {"type": "number"}, "Metres."),
            ("accuracy", {"type": "number"}, "Metres."),
            ("hdop", {"type": "number"}, "Horizontal dilution of precision."),
            ("batt", {"type": "number"}, "Battery level, percent."),
            ("token", text, "Device or system token, when the server requires one."),
        ]
    ]
    osmand_responses = {
        "200": {
            "description": "Stored (`OK`), or refused for good and kept in quarantine (the reason in the "
            "body): the phone goes on to its next fix.",
            **_content(text, "text/plain"),
        },
        "400": {
            "description": "Malformed: no device id (or two different ones), unreadable body.",
            **_content(text, "text/plain"),
        },
        "401": {"description": "Unknown token, or a token is required.", **_content(text, "text/plain")},
        "403": {
            "description": "A token used for another device or outside its node, or a device that is not "
            "registered: the phone keeps the fix until this is put right.",
            **_content(text, "text/plain"),
        },
        "413": err("Body larger than the configured limit."),
        "503": {"description": "Not stored now; the phone retries.", **_content(text, "text/plain")},
    }
    osmand_json = {
        "type": "object",
        "required": ["device_id", "location"],
        "properties": {
            "device_id": text,
            "location": {
                "oneOf": [_ref("OsmAndLocation"), {"type": "array", "items": _ref("OsmAndLocation")}]
            },
        },
    }
    num = {"type": ["number", "null"]}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "EMAP live ingest API",
            "version": API_VERSION,
            "description": "Courier GPS positions and parcel scans into the EMAP store. "
            "A 2xx answer is sent only after the records are committed.",
        },
        "servers": [{"url": server_url}] if server_url else [],
        "paths": {
            "/api/v1/pings": {"post": batch_op("Store a batch of GPS pings", "Ping")},
            "/api/v1/events": {"post": batch_op("Store a batch of parcel events (scans)", "ParcelEvent")},
            "/osmand": {
                "description": "Also served, with the same answers, by the phone listener on its own "
                "port (EMAP_OSMAND_PORT, 5055) at any path, e.g. http://host:5055/?id=...",
                "get": {
                    "summary": "One position, OsmAnd query form (OsmAnd app, Traccar Client)",
                    "parameters": osmand_params,
                    "responses": osmand_responses,
                },
                "post": {
                    "summary": "One position, OsmAnd form or JSON body (Traccar Client 9+)",
                    "parameters": osmand_params,
                    "requestBody": {
                        "content": {
                            "application/json": {"schema": osmand_json},
                            "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
                        }
                    },
                    "responses": osmand_responses,
                },
            },
            "/api/v1/import": {"post": _import_op(err)},
            "/api/v1/openapi.json": {
                "get": {
                    "summary": "This description",
                    "responses": {
                        "200": {"description": "OpenAPI 3.1 document", **_content({"type": "object"})}
                    },
                }
            },
            "/api/v1/health": {
                "get": {
                    "summary": "Health: the ingest writer commits and the store answers",
                    "description": "Each check runs on request: 'writer' passes an empty job "
                    "through the ingest writer (it must answer within 5 s and its newest commit "
                    "must have succeeded), 'store' runs a trivial query. A lake has no writer "
                    "and only the 'store' check. Needs no token.",
                    "responses": {
                        "200": {
                            "description": "Every check passed; the writer's counters since the "
                            "server started",
                            **_content(_ref("Health")),
                        },
                        "503": {
                            "description": "A check failed (status 'failing'; the check's error says what)",
                            **_content(_ref("Health")),
                        },
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (text format) for a scraper",
                    "description": "Answered only with 'Authorization: Bearer <EMAP_METRICS_TOKEN>'; "
                    "with no EMAP_METRICS_TOKEN set, 404. Metric names start with emap_ "
                    "(docs/operations.md, 'Metrics').",
                    "security": [{"metrics": []}],
                    "responses": {
                        "200": {
                            "description": "The Prometheus text exposition format",
                            **_content({"type": "string"}, "text/plain"),
                        },
                        "401": {
                            "description": "Missing or wrong token (with WWW-Authenticate)",
                            **_content({"type": "string"}, "text/plain"),
                        },
                        "404": {
                            "description": "No EMAP_METRICS_TOKEN is set: metrics are not served",
                            **_content({"type": "string"}, "text/plain"),
                        },
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "A device or system token."},
                "metrics": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The scraper's token: the value of EMAP_METRICS_TOKEN.",
                },
            },
            "schemas": {
                "ImportResult": {
                    "type": "object",
                    "required": [
                        "kind",
                        "rows",
                        "accepted",
                        "rejected",
                        "duplicates",
                        "quarantine_source",
                        "rejected_lines",
                    ],
                    "description": "rows = accepted + rejected + duplicates.",
                    "properties": {
                        "kind": {"enum": list(_KINDS)},
                        "rows": {"type": "integer", "description": "data rows read (lines, for CSV)"},
                        "accepted": {"type": "integer", "description": "stored now"},
                        "rejected": {"type": "integer", "description": "kept in quarantine"},
                        "duplicates": {"type": "integer", "description": "record ids already stored"},
                        "quarantine_source": {
                            **text,
                            "description": "the quarantine table's source of the rejected rows",
                        },
                        "import_id": {
                            **text,
                            "description": "its row in the imports history (the dashboard's imports page)",
                        },
                        "rejected_lines": {
                            "type": "array",
                            "description": "the first rejected rows (at most 100), in file order",
                            "items": {
                                "type": "object",
                                "required": ["line", "reason"],
                                "properties": {
                                    "line": {
                                        "type": "integer",
                                        "description": "CSV: line in the file (1 = the header); Parquet: row",
                                    },
                                    "reason": text,
                                },
                            },
                        },
                    },
                },
                "Ping": {
                    "type": "object",
                    "required": ["device_id", "ts", "lat", "lng"],
                    "description": "Aliases accepted: id/deviceid, timestamp, lon, bearing.",
                    "properties": {
                        "device_id": text,
                        "ts": {
                            "type": ["string", "number"],
                            "description": "Unix s/ms, ISO 8601, or YYYY-MM-DD HH:MM:SS (local)",
                        },
                        "lat": {"type": "number"},
                        "lng": {"type": "number"},
                        "speed": {**num, "description": "m/s"},
                        "heading": {**num, "description": "degrees from north"},
                        "accuracy": {**num, "description": "metres"},
                    },
                },
                "ParcelEvent": {
                    "type": "object",
                    "required": ["parcel_id", "kind", "ts", "lat", "lng"],
                    "properties": {
                        "event_id": {
                            **text,
                            "description": "record id; derived from parcel, kind and time when missing",
                        },
                        "parcel_id": text,
                        "kind": {
                            "enum": ["pickup_request", "pickup", "arrival", "out_for_delivery", "delivered"]
                        },
                        "ts": {"type": ["string", "number"]},
                        "lat": {"type": "number"},
                        "lng": {"type": "number"},
                        "outlet_id": text,
                        "courier_id": text,
                        "promised_at": {"type": ["string", "number", "null"]},
                        "dest_branch_id": text,
                        "expected_at": {"type": ["string", "number", "null"]},
                    },
                },
                "OsmAndLocation": {
                    "type": "object",
                    "properties": {
                        "timestamp": text,
                        "coords": {
                            "type": "object",
                            "properties": {
                                "latitude": {"type": "number"},
                                "longitude": {"type": "number"},
                                "speed": {**num, "description": "m/s"},
                                "heading": num,
                                "accuracy": num,
                                "altitude": num,
                            },
                        },
                        "battery": {
                            "type": "object",
                            "properties": {"level": num, "is_charging": {"type": "boolean"}},
                        },
                    },
                },
                "IngestResult": {
                    "type": "object",
                    "required": ["received", "accepted", "rejected"],
                    "additionalProperties": False,
                    "properties": {
                        "received": {"type": "integer", "minimum": 0},
                        "accepted": {
                            "type": "integer",
                            "minimum": 0,
                            "description": "records now stored (including re-sent ones stored before)",
                        },
                        "rejected": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["index", "reason"],
                                "additionalProperties": False,
                                "properties": {
                                    "index": {
                                        "type": "integer",
                                        "minimum": 0,
                                        "description": "0-based position in the batch",
                                    },
                                    "reason": text,
                                },
                            },
                        },
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "additionalProperties": False,
                    "properties": {"error": text},
                },
                "Health": {
                    "type": "object",
                    "required": ["status", "checks"],
                    "properties": {
                        "status": {"enum": ["ok", "failing"]},
                        "checks": {
                            "type": "object",
                            "description": "Per check ('writer', 'store'): whether it passed, "
                            "its figures, or the error saying what failed.",
                            "additionalProperties": {
                                "type": "object",
                                "required": ["ok"],
                                "properties": {
                                    "ok": {"type": "boolean"},
                                    "error": text,
                                    "round_trip_ms": {"type": "number"},
                                    "queued_records": {"type": "integer"},
                                    "last_commit_s_ago": {"type": "number"},
                                    "answered_ms": {"type": "number"},
                                },
                            },
                        },
                        **{
                            k: {"type": "integer"}
                            for k in (
                                "groups",
                                "requests",
                                "received",
                                "accepted",
                                "stored",
                                "duplicates",
                                "rejected",
                                "errors",
                                "commit_ms",
                            )
                        },
                    },
                },
            },
        },
    }
