// Baton grading page: the keyboard layer on top of plain htmx forms.
//
// The page works without this file (forms post and redirect). This file adds the keys
// (digits grade the current dimension and move on, Enter submits, s/f/u/c/?/r/Esc), the
// time spent per item, and the "not saved - retry" banner.
//
// Side by side (two responses to one prompt), every dimension appears once per response:
// the same keys walk through all of them, left response first; left/right arrows jump to
// the same dimension on the other response, and f preselects the focused response to flag.
//
// It never builds markup from text: it only checks radios, toggles elements and sets
// textContent, so nothing from a prompt or response can ever run as code.
(() => {
  "use strict";

  let shownAt = performance.now();
  let failedForm = null; // the form whose request did not go through, for retry
  let busy = false;

  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));
  const gradeForm = () => document.getElementById("grade-form");
  const dims = () => (gradeForm() ? $$("fieldset.dim", gradeForm()) : []);
  const isGraded = (fieldset) => Boolean($("input[type=radio]:checked", fieldset));
  const missing = () => dims().filter((fieldset) => !isGraded(fieldset));
  const panelOf = (el) => (el && el.closest ? el.closest("details.grade-option") : null);
  const dimOf = (el) => (el && el.closest ? el.closest("fieldset.dim") : null);

  // Submit a form through htmx. htmx binds hx-post on swapped-in content only when the swap
  // settles (about 20 ms later); a key pressed in that window would post the form natively
  // (a full page load that drops the undo preselection). Processing it first closes the gap;
  // htmx.process is a no-op on a form it has already bound.
  function send(form) {
    if (!form) return;
    if (window.htmx) window.htmx.process(form);
    form.requestSubmit();
  }

  function say(text) {
    const status = document.getElementById("grade-status");
    if (status) status.textContent = text;
  }

  function sayWarning(text) {
    const status = document.getElementById("grade-status");
    if (!status) return;
    status.textContent = "";
    const span = document.createElement("span");
    span.className = "status-warning";
    span.textContent = text;
    status.appendChild(span);
  }

  function setCurrent(fieldset) {
    for (const d of dims()) d.classList.toggle("is-current", d === fieldset);
  }

  function currentDim() {
    return dimOf(document.activeElement) || $("fieldset.dim.is-current") || dims()[0] || null;
  }

  function focusDim(fieldset, scroll = true) {
    if (!fieldset) return;
    const radio = $("input[type=radio]:checked", fieldset) || $("input[type=radio]", fieldset);
    setCurrent(fieldset);
    if (radio) radio.focus({ preventScroll: !scroll });
    if (scroll) fieldset.scrollIntoView({ block: "nearest" });
  }

  // A new item starts at its top (the prompt), with the focus on its first grade. On one
  // column (tablets) the rubric is below the text: focusing must not scroll past the text.
  function focusStart() {
    if (!gradeForm()) {
      // The thank-you page: Enter goes back to the studies.
      const next = $("#item a.button.primary");
      if (next) next.focus();
      return;
    }
    const errored = $("fieldset.dim.has-error");
    const openPanel = $("details.grade-option[open]");
    if (openPanel && $(".error", openPanel)) return focusPanel(openPanel);
    if (errored) return focusDim(errored);
    const item = document.getElementById("item");
    if (item && item.getBoundingClientRect().top < 0) item.scrollIntoView({ block: "start" });
    focusDim(missing()[0] || dims()[0], false);
  }

  function showMissing() {
    const form = gradeForm();
    const names = missing().map((d) => $("legend", d).textContent.replace(/^\s*\d+\s*/, "").trim());
    const slot = form && $("[data-role=missing]", form);
    if (slot) slot.textContent = names.length ? "Still to grade: " + names.join(", ") : "";
    return names;
  }

  // Pick the grade whose digit is `key` on `fieldset`, then move on to the next
  // dimension that still needs a grade, or to the submit button when none does.
  function pick(fieldset, key) {
    const radios = $$("input[type=radio]", fieldset);
    const radio = radios.find((r) => r.dataset.key === key);
    if (!radio) {
      // Say it, rather than ignore the key: "7 is not a grade for Correctness (1, 0)."
      const title = $("legend", fieldset).textContent.replace(/^\s*\d+\s*/, "").trim();
      const keys = radios.map((r) => r.dataset.key).join(", ");
      sayWarning(`${key} is not a grade for ${title}: press ${keys}.`);
      return;
    }
    radio.checked = true;
    radio.dispatchEvent(new Event("change", { bubbles: true }));
    fieldset.classList.remove("has-error");
    showMissing();
    const list = dims();
    const after = list.slice(list.indexOf(fieldset) + 1);
    const next = after.find((d) => !isGraded(d)) || missing()[0];
    if (next) {
      focusDim(next);
    } else {
      setCurrent(null);
      $("button[type=submit]", gradeForm()).focus();
    }
  }

  function moveDim(step) {
    const list = dims();
    if (!list.length) return;
    const here = list.indexOf(currentDim());
    const to = Math.min(list.length - 1, Math.max(0, here + step));
    focusDim(list[to]);
  }

  // Side by side: the same dimension on the other response (fieldsets carry data-side).
  function otherSide(fieldset) {
    if (!fieldset || !fieldset.dataset.side) return null;
    const other = fieldset.dataset.side === "left" ? "right" : "left";
    const base = fieldset.dataset.dim.slice(fieldset.dataset.side.length + 1);
    return dims().find((d) => d.dataset.side === other && d.dataset.dim === other + "-" + base) || null;
  }

  // Side by side: flag the response whose grade has the focus, else both.
  function preselectFlagSide() {
    const fieldset = dimOf(document.activeElement);
    const side = fieldset && fieldset.dataset.side ? fieldset.dataset.side : "both";
    const radio = $(`#flag-panel input[name=flag_side][value=${side}]`);
    if (radio) radio.checked = true;
  }

  function stampTime(form) {
    const field = form && form.querySelector("input[name=time_spent_ms]");
    if (field) field.value = String(Math.round(performance.now() - shownAt));
  }

  function submitGrade() {
    const form = gradeForm();
    if (!form || busy) return;
    const names = showMissing();
    if (names.length) {
      say("Not sent: still to grade " + names.join(", ") + ".");
      focusDim(missing()[0]);
      return;
    }
    send(form);
  }

  function focusPanel(panel) {
    const radio = $("input[type=radio]:checked", panel) || $("input[type=radio]", panel);
    if (radio) radio.focus();
  }

  function openPanel(id) {
    const panel = document.getElementById(id);
    if (!panel) return;
    for (const other of $$("details.grade-option[open]")) if (other !== panel) other.open = false;
    panel.open = true;
    focusPanel(panel);
    panel.scrollIntoView({ block: "nearest" });
  }

  function closePanel(panel) {
    panel.open = false;
    focusDim(missing()[0] || $("fieldset.dim.is-current") || dims()[0]);
  }

  function updateFlagState() {
    const panel = document.getElementById("flag-panel");
    if (!panel) return;
    const chosen = $("input[name=flag_choice]:checked", panel);
    $("[data-role=flag-state]", panel).textContent = chosen && chosen.value ? "· flagged" : "";
  }

  // A digit inside the skip or flag panel picks that reason. "Other" moves to its text box.
  function pickReason(panel, key) {
    const radio = $$("input[type=radio]", panel).find((r) => r.dataset.key === key);
    if (!radio) return;
    radio.checked = true;
    if (radio.value === "other") {
      $("input[type=text]", panel).focus();
      return;
    }
    if (panel.id === "skip-panel") {
      send(document.getElementById("skip-form"));
    } else {
      updateFlagState();
      say(radio.value ? "Flagged: it will be sent with the grade." : "Not flagged.");
      closePanel(panel);
    }
  }

  function retry() {
    if (!failedForm || !document.contains(failedForm)) return;
    hideBanner();
    say("Retrying…");
    send(failedForm);
  }

  function hideBanner() {
    const banner = document.getElementById("grade-offline");
    if (banner) banner.hidden = true;
  }

  function showBanner(reason) {
    const banner = document.getElementById("grade-offline");
    if (!banner) return;
    $("[data-role=offline-reason]", banner).textContent = reason;
    banner.hidden = false;
  }

  // Drafts: the grades and comment of the item on screen survive a reload (localStorage,
  // keyed by the item's assignment or pair key), and are dropped once the item is answered.
  const DRAFT_PREFIX = "baton:draft:";
  const DRAFT_DAYS = 2;
  let shownItem = null;
  const itemKey = () => {
    const item = document.getElementById("item");
    return item && item.dataset.assignment ? item.dataset.assignment : null;
  };
  function storage() {
    try {
      return window.localStorage;
    } catch (_) {
      return null; // storage disabled: no drafts
    }
  }
  function saveDraft() {
    const key = itemKey();
    const store = storage();
    const form = gradeForm();
    if (!key || !store || !form) return;
    const labels = {};
    for (const radio of $$("input[type=radio]:checked", form)) {
      if (radio.name.startsWith("label-")) labels[radio.name] = radio.value;
    }
    const comment = ($("#grade-comment", form) || { value: "" }).value;
    store.setItem(DRAFT_PREFIX + key, JSON.stringify({ labels, comment, at: Date.now() }));
  }
  function restoreDraft() {
    const key = itemKey();
    const store = storage();
    const form = gradeForm();
    if (!key || !store || !form) return false;
    let draft = null;
    try {
      draft = JSON.parse(store.getItem(DRAFT_PREFIX + key) || "null");
    } catch (_) {
      draft = null;
    }
    if (!draft) return false;
    let restored = false;
    for (const [name, value] of Object.entries(draft.labels || {})) {
      // What the server preselected (an undo, a refused submit) wins over the draft.
      if ($(`input[name="${CSS.escape(name)}"]:checked`, form)) continue;
      const radio = $(`input[name="${CSS.escape(name)}"][value="${CSS.escape(value)}"]`, form);
      if (radio) {
        radio.checked = true;
        restored = true;
      }
    }
    const comment = $("#grade-comment", form);
    if (comment && !comment.value && draft.comment) {
      comment.value = draft.comment;
      restored = true;
    }
    return restored;
  }
  function dropDraft(key) {
    const store = storage();
    if (store && key) store.removeItem(DRAFT_PREFIX + key);
  }
  function pruneDrafts() {
    const store = storage();
    if (!store) return;
    const old = Date.now() - DRAFT_DAYS * 86400 * 1000;
    for (let i = store.length - 1; i >= 0; i--) {
      const name = store.key(i);
      if (!name || !name.startsWith(DRAFT_PREFIX)) continue;
      try {
        if ((JSON.parse(store.getItem(name)) || {}).at < old) store.removeItem(name);
      } catch (_) {
        store.removeItem(name);
      }
    }
  }

  // Guidelines: open or closed as this annotator last left them in this study.
  const guidelinesKey = (details) => "baton:guidelines:" + (details.dataset.study || "");
  function applyGuidelines() {
    const details = document.getElementById("guidelines");
    if (!details) return;
    let stored = null;
    try {
      stored = window.localStorage.getItem(guidelinesKey(details));
    } catch (_) {
      stored = null; // storage disabled: the page's default (open)
    }
    if (stored) details.open = stored === "open";
    document.body.classList.toggle("guidelines-closed", !details.open);
  }
  function guidelinesToggled(details) {
    document.body.classList.toggle("guidelines-closed", !details.open);
    try {
      window.localStorage.setItem(guidelinesKey(details), details.open ? "open" : "closed");
    } catch (_) {
      // storage disabled: it stays as it is for this page only
    }
  }

  // PgDn/PgUp scroll the response, wherever the focus is (usually on a grade, inside the
  // grade panel, which the browser would scroll instead). Side by side: the response of
  // the focused grade's side.
  function scrollResponse(direction) {
    const fieldset = currentDim();
    const side = fieldset && fieldset.dataset.side;
    let box = side ? $(`[data-role=response][data-side=${side}]`) : null;
    if (!box) box = $(".grade-grid > .grade-text") || $("[data-role=response]");
    const scrollable = box && box.scrollHeight > box.clientHeight + 1;
    const target = scrollable ? box : document.scrollingElement;
    const height = scrollable ? box.clientHeight : window.innerHeight;
    target.scrollBy({ top: direction * Math.max(40, height * 0.85), behavior: "instant" });
  }

  function onKey(event) {
    const help = document.getElementById("keys-help");
    if (help && help.open) return; // the dialog handles Esc itself
    if (!document.getElementById("item")) return;
    const target = event.target;
    const key = event.key;
    const typing =
      target instanceof HTMLTextAreaElement ||
      (target instanceof HTMLInputElement && target.type === "text");
    const panel = panelOf(target);

    if (typing) {
      if (key === "Escape") {
        event.preventDefault();
        if (panel) closePanel(panel);
        else focusDim(currentDim());
      } else if (key === "Enter" && target instanceof HTMLTextAreaElement) {
        if (event.ctrlKey || event.metaKey) {
          event.preventDefault();
          submitGrade();
        }
      } else if (key === "Enter" && panel) {
        event.preventDefault();
        if (panel.id === "skip-panel") send(document.getElementById("skip-form"));
        else {
          updateFlagState();
          closePanel(panel);
        }
      }
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;

    if (busy && !panel && QUEUED_KEYS.test(key)) {
      event.preventDefault();
      typed.push(key);
      return;
    }

    if (panel && /^[0-9]$/.test(key)) {
      event.preventDefault();
      pickReason(panel, key);
      return;
    }
    if (/^[0-9]$/.test(key)) {
      const fieldset = currentDim();
      if (fieldset) {
        event.preventDefault();
        pick(fieldset, key);
      }
      return;
    }
    switch (key) {
      case "Enter": {
        const el = document.activeElement;
        const native =
          el && el.matches && el.matches("a, summary, button:not([type=submit]), #undo-form button");
        if (native) return;
        event.preventDefault(); // never let the browser submit a form behind our back
        if (panel && panel.id === "skip-panel") {
          if ($("input[name=skip_choice]:checked", panel)) {
            send(document.getElementById("skip-form"));
          }
        } else if (panel) {
          updateFlagState();
          closePanel(panel);
        } else {
          submitGrade();
        }
        return;
      }
      case "ArrowDown":
      case "ArrowUp":
        if (panel) return;
        event.preventDefault();
        moveDim(key === "ArrowDown" ? 1 : -1);
        return;
      case "ArrowLeft":
      case "ArrowRight": {
        const fieldset = panel ? null : currentDim();
        const target = otherSide(fieldset);
        if (!target) return; // a single item: the radio group changes the grade natively
        event.preventDefault();
        focusDim(target);
        return;
      }
      case "Escape":
        if (panel) {
          event.preventDefault();
          closePanel(panel);
        } else {
          for (const open of $$("details.grade-option[open]")) open.open = false;
        }
        return;
      case "PageDown":
      case "PageUp":
        event.preventDefault();
        scrollResponse(key === "PageDown" ? 1 : -1);
        return;
      case "h": {
        const list = document.getElementById("history");
        if (list) {
          event.preventDefault();
          list.open = !list.open;
          const first = list.open && $("a[data-role=correct]", list);
          if (first) first.focus();
        }
        return;
      }
      case "g": {
        const details = document.getElementById("guidelines");
        if (details) {
          event.preventDefault();
          details.open = !details.open;
          // "toggle" fires a task later; the rubrics follow at once.
          guidelinesToggled(details);
        }
        return;
      }
      case "s":
        event.preventDefault();
        openPanel("skip-panel");
        return;
      case "f":
        event.preventDefault();
        preselectFlagSide();
        openPanel("flag-panel");
        return;
      case "c": {
        const comment = document.getElementById("grade-comment");
        if (comment) {
          event.preventDefault();
          comment.focus();
        }
        return;
      }
      case "u": {
        const undo = document.getElementById("undo-form");
        if (undo && !busy) {
          event.preventDefault();
          send(undo);
        }
        return;
      }
      case "r":
        if (failedForm) {
          event.preventDefault();
          retry();
        }
        return;
      case "?":
        if (help) {
          event.preventDefault();
          help.showModal();
        }
        return;
      default:
    }
  }

  function itemShown() {
    shownAt = performance.now();
    failedForm = null;
    hideBanner();
    const key = itemKey();
    if (shownItem && shownItem !== key) dropDraft(shownItem); // answered (or skipped)
    shownItem = key;
    if (restoreDraft()) {
      showMissing();
      say("Your unsent grades for this item are back.");
    }
    updateFlagState();
    applyGuidelines();
    focusStart();
    replayTyped();
  }

  // Type-ahead: keys pressed while a submit is in flight are queued and replayed on the
  // item that comes back, instead of landing on the form being replaced.
  let typed = [];
  const QUEUED_KEYS = /^([0-9]|Enter|ArrowDown|ArrowUp)$/;
  function replayTyped() {
    const keys = typed;
    typed = [];
    for (const key of keys) {
      onKey({
        key,
        target: document.activeElement || document.body,
        ctrlKey: false,
        metaKey: false,
        altKey: false,
        preventDefault() {},
      });
    }
  }

  document.addEventListener("keydown", onKey);

  // Runs before htmx's own submit handler on the form (capture phase on the document),
  // so the time is in the form whether the submit came from a key or a click.
  document.addEventListener(
    "submit",
    (event) => {
      if (event.target && event.target.id === "grade-form") stampTime(event.target);
    },
    true,
  );

  // "toggle" does not bubble: listen in the capture phase.
  document.addEventListener(
    "toggle",
    (event) => {
      if (event.target && event.target.id === "guidelines") guidelinesToggled(event.target);
    },
    true,
  );

  document.addEventListener("focusin", (event) => {
    const fieldset = dimOf(event.target);
    if (fieldset) setCurrent(fieldset);
  });

  document.addEventListener("input", (event) => {
    // Typing an "other" reason chooses "other".
    const panel = panelOf(event.target);
    if (panel && event.target.type === "text") {
      const other = $("input[type=radio][value=other]", panel);
      if (other) other.checked = true;
      updateFlagState();
    }
  });
  document.addEventListener("change", (event) => {
    if (event.target && event.target.name === "flag_choice") updateFlagState();
    if (dimOf(event.target)) {
      showMissing();
      saveDraft();
    }
  });
  document.addEventListener("input", (event) => {
    if (event.target && event.target.id === "grade-comment") saveDraft();
  });

  document.addEventListener("click", (event) => {
    const action = event.target.closest && event.target.closest("[data-action]");
    if (!action) return;
    if (action.dataset.action === "help") document.getElementById("keys-help").showModal();
    if (action.dataset.action === "retry") retry();
  });

  document.addEventListener("htmx:beforeRequest", () => {
    busy = true;
    document.body.classList.add("is-busy");
  });
  document.addEventListener("htmx:afterRequest", () => {
    busy = false;
    document.body.classList.remove("is-busy");
  });
  // The request never reached the server, or the server failed: nothing was swapped, so the
  // form still holds every answer and its client key; a retry cannot count twice.
  document.addEventListener("htmx:sendError", (event) => {
    typed = []; // the item did not change: nothing to replay them on
    failedForm = event.detail.elt;
    showBanner("the server could not be reached");
    say(""); // the banner is an alert; saying it twice is noise
  });
  document.addEventListener("htmx:responseError", (event) => {
    typed = [];
    failedForm = event.detail.elt;
    const code = event.detail.xhr ? event.detail.xhr.status : "?";
    showBanner("the server answered with an error (" + code + ")");
    say("");
  });
  // Fired on each element a swap inserted; the new #item is one of them.
  document.addEventListener("htmx:afterSwap", (event) => {
    if (event.target && event.target.id === "item") {
      // The request that brought this item is over (htmx:afterRequest comes later): the
      // keys typed ahead replay on the new item, not back into the queue.
      busy = false;
      document.body.classList.remove("is-busy");
      itemShown();
    }
  });

  pruneDrafts();
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", itemShown);
  } else {
    itemShown();
  }
})();
