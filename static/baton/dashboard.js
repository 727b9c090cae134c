// Draws the dashboards' plotly charts from their JSON specs (calibration/charts.py:figure_spec).
// A spec sits in a <script type="application/json"> beside its empty <div>: data, never run,
// so the strict content security policy needs no inline script. Charts swapped in by htmx
// are drawn too.
(function () {
  "use strict";

  function draw(root) {
    if (typeof window.Plotly === "undefined") return;
    root.querySelectorAll("[data-chart-spec]:not([data-drawn])").forEach(function (el) {
      var source = document.getElementById(el.getAttribute("data-chart-spec"));
      if (!source) return;
      var spec;
      try {
        spec = JSON.parse(source.textContent);
      } catch (err) {
        el.textContent = "This chart could not be read.";
        return;
      }
      el.setAttribute("data-drawn", "pending");
      window.Plotly.newPlot(el, spec.data || [], spec.layout || {}, spec.config || {}).then(
        function () { el.setAttribute("data-drawn", "yes"); },
        function () { el.setAttribute("data-drawn", "failed"); el.textContent = "This chart could not be drawn."; }
      );
    });
  }

  function start() { draw(document); }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
  document.addEventListener("htmx:afterSettle", function (evt) { draw(evt.target || document); });
})();
