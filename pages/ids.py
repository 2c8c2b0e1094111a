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
LIVE_POLL = "live-poll"  # live mode's poll (pages/live.py)
LIVE_VERSION = "live-version"  # the fingerprint of the data the page shows
LIVE_BEAT = "live-beat"  # changes with every answered poll (the page's watchdog)
LIVE_BADGE = "live-badge"  # "live · last update hh:mm:ss"
LIVE_TEXT = "live-text"
LIVE_LOST = "live-lost"
LIVE_PUSH = "live-push"  # push channel: set by the page when its event stream says the data changed
LIVE_CHANNEL = "live-channel"  # which channel the page uses, and the stream's URL (pages/live.py)
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

#: Administration pages (pages/admin.py).
ADMIN_NAV = "admin-nav"
ADMIN_USERS_RESULT = "admin-users-result"
ADMIN_USERS_TABLE = "admin-users-table"
ADMIN_USER_ID = "admin-user-id"
ADMIN_USER_NAME = "admin-user-name"
ADMIN_USER_ROLE = "admin-user-role"
ADMIN_USER_NODE = "admin-user-node"
ADMIN_USER_GRANT = "admin-user-grant"
ADMIN_USER_CREATE = "admin-user-create"
ADMIN_USER_PICK = "admin-user-pick"
ADMIN_USER_SAVE = "admin-user-save"
ADMIN_USER_DISABLE = "admin-user-disable"
ADMIN_USER_RESET = "admin-user-reset"
ADMIN_DEVICES_RESULT = "admin-devices-result"
ADMIN_DEVICES_TABLE = "admin-devices-table"
ADMIN_UNKNOWN_TABLE = "admin-unknown-table"
#: One-click registration of a device seen in quarantine: the button and owner choice of
#: each row (pattern ids carrying the device id) and the message; the store tells the
#: devices callback to draw its tables again.
ADMIN_UNKNOWN_REGISTER = "admin-unknown-register"
ADMIN_UNKNOWN_OWNER = "admin-unknown-owner"
ADMIN_UNKNOWN_RESULT = "admin-unknown-result"
ADMIN_DEVICES_REFRESH = "admin-devices-refresh"
ADMIN_DEVICE_ID = "admin-device-id"
ADMIN_DEVICE_OWNER = "admin-device-owner"
ADMIN_DEVICE_REGISTER = "admin-device-register"
ADMIN_DEVICE_ATTACH = "admin-device-attach"
ADMIN_DEVICE_UNKNOWN = "admin-device-unknown"
ADMIN_DEVICE_BULK = "admin-device-bulk"
ADMIN_TOKENS_RESULT = "admin-tokens-result"
ADMIN_TOKENS_TABLE = "admin-tokens-table"
ADMIN_TOKEN_KIND = "admin-token-kind"
ADMIN_TOKEN_SUBJECT = "admin-token-subject"
ADMIN_TOKEN_NODE = "admin-token-node"
ADMIN_TOKEN_CREATE = "admin-token-create"
ADMIN_TOKEN_ID = "admin-token-id"
ADMIN_TOKEN_REVOKE = "admin-token-revoke"
ADMIN_AUDIT_TABLE = "admin-audit-table"
ADMIN_AUDIT_ACTION = "admin-audit-action"
ADMIN_AUDIT_TEXT = "admin-audit-text"
ADMIN_AUDIT_FILTER = "admin-audit-filter"
ADMIN_AUDIT_DOWNLOAD_BUTTON = "admin-audit-download-button"
ADMIN_AUDIT_DOWNLOAD = "admin-audit-download"
