/* Pulse wall display (/wall): the browser side of dashboard/pages/wall.py. */
window.dash_clientside = Object.assign({}, window.dash_clientside, {
  pulseWall: {
    /* One panel visible at a time: the n-th tick shows panel n modulo their number. */
    rotate: function (n, config) {
      const panels = config.panels;
      const shown = (n || 0) % panels.length;
      return panels.map((_, i) => (i === shown ? "wall-section active" : "wall-section"));
    },

    /* Ask /health with a timeout. Unreachable: a banner, the last good data stays on screen.
       Reachable again after a failure: reload the page (the session cookie keeps the wall
       signed in). Otherwise the banner shows the server's stale text (wall-status), if any. */
    health: async function (_tick, status, state, config) {
      const previous = state || {};
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), config.timeout_ms);
      let reachable = false;
      try {
        const reply = await fetch("/health", { cache: "no-store", signal: controller.signal });
        reachable = reply.ok;
      } catch (error) {
        reachable = false;
      } finally {
        clearTimeout(timer);
      }
      if (reachable) {
        if (previous.down_since) {
          window.location.reload();
        }
        const text = (status || {}).stale || "";
        return [text, !text, {}];
      }
      const downSince = previous.down_since || Date.now();
      const since = new Date(downSince).toLocaleTimeString("en-GB", {
        timeZone: config.tz, hour: "2-digit", minute: "2-digit",
      });
      const updated = (status || {}).updated || "–";
      const text = `Server unreachable since ${since}: showing the last data (updated ${updated})`;
      return [text, false, { down_since: downSince }];
    },
  },
});
