"""EMAP: the operations electronic map of an express-delivery network.

The one entry point. ``python app.py`` serves the dashboard on the embedded store,
creating the database and the demo network on first run. The subcommands and their
help are listed below (``cli/commands.py``); with a server running, the store commands run
inside it, through its owner channel (``cli/owner.py``).

With EMAP_LAKE_DIR set (or serve --lake DIR), the dashboard reads a lake's partitions
instead of the embedded store's records.

Settings come from config/__init__.py and EMAP_* environment variables (see README).
"""

from __future__ import annotations

import sys

from cli.commands import main

if __name__ == "__main__":
    sys.exit(main(description=__doc__))
