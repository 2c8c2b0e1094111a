"""EMAP: the operations electronic map of an express-delivery network.

The one entry point. ``python app.py`` serves the dashboard on the embedded store,
creating the database and the demo network on first run. Subcommands:

  serve    serve the dashboard (the default)
  demo     generate the demo network and days into the store
  import   load CSV or Parquet files of pings, parcel events, outlets or couriers
  replay   stream a generated day to a running server's ingest API
  tokens   create, list or revoke ingest API tokens
  users    create, list, set-role, reset-password, disable or enable users
  export   export a heatmap report (HTML, PNG, PDF, GeoJSON, CSV, GeoParquet)
  backtest score the workload forecast hour by hour over a day
  simulate apply dispatch suggestions over a day: before / after
  status   show what the store holds
  ingest   serve only the ingest API and the phone listener (a dedicated ingest port)
  lake     the Parquet lake: export the store to it, build days with Spark, copy tiers

With EMAP_LAKE_DIR set (or serve --lake DIR), the dashboard reads a lake's partitions
instead of the embedded store's records.

Settings come from config/__init__.py and EMAP_* environment variables (see README).
"""

from __future__ import annotations

import sys

from cli.commands import main

if __name__ == "__main__":
    sys.exit(main(description=__doc__))
