#!/bin/sh
# Rebuild assets/plotly-emap-<version>.min.js, the partial plotly.js the dashboard loads
# (see tools/plotly_bundle/index.js for the trace types). Needs node >= 18 and the npm
# registry; the running app needs neither.
set -e
cd "$(dirname "$0")/plotly_bundle"
npm ci --no-audit --no-fund
node build.mjs
