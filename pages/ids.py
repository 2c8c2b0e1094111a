"""Every component id of the dashboard. The first block is stable: tests and
integrations rely on it."""

# stable ids
MAP = "map"
BREADCRUMB = "breadcrumb"
KPIS = "kpis"
ALERTS = "alerts"
DATE = "date"
HOUR = "hour"
METRIC = "metric"
LAYERS = "layers"
LANGUAGE = "language"
LIVE = "live"

# other ids
URL = "url"
STATE = "state"
GEOMETRY = "geometry-key"
MAP_LEGEND = "map-legend"  # colours of courier and vehicle states, over the map
BASEMAP = "basemap"
DRILL = "drill"
HOUR_PREV = "hour-prev"
HOUR_NEXT = "hour-next"
PLAY = "play"
PLAY_TICK = "play-tick"
LIVE_TICK = "live-tick"
TREND = "trend"
CHILDREN = "children"  # the ranking of the children (an AG Grid, pages/ranking.py)
TITLE = "title"
STATUS = "status"
OUTLOOK = "outlook"  # predicted alerts and dispatch suggestions (pages/outlook.py)
OUTLOOK_NOTE = "outlook-note"
OUTLOOK_CLIENT = "outlook-client"  # an id per page load (the panel drops superseded requests)

# export control (pages/export.py)
EXPORT_LABEL = "export-label"
EXPORT_SPAN = "export-span"
EXPORT_FORMAT = "export-format"
EXPORT_BUTTON = "export-button"
EXPORT_STATUS = "export-status"
EXPORT_DOWNLOAD = "export-download"

# the ranking's CSV download (pages/ranking.py; managers and admins only)
RANKING_BUTTON = "ranking-download-button"
RANKING_DOWNLOAD = "ranking-download"

#: Pattern-matching id types.
CRUMB = "crumb"  # {"type": CRUMB, "node": node_id}
ALERT = "alert"  # {"type": ALERT, "zone": zone_id}
DECIDE = "decide"  # {"type": DECIDE, "hour", "branch", "src", "zone", "n", "km", "what", "decision"}

#: Static labels translated by the language callback: id -> translation key.
LABELS = {
    "label-date": "date",
    "label-hour": "hour",
    "label-metric": "metric",
    "label-layers": "layers",
    "label-basemap": "basemap",
    "label-drill": "drill",
    "label-kpis": "kpis",
    "label-alerts": "alerts",
    "label-children": "children",
    "label-predicted": "predicted_alerts",
    TITLE: "title",
}
