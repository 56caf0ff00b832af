// The local collector's inspector: reads the collector's JSON read API (/_collector/page,
// /_collector/item, /_collector/counts) and shows what arrived. Plain DOM, no dependencies;
// every value from the store is set as text, never as markup.
"use strict";

(function () {
  const PAGE = 100; // rows on screen at most: a window, not the whole store
  const POLL_MS = 1000;
  const COUNTS_MS = 2000;
  const MASKED = /<masked(:[0-9a-f]+)?>/;

  const COLUMNS = {
    events: [
      ["id", "id", "num"],
      ["time", "time"],
      ["method", "method"],
      ["path", "path", "path"],
      ["status", "status", "num"],
      ["user", "user_id"],
      ["company", "company_id"],
      ["ms", "duration_ms", "num"],
      ["req B", "request_size", "num"],
      ["resp B", "response_size", "num"],
      ["blocked_by", "blocked_by"],
      ["weight", "weight", "num"],
      ["direction", "direction"],
      ["app", "app_id"],
    ],
    other: [
      ["id", "id", "num"],
      ["received", "received_at"],
      ["key", "key"],
      ["user", "user_id"],
      ["company", "company_id"],
      ["time", "time"],
      ["app", "app_id"],
    ],
  };

  const state = {
    tab: "events",
    rows: [],
    total: 0,
    beforeStack: [], // the "before" ids of the pages left behind by "older"
    before: null, // null: the newest page, which live mode keeps up to date
    selected: null,
    loading: false, // a page is being loaded: live polls wait for it
    seq: 0, // answers to an older request than the latest are dropped
  };

  const $ = (id) => document.getElementById(id);

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  async function getJSON(url) {
    const answer = await fetch(url, { headers: { Accept: "application/json" } });
    if (!answer.ok) throw new Error(url + ": " + answer.status);
    return answer.json();
  }

  function setStatus(text, down) {
    const status = $("status");
    status.textContent = text;
    status.classList.toggle("down", Boolean(down));
  }

  // -- the list --------------------------------------------------------------------------

  function filterParams() {
    const params = new URLSearchParams();
    params.set("kind", state.tab);
    const names = state.tab === "events"
      ? ["status", "user", "path", "direction", "app", "q"]
      : ["app", "q"];
    for (const name of names) {
      const value = $("f-" + name).value.trim();
      if (value) params.set(name, value);
    }
    return params;
  }

  function shortTime(row) {
    const text = state.tab === "events" ? row.time || row.received_at : row.received_at;
    if (!text) return "";
    const stamp = new Date(text.endsWith("Z") ? text : text + "Z");
    if (isNaN(stamp.getTime())) return text;
    return stamp.toLocaleTimeString([], { hour12: false }) +
      "." + String(stamp.getMilliseconds()).padStart(3, "0");
  }

  function cell(row, key) {
    if (key === "time" && state.tab === "events") return shortTime(row);
    if (key === "received_at") return shortTime(row);
    const value = row[key];
    return value === null || value === undefined ? "" : value;
  }

  function renderHead() {
    const head = $("rows").querySelector("thead tr");
    head.replaceChildren();
    for (const [label] of columns()) head.appendChild(el("th", label));
  }

  function columns() {
    return state.tab === "events" ? COLUMNS.events : COLUMNS.other;
  }

  function rowElement(row, fresh) {
    const tr = el("tr");
    tr.dataset.id = row.id;
    if (fresh) tr.classList.add("fresh");
    if (row.id === state.selected) tr.classList.add("selected");
    for (const [, key, cls] of columns()) {
      const td = el("td", cell(row, key), cls);
      if (key === "status" && typeof row.status === "number") {
        td.classList.add("s" + String(row.status)[0]);
      }
      if (key === "blocked_by" && row.blocked_by) td.classList.add("blocked");
      if (key === "path") td.title = row.uri || "";
      td.dataset.col = key;
      tr.appendChild(td);
    }
    tr.addEventListener("click", () => openItem(row.id));
    return tr;
  }

  function renderRows(freshIds) {
    const body = $("rows").querySelector("tbody");
    const fresh = freshIds || new Set();
    body.replaceChildren(...state.rows.map((row) => rowElement(row, fresh.has(row.id))));
    $("empty").hidden = state.rows.length > 0;
    const first = state.beforeStack.length * PAGE;
    $("range").textContent = state.rows.length
      ? `${first + 1}–${first + state.rows.length} of ${state.total} (newest first)`
      : `0 of ${state.total}`;
    $("newer").disabled = state.before === null;
    $("newest").disabled = state.before === null;
    $("older").disabled = first + state.rows.length >= state.total;
  }

  async function loadPage() {
    const seq = ++state.seq;
    state.loading = true;
    const params = filterParams();
    params.set("limit", PAGE);
    if (state.before !== null) params.set("before", state.before);
    try {
      const page = await getJSON("/_collector/page?" + params);
      if (seq !== state.seq) return;
      state.rows = page.items;
      state.total = page.total;
      renderRows();
    } catch (error) {
      setStatus("collector unreachable", true);
    } finally {
      if (seq === state.seq) state.loading = false;
    }
  }

  // Live mode, on the newest page only: asks for what arrived after the newest row shown.
  async function poll() {
    if (!$("live").checked || state.before !== null || state.tab === "counters") return;
    if (state.loading) return; // the page being loaded will be the base of the next poll
    const seq = state.seq;
    const params = filterParams();
    params.set("limit", PAGE);
    const newest = state.rows.length ? state.rows[0].id : 0;
    params.set("after", newest);
    try {
      const page = await getJSON("/_collector/page?" + params);
      if (seq !== state.seq || state.loading) return;
      // Only what is newer than the rows shown now (another poll may have added some).
      const shown = state.rows.length ? state.rows[0].id : 0;
      page.items = page.items.filter((row) => row.id > shown);
      if (!page.items.length) {
        // Nothing new: leave the rows alone (a click or a selection is not interrupted).
        if (page.total !== state.total) { state.total = page.total; renderRows(); }
        return;
      }
      state.total = page.total;
      if (page.items.length >= PAGE) {
        state.rows = page.items; // more arrived than a page holds: show the newest page
      } else {
        state.rows = page.items.concat(state.rows).slice(0, PAGE);
      }
      renderRows(new Set(page.items.map((row) => row.id)));
    } catch (error) {
      setStatus("collector unreachable", true);
    }
  }

  function resetPaging() {
    state.before = null;
    state.beforeStack = [];
    state.rows = [];
    loadPage();
  }

  // -- one item --------------------------------------------------------------------------

  function renderValue(value, path, masked, indent) {
    const pad = "  ".repeat(indent);
    const frag = document.createDocumentFragment();
    if (Array.isArray(value)) {
      if (!value.length) { frag.append("[]"); return frag; }
      frag.append("[\n");
      value.forEach((item, index) => {
        frag.append(pad + "  ");
        frag.appendChild(renderValue(item, path.concat(index), masked, indent + 1));
        frag.append(index < value.length - 1 ? ",\n" : "\n");
      });
      frag.append(pad + "]");
      return frag;
    }
    if (value !== null && typeof value === "object") {
      const keys = Object.keys(value);
      if (!keys.length) { frag.append("{}"); return frag; }
      frag.append("{\n");
      keys.forEach((key, index) => {
        frag.append(pad + "  ");
        frag.appendChild(el("span", JSON.stringify(key), "j-key"));
        frag.append(": ");
        frag.appendChild(renderValue(value[key], path.concat(key), masked, indent + 1));
        frag.append(index < keys.length - 1 ? ",\n" : "\n");
      });
      frag.append(pad + "}");
      return frag;
    }
    if (typeof value === "string") {
      if (MASKED.test(value)) {
        masked.push(path.join("."));
        const mark = el("mark", JSON.stringify(value), "masked");
        mark.dataset.path = path.join(".");
        frag.appendChild(mark);
      } else {
        frag.appendChild(el("span", JSON.stringify(value), "j-str"));
      }
      return frag;
    }
    const cls = typeof value === "number" ? "j-num" : "j-lit";
    frag.appendChild(el("span", JSON.stringify(value), cls));
    return frag;
  }

  async function openItem(id) {
    state.selected = id;
    for (const tr of $("rows").querySelectorAll("tbody tr")) {
      tr.classList.toggle("selected", Number(tr.dataset.id) === id);
    }
    try {
      const answer = await getJSON(`/_collector/item?kind=${state.tab}&id=${id}`);
      const masked = [];
      const tree = renderValue(answer.item, [], masked, 0);
      $("detail").replaceChildren(tree);
      $("detail-title").textContent =
        `${state.tab.replace(/s$/, "").replace(/ie$/, "y")} ${answer.id} · app ${answer.app_id} · received ${answer.received_at}`;
      $("masked-summary").textContent = masked.length
        ? `Masked before it left the app: ${masked.join(", ")}`
        : "No masked fields.";
      $("detail-pane").hidden = false;
    } catch (error) {
      setStatus("collector unreachable", true);
    }
  }

  // -- counters --------------------------------------------------------------------------

  function fillTable(id, rows) {
    const body = $(id).querySelector("tbody");
    body.replaceChildren(...rows.map((cells) => {
      const tr = el("tr");
      cells.forEach((value, index) => tr.appendChild(el("td", value, index ? "num" : "")));
      return tr;
    }));
  }

  async function loadCounts() {
    try {
      const counts = await getJSON("/_collector/counts");
      setStatus(`${counts.events} events stored` + ($("live").checked ? " · live" : ""));
      for (const button of document.querySelectorAll("#tabs button")) {
        const kind = button.dataset.tab;
        if (!(kind in counts) || typeof counts[kind] !== "number") continue;
        let badge = button.querySelector(".count");
        if (!badge) { badge = el("span", "", "count"); button.appendChild(badge); }
        badge.textContent = counts[kind];
      }
      fillTable("endpoint-counts", Object.entries(counts.requests).map(([path, n]) => [path, n]));
      const apps = Object.entries(counts.applications || {});
      fillTable("app-counts", apps.map(([app, by]) => [
        app, by.events, by.users, by.companies, by.subscriptions, by.actions,
      ]));
      const select = $("f-app");
      const known = new Set(Array.from(select.options).map((option) => option.value));
      for (const [app] of apps) {
        if (!known.has(app)) select.appendChild(new Option(app, app));
      }
    } catch (error) {
      setStatus("collector unreachable", true);
    }
  }

  // -- wiring ----------------------------------------------------------------------------

  function showTab(tab) {
    state.tab = tab;
    state.selected = null;
    for (const button of document.querySelectorAll("#tabs button")) {
      button.setAttribute("aria-selected", String(button.dataset.tab === tab));
    }
    $("counters-view").hidden = tab !== "counters";
    $("list-view").hidden = tab === "counters";
    $("detail-pane").hidden = true;
    for (const label of document.querySelectorAll("#filters label[data-for]")) {
      label.hidden = label.dataset.for !== tab;
    }
    if (tab === "counters") { loadCounts(); return; }
    renderHead();
    resetPaging();
  }

  function debounce(fn, ms) {
    let timer = null;
    return () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const button of document.querySelectorAll("#tabs button")) {
      button.addEventListener("click", () => showTab(button.dataset.tab));
    }
    const refilter = debounce(resetPaging, 200);
    $("filters").addEventListener("input", refilter);
    $("filters").addEventListener("change", refilter);
    $("filters").addEventListener("submit", (event) => { event.preventDefault(); resetPaging(); });
    $("filters").addEventListener("reset", () => setTimeout(resetPaging, 0));
    $("older").addEventListener("click", () => {
      if (!state.rows.length) return;
      state.beforeStack.push(state.before);
      state.before = state.rows[state.rows.length - 1].id;
      loadPage();
    });
    $("newer").addEventListener("click", () => {
      state.before = state.beforeStack.length ? state.beforeStack.pop() : null;
      loadPage();
    });
    $("newest").addEventListener("click", resetPaging);
    $("detail-close").addEventListener("click", () => {
      $("detail-pane").hidden = true;
      state.selected = null;
      for (const tr of $("rows").querySelectorAll("tr.selected")) tr.classList.remove("selected");
    });
    $("live").addEventListener("change", loadCounts);
    showTab("events");
    loadCounts();
    setInterval(poll, POLL_MS);
    setInterval(loadCounts, COUNTS_MS);
  });
})();
