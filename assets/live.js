// The live indicator's watchdog (pages/live.py): runs in the page, so that it can say
// the server stopped answering when no request to the server gets through.
window.dash_clientside = Object.assign({}, window.dash_clientside, {
  emap: Object.assign({}, (window.dash_clientside || {}).emap, {
    liveWatch: function (beat, _ticks, live, interval) {
      if (!live || !live.length) {
        window.emapLiveBeatAt = undefined;
        return "live-badge";
      }
      const now = Date.now();
      const triggered = (window.dash_clientside.callback_context.triggered || []).map(t => t.prop_id);
      if (triggered.includes("live-beat.data") || window.emapLiveBeatAt === undefined) {
        window.emapLiveBeatAt = now;  // an answered poll, or live mode just switched on
      }
      // three polls without an answer: the server (or the way to it) is gone
      const lost = now - window.emapLiveBeatAt > 3 * (interval || 2000) + 1000;
      return lost ? "live-badge live-on live-lost" : "live-badge live-on";
    }
  })
});
