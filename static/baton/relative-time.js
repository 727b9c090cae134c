// Keeps "(5 minutes ago)" true on pages that stay open: every <time data-relative> is
// rewritten from its datetime attribute every 30 s (and when htmx swaps new ones in).
(() => {
  "use strict";
  const units = [
    ["year", 365 * 86400],
    ["month", 30 * 86400],
    ["week", 7 * 86400],
    ["day", 86400],
    ["hour", 3600],
    ["minute", 60],
  ];

  function ago(seconds) {
    if (seconds < 60) return "less than a minute ago";
    for (const [name, size] of units) {
      if (seconds >= size) {
        const n = Math.floor(seconds / size);
        return `${n} ${name}${n === 1 ? "" : "s"} ago`;
      }
    }
    return "just now";
  }

  function refresh(root) {
    const now = Date.now();
    for (const el of (root || document).querySelectorAll("time[data-relative]")) {
      const at = Date.parse(el.getAttribute("datetime"));
      if (!Number.isNaN(at)) el.textContent = ago(Math.max(0, (now - at) / 1000));
    }
  }

  document.addEventListener("htmx:afterSettle", (event) => refresh(event.target));
  setInterval(refresh, 30_000);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => refresh());
  else refresh();
})();
