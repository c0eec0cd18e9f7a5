// cpqs-bench leaderboard page: vanilla JS, no network. Data: the JSON in #board-data (see leaderboard_page.py).
// State (sort, filters, open drawer) lives in the URL fragment: #sort=<domain>:<column>:<asc|desc>&model=..&budget=..
// &selector=..&open=<arm>, so a view can be linked and the browser test can drive the page.
"use strict";
(function () {
  var D = JSON.parse(document.getElementById("board-data").textContent);
  var app = document.getElementById("app");
  var drawer = document.getElementById("drawer");
  // the pairwise-judge section is static HTML drawn by leaderboard_page.py inside #app; kept across renders
  var pairwise = document.getElementById("pairwise");
  var FILTERS = ["model", "budget", "selector"];
  var state = { sort: null, model: "", budget: "", selector: "", open: "" };

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") e.textContent = attrs[k];
      else if (k === "cls") e.className = attrs[k];
      else e.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) e.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return e;
  }
  // One decimal exactly as Python's format() does it (the Markdown leaderboard's numbers): correctly rounded, and
  // exact ties to even. toFixed breaks ties upwards; a one-decimal tie is exactly representable only as k/4 (odd k).
  function fix1(v) {
    var a = Math.abs(v), q = 4 * a;
    if (Number.isInteger(q) && q % 2 === 1) {
      var n = Math.floor(a * 10);
      if (n % 2 === 1) n += 1;
      return (v < 0 ? "-" : "") + (n / 10).toFixed(1);
    }
    return v.toFixed(1);
  }
  function pct(x) { return x === null || x === undefined ? "—" : fix1(100 * x); }
  function pp(x) { return x === null || x === undefined ? "—" : (x > 0 ? "+" : x < 0 ? "−" : "±") + fix1(Math.abs(100 * x)); }
  // Each task in its metric's unit (D.tasks[].unit / unit_label, from the task YAML via the leaderboard JSON): "pct"
  // metrics in % and percentage points, the others (NLL per byte, ...) in their own unit with four decimals.
  function meta(t) { return (D.tasks.filter(function (x) { return x.name === t; })[0]) || {}; }
  function isPct(t) { var u = meta(t).unit; return u === undefined || u === "pct"; }
  function val(t, x) { return isPct(t) ? pct(x) : (x === null || x === undefined ? "—" : x.toFixed(4)); }
  function dlt(t, x) {
    if (isPct(t)) return pp(x);
    return x === null || x === undefined ? "—" : (x > 0 ? "+" : x < 0 ? "−" : "±") + Math.abs(x).toFixed(4);
  }
  function unitOf(t) { return isPct(t) ? "%" : (meta(t).unit_label || meta(t).metric || "value"); }
  function dunitOf(t) { return isPct(t) ? "pp" : unitOf(t); }
  function pval(p) { return p === null || p === undefined ? "—" : (p >= 0.001 ? p.toFixed(3) : p.toExponential(1)); }
  function short(v) {
    if (v === null || v === undefined || v === "") return "missing";
    if (Array.isArray(v)) return v.map(short).join(", ");
    if (typeof v === "object") return Object.keys(v).sort().map(function (k) { return k + "=" + short(v[k]); }).join(", ");
    return String(v);
  }
  function slug(s) { return String(s).replace(/[^A-Za-z0-9_-]+/g, "-"); }
  var ref0 = D.references.length ? D.references[0] : null;

  // ------------------------------------------------------------------------------------------------ state <-> URL
  function readHash() {
    var h = (location.hash || "").replace(/^#/, "");
    h.split("&").forEach(function (kv) {
      if (!kv) return;
      var i = kv.indexOf("="), k = decodeURIComponent(i < 0 ? kv : kv.slice(0, i)), v = i < 0 ? "" : decodeURIComponent(kv.slice(i + 1));
      if (k === "sort") {
        var parts = v.split(":");
        if (parts.length >= 3) state.sort = { domain: parts[0], col: parts.slice(1, -1).join(":"), dir: parts[parts.length - 1] === "asc" ? "asc" : "desc" };
      } else if (k in state) state[k] = v;
    });
  }
  function writeHash() {
    var parts = [];
    if (state.sort) parts.push("sort=" + encodeURIComponent(state.sort.domain + ":" + state.sort.col + ":" + state.sort.dir));
    FILTERS.concat(["open"]).forEach(function (k) { if (state[k]) parts.push(k + "=" + encodeURIComponent(state[k])); });
    var h = parts.join("&");
    if (("#" + h) !== location.hash && !(h === "" && location.hash === "")) history.replaceState(null, "", h ? "#" + h : location.pathname);
  }

  // ------------------------------------------------------------------------------------------------ values
  function cell(task, arm) { return (D.cells[task] || {})[arm] || null; }
  function delta(task, arm) {
    var c = cell(task, arm);
    return c && ref0 && c.vs && c.vs[ref0] ? c.vs[ref0] : null;
  }
  function sortValue(domain, arm, col) {
    var a = D.arms[arm] || {};
    if (col === "arm" || col === "model" || col === "selector") return a[col] || arm;
    if (col === "budget") { var b = parseFloat(a.budget); return isNaN(b) ? (a.budget === "all" ? Infinity : -Infinity) : b; }
    var i = col.indexOf(":"), kind = col.slice(0, i), task = col.slice(i + 1);
    if (kind === "mean") { var c = cell(task, arm); return c ? c.mean : null; }
    if (kind === "delta") { var d = delta(task, arm); return d ? d.mean_diff : null; }
    return null;
  }
  function armsOf(domain) {
    return (D.arm_order || Object.keys(D.arms)).filter(function (arm) {  // the leaderboard's order until sorted
      return domain.tasks.some(function (t) { return cell(t, arm); });
    });
  }
  function visible(arm) {
    var a = D.arms[arm] || {};
    return FILTERS.every(function (k) { return !state[k] || String(a[k]) === state[k]; });
  }

  // ------------------------------------------------------------------------------------------------ rendering
  function ciBar(c, scale) {
    var bar = el("span", { cls: "bar", "aria-hidden": "true" });
    if (!c || c.mean === null) return bar;
    var lo = c.ci_low === null ? c.mean : c.ci_low, hi = c.ci_high === null ? c.mean : c.ci_high;
    var w = el("span", { cls: "whisker" });
    w.style.left = (100 * lo / scale) + "%";
    w.style.width = Math.max(0.5, 100 * (hi - lo) / scale) + "%";
    var dot = el("span", { cls: "dot" });
    dot.style.left = (100 * c.mean / scale) + "%";
    bar.appendChild(w); bar.appendChild(dot);
    return bar;
  }
  function header(domain, col, label, title) {
    var th = el("th", { "data-col": col, scope: "col", title: title || "" });
    var b = el("button", { type: "button", cls: "sort", text: label });
    var s = state.sort;
    if (s && s.domain === domain.name && s.col === col) th.setAttribute("aria-sort", s.dir === "asc" ? "ascending" : "descending");
    b.addEventListener("click", function () {
      var cur = state.sort;
      var dir = cur && cur.domain === domain.name && cur.col === col && cur.dir === "desc" ? "asc" : "desc";
      if (col === "arm" || col === "model" || col === "selector") dir = cur && cur.domain === domain.name && cur.col === col && cur.dir === "asc" ? "desc" : "asc";
      state.sort = { domain: domain.name, col: col, dir: dir };
      render();
    });
    th.appendChild(b);
    return th;
  }
  function renderDomain(domain) {
    var sec = el("section", { cls: "domain", id: "domain-" + slug(domain.name) });
    sec.appendChild(el("h2", { text: "Domain: " + domain.name }));
    var table = el("table", { cls: "board", "data-domain": domain.name });
    var head = el("tr");
    head.appendChild(header(domain, "arm", "arm", "the arm: which selector picked the fine-tuning data"));
    head.appendChild(header(domain, "model", "model"));
    head.appendChild(header(domain, "budget", "budget k", "examples the selector was asked to keep"));
    var scales = {};
    domain.tasks.forEach(function (t) {
      var m = 0;
      Object.keys(D.cells[t] || {}).forEach(function (a) { var c = D.cells[t][a]; m = Math.max(m, c.ci_high || 0, c.mean || 0); });
      scales[t] = m > 0 ? (isPct(t) ? Math.min(1, m * 1.1) : m * 1.1) : 1;
      var mt = meta(t), dir = mt.higher_is_better === false ? "lower is better" : "higher is better";
      head.appendChild(header(domain, "mean:" + t, t + " (" + unitOf(t) + ")", (mt.metric || "score") + " in " + unitOf(t) + ", " + dir +
        (mt.proxy ? ", proxy" : "") + "; mean over seeds; bar: " + Math.round(100 * (D.ci_level || 0.95)) + "% item-bootstrap CI, axis 0–" + val(t, scales[t])));
      if (ref0) head.appendChild(header(domain, "delta:" + t, "Δ vs " + ref0 + " (" + dunitOf(t) + ")", "paired difference to the reference arm " + ref0 + " with its CI and p-value; " + dir));
    });
    table.appendChild(el("thead", {}, [head]));
    var arms = armsOf(domain);
    var s = state.sort;
    if (s && s.domain === domain.name) {
      arms.sort(function (x, y) {
        var a = sortValue(domain, x, s.col), b = sortValue(domain, y, s.col);
        if (a === null && b === null) return 0;
        if (a === null) return 1;
        if (b === null) return -1;
        var r = typeof a === "string" ? a.localeCompare(b) : a - b;
        return s.dir === "asc" ? r : -r;
      });
    }
    var body = el("tbody");
    arms.forEach(function (arm) {
      var a = D.arms[arm] || {};
      var tr = el("tr", { "data-arm": arm, "data-model": a.model, "data-budget": a.budget, "data-selector": a.selector, tabindex: "0" });
      if (!visible(arm)) tr.hidden = true;
      tr.appendChild(el("th", { scope: "row", cls: "arm", "data-col": "arm", text: arm }));
      tr.appendChild(el("td", { cls: "txt", "data-col": "model", text: a.model }));
      tr.appendChild(el("td", { "data-col": "budget", text: a.budget + (a.kept && a.kept.length && String(a.kept.join("/")) !== String(a.budget) ? " (kept " + a.kept.join("/") + ")" : "") }));
      domain.tasks.forEach(function (t) {
        var c = cell(t, arm);
        var td = el("td", { cls: "score", "data-col": "mean:" + t, "data-task": t });
        if (c && c.mean !== null) {
          td.setAttribute("data-value", String(c.mean));
          td.appendChild(el("span", { cls: "num", text: val(t, c.mean) }));
          if (c.std !== null) td.appendChild(el("span", { cls: "std", text: " ±" + val(t, c.std) }));
          td.appendChild(ciBar(c, scales[t]));
          td.title = "CI " + val(t, c.ci_low) + "–" + val(t, c.ci_high) + " " + unitOf(t) + ", " + c.n_items + " items, " + c.n_seeds + " seed(s)";
        } else td.appendChild(el("span", { cls: "num", text: "—" }));
        tr.appendChild(td);
        if (ref0) {
          var d = delta(t, arm);
          var dd = el("td", { cls: "delta", "data-col": "delta:" + t, "data-task": t });
          if (arm === ref0) dd.appendChild(el("span", { cls: "ref", text: "reference" }));
          else if (d && d.mean_diff !== null) {
            dd.setAttribute("data-value", String(d.mean_diff));
            // the judgement comes from the leaderboard (stats.better_or_worse in the metric's direction), never the sign
            var sig = d.judgement === "better" ? " up" : d.judgement === "worse" ? " down" : "";
            dd.appendChild(el("span", { cls: "num" + sig, text: dlt(t, d.mean_diff) + (d.judgement === "better" ? " ▲" : d.judgement === "worse" ? " ▼" : "") }));
            dd.appendChild(el("span", { cls: "ci", text: " [" + dlt(t, d.ci_low) + ", " + dlt(t, d.ci_high) + "]" }));
            dd.title = "p = " + pval(d.p_value) + " (" + (d.p_method || "?") + "), " + (d.label || "");
          } else dd.appendChild(el("span", { cls: "num", text: "—" }));
          tr.appendChild(dd);
        }
      });
      tr.addEventListener("click", function () { state.open = arm; render(); });
      tr.addEventListener("keydown", function (e) { if (e.key === "Enter") { state.open = arm; render(); } });
      body.appendChild(tr);
    });
    table.appendChild(body);
    sec.appendChild(el("div", { cls: "scroll" }, [table]));
    return sec;
  }
  function renderFilters() {
    var box = el("form", { id: "filters", cls: "filters" });
    FILTERS.forEach(function (k) {
      var values = {};
      Object.keys(D.arms).forEach(function (a) { values[String(D.arms[a][k])] = 1; });
      var sel = el("select", { id: "filter-" + k, name: k });
      sel.appendChild(el("option", { value: "", text: "all" }));
      Object.keys(values).sort().forEach(function (v) {
        var o = el("option", { value: v, text: v });
        if (state[k] === v) o.selected = true;
        sel.appendChild(o);
      });
      sel.addEventListener("change", function () { state[k] = sel.value; render(); });
      box.appendChild(el("label", {}, [k + " ", sel]));
    });
    var reset = el("button", { type: "button", id: "filter-reset", text: "reset" });
    reset.addEventListener("click", function () { FILTERS.forEach(function (k) { state[k] = ""; }); state.sort = null; render(); });
    box.appendChild(reset);
    var n = Object.keys(D.arms).filter(visible).length;
    box.appendChild(el("span", { id: "shown", text: n + " of " + Object.keys(D.arms).length + " arms shown" }));
    return box;
  }
  function renderCaveats() {
    var box = el("section", { id: "caveats", cls: "caveats" });
    box.appendChild(el("h2", { text: "What this can and cannot show" }));
    var ul = el("ul");
    D.tasks.forEach(function (t) {
      var ns = Object.keys(D.cells[t.name] || {}).map(function (a) { return D.cells[t.name][a].n_items; }).filter(function (x) { return x; });
      var n = ns.length ? Math.max.apply(null, ns) : 0;
      ul.appendChild(el("li", { text: t.name + " (" + (t.dataset_id || "dataset not named") + ", " + (t.metric || "score") + " in " + unitOf(t.name) +
        (t.higher_is_better === false ? ", lower is better" : ", higher is better") + (t.proxy ? ", proxy" : "") + "): " + n + " items." }));
    });
    var lines = (D.static && D.static.power_lines) || [];
    lines.forEach(function (line) { ul.appendChild(el("li", { cls: "power", text: "Power: " + line })); });
    ul.appendChild(el("li", { text: "It can show which selector's data gave the better fine-tuned model on these items, for this base model, pool and budget, with paired tests against the reference arms (" + (D.references.join(", ") || "none") + ")." }));
    ul.appendChild(el("li", { text: "It cannot show that a ranking transfers to other base models, pools, budgets or benchmarks; that an arm without a significant difference is equal to its reference (absence of evidence); or anything about differences below the resolution above." }));
    box.appendChild(ul);
    if (D.warnings.length) {
      box.appendChild(el("h3", { text: "Warnings" }));
      box.appendChild(el("ul", { cls: "warn" }, D.warnings.map(function (w) { return el("li", { text: w }); })));
    }
    return box;
  }
  function kvTable(obj) {
    var t = el("table", { cls: "kv" });
    Object.keys(obj).forEach(function (k) { t.appendChild(el("tr", {}, [el("th", { text: k }), el("td", { text: short(obj[k]) })])); });
    return t;
  }
  function renderDrawer() {
    var arm = state.open;
    drawer.textContent = "";
    if (!arm || !D.arms[arm]) { drawer.hidden = true; return; }
    drawer.hidden = false;
    var a = D.arms[arm];
    var close = el("button", { type: "button", id: "drawer-close", text: "close ×" });
    close.addEventListener("click", function () { state.open = ""; render(); });
    drawer.appendChild(close);
    drawer.appendChild(el("h2", { text: "Arm " + arm }));
    drawer.appendChild(kvTable({ selector: a.selector, model: a.model, "budget k": a.budget, kept: a.kept.join(", ") || "missing", seeds: a.seeds.join(", ") || "none" }));
    drawer.appendChild(el("h3", { text: "Results" }));
    D.tasks.forEach(function (t) {
      var c = cell(t.name, arm);
      if (!c) return;
      var div = el("div", { cls: "task", "data-task": t.name });
      div.appendChild(el("h4", { text: t.name + ": " + val(t.name, c.mean) + " " + unitOf(t.name) + (c.std !== null ? " ± " + val(t.name, c.std) : "") }));
      div.appendChild(el("p", { text: "per seed: " + (c.per_seed.map(function (s) { return "seed " + s.seed + " = " + val(t.name, s.score); }).join(", ") || "—") +
        "; item CI " + val(t.name, c.ci_low) + "–" + val(t.name, c.ci_high) + " " + unitOf(t.name) + " over " + c.n_items + " items" }));
      var vs = el("ul");
      Object.keys(c.vs || {}).forEach(function (r) {
        var d = c.vs[r];
        vs.appendChild(el("li", { text: "vs " + r + ": " + (d ? dlt(t.name, d.mean_diff) + " " + dunitOf(t.name) + " [" + dlt(t.name, d.ci_low) + ", " + dlt(t.name, d.ci_high) + "], p = " + pval(d.p_value) + " (" + (d.p_method || "?") + "), " + (d.label || "") + ", " + d.n_paired + " paired items" : "reference") }));
      });
      div.appendChild(vs);
      var items = D.items[arm] || {};
      Object.keys(items).sort().forEach(function (seed) {
        var rows = (items[seed] || {})[t.name];
        if (!rows || !rows.length) return;
        var grid = el("div", { cls: "items", title: "per-item outcomes, seed " + seed });
        grid.appendChild(el("span", { cls: "lbl", text: "items, seed " + seed + ": " }));
        rows.forEach(function (r) {
          var s = r[1];
          grid.appendChild(el("span", { cls: "item " + (s === null ? "na" : s >= 1 ? "ok" : s <= 0 ? "no" : "part"), title: "doc " + r[0] + ": " + (s === null ? "no score" : s), text: String(r[0]) }));
        });
        div.appendChild(grid);
      });
      drawer.appendChild(div);
    });
    drawer.appendChild(el("h3", { text: "Provenance" }));
    var rows = D.provenance.filter(function (p) { return p.arm === arm; });
    if (!rows.length) drawer.appendChild(el("p", { text: "no provenance recorded for this arm" }));
    rows.forEach(function (p) {
      drawer.appendChild(el("h4", { text: "seed " + (p.seed === null || p.seed === undefined ? "—" : p.seed) }));
      var shown = {};
      Object.keys(p).forEach(function (k) { if (k !== "arm") shown[k] = p[k]; });
      drawer.appendChild(kvTable(shown));
    });
  }
  function render() {
    app.textContent = "";
    app.appendChild(renderFilters());
    D.domains.forEach(function (d) { app.appendChild(renderDomain(d)); });
    if (pairwise) app.appendChild(pairwise);
    app.appendChild(renderCaveats());
    app.appendChild(el("p", { cls: "foot", text: "Each task in its metric's unit (% and percentage points for accuracy; proxies such as NLL per byte in their own unit); no mean is taken across metrics. Click a row for its provenance and per-item results; click a column header to sort. Data: " + D.experiment + ".json (" + (D.source_schema || "?") + ")." }));
    renderDrawer();
    writeHash();
    // where the summary ends on screen (the browser test checks it is above the fold)
    var summary = document.getElementById("summary");
    if (summary) document.body.setAttribute("data-summary-bottom", String(Math.round(summary.getBoundingClientRect().bottom + window.scrollY)));
    document.body.setAttribute("data-viewport-height", String(window.innerHeight));
    document.body.setAttribute("data-ready", "1");
  }
  document.addEventListener("keydown", function (e) { if (e.key === "Escape" && state.open) { state.open = ""; render(); } });
  window.addEventListener("hashchange", function () { state = { sort: null, model: "", budget: "", selector: "", open: "" }; readHash(); render(); });
  readHash();
  render();
})();
