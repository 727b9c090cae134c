// The regions page: add a blank row from the formset's empty form, remove an unsaved row.
// A removed new row is hidden and marked for deletion (its index stays, so the formset's
// numbering never has a gap); a saved region is removed by its own "Remove" checkbox.
(() => {
  "use strict";
  const form = document.getElementById("regions-form");
  if (!form) return;
  const rows = document.getElementById("region-rows");
  const template = document.getElementById("region-row-template");
  const total = form.querySelector("input[name$='-TOTAL_FORMS']");
  const changed = () => rows.closest("table").dispatchEvent(new Event("regions-changed", { bubbles: true }));

  function addRow() {
    const index = Number(total.value);
    const html = template.innerHTML.replaceAll("__prefix__", String(index));
    rows.insertAdjacentHTML("beforeend", html);
    total.value = String(index + 1);
    const row = rows.lastElementChild;
    const position = row.querySelector("input[name$='-position']");
    if (position) position.value = String(rows.querySelectorAll("tr.region-row:not([hidden])").length - 1);
    row.querySelector("input[name$='-key']")?.focus();
  }

  form.addEventListener("click", (event) => {
    const button = event.target.closest("[data-action]");
    if (!button) return;
    if (button.dataset.action === "add-row") {
      addRow();
    } else if (button.dataset.action === "remove-row") {
      const row = button.closest("tr");
      const del = row.querySelector("input[name$='-DELETE']");
      if (del) del.checked = true;
      row.querySelectorAll("input[name$='-traffic_share']").forEach((i) => { i.value = ""; });
      row.hidden = true;
      changed();
    }
  });
})();
