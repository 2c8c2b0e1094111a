// The plotly.js the dashboard loads: the core (which always registers the scatter
// trace) and only the trace types EMAP draws. Keep this list and TRACES in
// tests/browser/test_plotly_bundle.py in step when a layer or chart uses a new type.
var Plotly = require('plotly.js/lib/core');

Plotly.register([
    require('plotly.js/lib/scattermap'), // points, couriers, vehicles, zones, outlines' borders, dispatch arrows
    require('plotly.js/lib/choroplethmap'), // hexes, territories
    require('plotly.js/lib/bar'), // the hourly trend
]);

module.exports = Plotly;
