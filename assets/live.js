// Live mode in the page (pages/live.py): the push channel's event stream, and the
// indicator's watchdog, which runs here so that it can say the server stopped answering
// when no request to the server gets through.
(function () {
  // Milliseconds a stream may stay unopened (the browser retrying) before the indicator
  // says the server does not answer; a stream the server ends on purpose (every few
  // minutes) is open again long before.
  const STREAM_LOST_MS = 6000;
  // Milliseconds a page refused a stream polls before it asks for one again.
  const PUSH_RETRY_MS = 60000;

  const push = {
    source: null, // the EventSource while live mode is on with the push channel
    config: null, // what the server said of the channel (the live-channel store)
    downSince: null, // when the stream stopped being open (null: open, or none)
    polling: false, // refused a stream: the timer polls meanwhile
    retry: null, // the timer asking for a stream again
    lostTimer: null,
    events: 0,
  };

  function setProps(id, props) {
    window.dash_clientside.set_props(id, props);
  }

  function badge(lost) {
    setProps("live-badge", { className: lost ? "live-badge live-on live-lost" : "live-badge live-on" });
  }

  function close() {
    if (push.source) {
      push.source.close();
      push.source = null;
    }
    clearTimeout(push.retry);
    clearTimeout(push.lostTimer);
    push.downSince = null;
  }

  // A page refused a stream (too many open, signed out, a server without the channel):
  // the timer polls as with EMAP_LIVE_CHANNEL=poll, and a stream is asked for again later.
  function fallBack() {
    close();
    push.polling = true;
    setProps("live-poll", { interval: push.config.poll_ms });
    push.retry = setTimeout(() => open(push.config), PUSH_RETRY_MS);
  }

  function open(config) {
    close();
    push.config = config;
    const source = new EventSource(config.url);
    push.source = source;
    push.downSince = Date.now();  // down until the first open
    let opening = true;  // the next event is a (re)opened stream's first
    source.onopen = () => {
      opening = true;
      push.downSince = null;
      clearTimeout(push.lostTimer);
      push.polling = false;
      // the timer only refreshes the indicator while the stream is open
      setProps("live-poll", { interval: config.refresh_ms });
      badge(false);
    };
    source.addEventListener("version", () => {
      // the data changed (or the stream just opened: its first event): the page asks for
      // it as a poll would; what the event says is not used
      push.events += 1;
      setProps("live-push", { data: { n: push.events, open: opening } });
      opening = false;
    });
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        fallBack();  // an answer that is not a stream: the browser gives up on it
        return;
      }
      // the browser opens the stream again by itself; if that takes long, say so
      if (push.downSince === null) {
        push.downSince = Date.now();
      }
      clearTimeout(push.lostTimer);
      push.lostTimer = setTimeout(() => {
        if (push.source === source && push.downSince !== null) {
          badge(true);
        }
      }, STREAM_LOST_MS);
    };
  }

  function streamLost() {
    return push.source !== null && push.downSince !== null && Date.now() - push.downSince > STREAM_LOST_MS;
  }

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    emap: Object.assign({}, (window.dash_clientside || {}).emap, {
      liveChannel: function (live, config) {
        const on = Boolean(live && live.length);
        if (!on || !config || config.channel !== "push" || typeof EventSource === "undefined") {
          close();
          push.polling = false;
          return;
        }
        if (!push.source) {
          open(config);
        }
      },
      liveWatch: function (beat, _ticks, live, interval) {
        if (!live || !live.length) {
          window.emapLiveBeatAt = undefined;
          return "live-badge";
        }
        const now = Date.now();
        const triggered = (window.dash_clientside.callback_context.triggered || []).map(t => t.prop_id);
        if (triggered.includes("live-beat.data") || window.emapLiveBeatAt === undefined) {
          window.emapLiveBeatAt = now;  // an answered request, or live mode just switched on
        }
        // three intervals of the timer without an answer, or the stream gone: the server
        // (or the way to it) is gone
        const lost = now - window.emapLiveBeatAt > 3 * (interval || 2000) + 1000 || streamLost();
        return lost ? "live-badge live-on live-lost" : "live-badge live-on";
      }
    })
  });
})();
