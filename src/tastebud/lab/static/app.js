/* tastebud lab: plain JavaScript and SVG, no libraries, nothing fetched but this app's own API. */
"use strict";
(() => {
  // ------------------------------------------------------------------ helpers
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  const SVGNS = "http://www.w3.org/2000/svg";

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
    return node;
  }
  function svg(tag, attrs = {}, ...children) {
    const node = document.createElementNS(SVGNS, tag);
    setAttrs(node, attrs);
    for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
    return node;
  }
  function setAttrs(node, attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
  }
  const fmt = (x, d = 2) => (x === null || x === undefined || Number.isNaN(x) ? "–" : Number(x).toFixed(d));
  // a list's scores by what they are: whole counts, ratings on a scale, or unitless scores
  const SCORE_FORMAT = {
    count: [(x) => Math.round(x).toLocaleString("en"), "number of interactions"],
    rating: [(x) => Number(x).toFixed(2), "predicted rating"],
    similarity: [(x) => Number(x).toFixed(3), "similarity"],
    score: [(x) => Number(x).toPrecision(3), "score"],
  };
  const fmtScore = (x, kind) => (x === null || x === undefined ? "–" : (SCORE_FORMAT[kind] || SCORE_FORMAT.score)[0](x));
  const signed = (x, d = 2) => (x < 0 ? "− " + Math.abs(x).toFixed(d) : "+ " + Number(x).toFixed(d));

  async function api(path, body) {
    const opts = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
    const res = await fetch(path, opts);
    let data = null;
    try { data = await res.json(); } catch (e) { data = null; }
    if (!res.ok) throw new Error(data && data.error ? data.error : res.status + " " + res.statusText);
    return data;
  }
  function showError(err) {
    const box = $("#alert");
    box.textContent = String(err && err.message ? err.message : err);
    box.hidden = false;
    clearTimeout(showError.t);
    showError.t = setTimeout(() => { box.hidden = true; }, 8000);
  }
  function qs(params) {
    const u = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
      if (Array.isArray(v)) v.forEach((x) => u.append(k, x));
      else if (v !== undefined && v !== null) u.append(k, v);
    }
    return u.toString();
  }

  // colours: Okabe-Ito first (colour-blind safe), then a few more distinct ones
  const PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#8C564B", "#6A3D9A", "#B15928",
    "#1B9E77", "#7F7F7F", "#E31A1C", "#33A02C", "#A6761D", "#1F78B4", "#FF7F00", "#984EA3", "#4D4D4D", "#66A61E", "#E7298A", "#7570B3"];
  const modelColour = {};
  function colourOf(name) {
    if (!(name in modelColour)) modelColour[name] = PALETTE[Object.keys(modelColour).length % PALETTE.length];
    return modelColour[name];
  }
  function mix(hex, t) { // white -> hex, t in [0, 1]
    const n = parseInt(hex.slice(1), 16);
    const r = (n >> 16) & 255, g = (n >> 8) & 255, b = n & 255;
    const c = (x) => Math.round(255 + (x - 255) * t);
    return `rgb(${c(r)}, ${c(g)}, ${c(b)})`;
  }

  // ------------------------------------------------------------------ tabs
  const tabs = $$('[role="tab"]');
  const onShow = {};
  function activate(tab, focus = false) {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute("aria-selected", on ? "true" : "false");
      t.tabIndex = on ? 0 : -1;
      $("#" + t.getAttribute("aria-controls")).hidden = !on;
    }
    if (focus) tab.focus();
    const name = tab.id.replace("tab-", "");
    if (location.hash !== "#" + name) history.replaceState(null, "", "#" + name);
    if (onShow[name]) onShow[name]();
  }
  tabs.forEach((t, i) => {
    t.addEventListener("click", () => activate(t));
    t.addEventListener("keydown", (e) => {
      let j = null;
      if (e.key === "ArrowRight") j = (i + 1) % tabs.length;
      else if (e.key === "ArrowLeft") j = (i - 1 + tabs.length) % tabs.length;
      else if (e.key === "Home") j = 0;
      else if (e.key === "End") j = tabs.length - 1;
      if (j !== null) { e.preventDefault(); activate(tabs[j], true); }
    });
  });

  // ================================================================== matrix lab
  const mx = { users: [], items: [], seed: null, ratings: [], fit: null, view: "observed", inflight: false, dirty: false, version: 0, hover: null, edits: 0,
    model: "mf", blend: null, blendSeq: 0 };

  function mxInit() {
    // the server rendered the grid and inlined the seed: the script only adds behaviour to the cells
    const seed = JSON.parse($("#mx-seed").textContent);
    mx.seed = seed;
    mx.users = seed.users;
    mx.items = seed.items;
    mx.ratings = seed.ratings.map((r) => r.slice());
    for (const input of $$("#mx-grid tbody input")) {
      const u = Number(input.dataset.u), i = Number(input.dataset.i);
      input.addEventListener("input", () => mxEdit(u, i, input));
      input.addEventListener("keydown", (e) => mxKey(e, u, i));
      input.addEventListener("focus", () => mxHover(u, i));
      input.addEventListener("mouseenter", () => mxHover(u, i));
    }
    $("#mx-grid").addEventListener("mouseleave", () => mxHover(null, null));
    mxRender(true);
    mxRequestFit();
  }

  function mxKey(e, u, i) {
    let nu = u, ni = i;
    if (e.key === "ArrowUp") nu = Math.max(0, u - 1);
    else if (e.key === "ArrowDown" || e.key === "Enter") nu = Math.min(mx.users.length - 1, u + 1);
    else if (e.key === "ArrowLeft" && e.target.selectionStart === 0) ni = Math.max(0, i - 1);
    else if (e.key === "ArrowRight" && e.target.selectionEnd === e.target.value.length) ni = Math.min(mx.items.length - 1, i + 1);
    else return;
    if (nu !== u || ni !== i) { e.preventDefault(); $(`#cell-${nu}-${ni}`).focus(); }
  }

  function mxEdit(u, i, input) {
    const raw = input.value.trim().replace(",", ".");
    const td = input.parentElement;
    const [lo, hi] = mx.seed.scale;
    if (raw === "") {
      mx.ratings[u][i] = null;
    } else {
      const v = Number(raw);
      if (!Number.isFinite(v) || v < lo || v > hi) {
        td.classList.add("invalid");
        input.setAttribute("aria-invalid", "true");
        $("#mx-stats").textContent = `Ratings go from ${lo} to ${hi}; "${raw}" is not used.`;
        return;
      }
      mx.ratings[u][i] = v;
    }
    td.classList.remove("invalid");
    input.removeAttribute("aria-invalid");
    if (!mx.ratings.some((row) => row.some((v) => v !== null))) {
      $("#mx-stats").textContent = "Give at least one rating to fit a model.";
      return;
    }
    mxRequestFit();
  }

  function mxParams() {
    return { factors: Number($("#mx-k").value), reg: Number($("#mx-reg").value), biases: $("#mx-bias").checked };
  }

  function mxRequestFit() {
    mx.dirty = true;
    mx.edits += 1;
    if (!mx.inflight) mxFitLoop();
  }

  async function mxFitLoop() {
    mx.inflight = true;
    while (mx.dirty) {
      mx.dirty = false;
      const p = mxParams();
      if (!p.biases && p.factors === 0) {
        $("#mx-stats").textContent = "With biases off, k must be at least 1.";
        break;
      }
      const t0 = performance.now();
      try {
        const fit = await api("/lab/api/matrix/fit", { ratings: mx.ratings, scale: mx.seed.scale, ...p });
        fit.params = p;
        fit.roundtrip = performance.now() - t0;
        mx.fit = fit;
        mxRender(false);
      } catch (err) { showError(err); }
    }
    mx.inflight = false;
    mxHeldOut();
    if (mx.model === "blend") mxBlend();
  }

  // the blend learns its weights on held-out predictions of every known rating (5 folds): the
  // server says whether this matrix has enough of them, and the page shows its answer either way
  async function mxBlend() {
    const notice = $("#mx-notice");
    const seq = ++mx.blendSeq;
    mx.blend = null;
    if (mx.model !== "blend") { notice.hidden = true; mxRender(false); return; }
    notice.hidden = false;
    notice.textContent = "Fitting the blend…";
    try {
      const res = await api("/lab/api/matrix/blend", { ratings: mx.ratings, scale: mx.seed.scale });
      if (seq !== mx.blendSeq) return;
      mx.blend = res;
      notice.textContent = blendSummary(res) + (res.ratings < 80
        ? ` With ${res.ratings} ratings these weights show how the blend works, not a model to trust.` : "");
    } catch (err) {
      if (seq !== mx.blendSeq) return;
      notice.textContent = `No blend here: ${err.message}. The grid still shows the factorization.`;
    }
    mxRender(false);
  }

  // the held-out error needs one refit per known rating: asked once the edits settle, dropped if stale
  async function mxHeldOut() {
    const edits = mx.edits, fit = mx.fit;
    if (!fit || mx.dirty) return;
    try {
      const res = await api("/lab/api/matrix/fit", { ratings: mx.ratings, scale: mx.seed.scale, ...fit.params, held_out: true });
      if (edits !== mx.edits || fit !== mx.fit) return;
      fit.rmse_held_out = res.rmse_held_out;
      mxStats(fit);
    } catch (err) { showError(err); }
  }

  function mxStats(fit) {
    const n = mx.ratings.flat().filter((v) => v !== null).length;
    const p = fit.params;
    const held = fit.rmse_held_out === null || fit.rmse_held_out === undefined ? "held-out error …"
      : `held-out error ${fmt(fit.rmse_held_out, 3)} (each known rating hidden in turn and predicted from the others)`;
    $("#mx-stats").textContent = `Fit error (RMSE on the ${n} known ratings): ${fmt(fit.rmse, 3)} · ${held} · k = ${p.factors}, λ = ${fmt(p.reg)}` +
      ` · refit in ${Math.round(fit.roundtrip)} ms (solver ${fmt(fit.ms, 1)} ms, ${fit.loss_history.length - 1} ALS sweeps)`;
  }

  function mxRender(fillValues) {
    const fit = mx.fit;
    const src = mx.model === "blend" && mx.blend ? mx.blend : fit;
    const predicted = mx.view === "predicted" && src;
    for (const td of $$("#mx-grid tbody td")) {
      const u = Number(td.dataset.u), i = Number(td.dataset.i);
      const input = td.firstChild;
      const obs = mx.ratings[u][i];
      const pred = src ? src.predicted[u][i] : null;
      if (fillValues || document.activeElement !== input) input.value = obs === null ? "" : String(obs);
      td.classList.toggle("observed", obs !== null);
      td.classList.toggle("missing", obs === null);
      td.classList.toggle("predicted", Boolean(predicted) && obs === null);
      input.placeholder = predicted && obs === null ? fmt(pred) : "–";
      td.querySelector(".fit").textContent = predicted && obs !== null ? "fit " + fmt(pred) : "";
      if (pred !== null) td.dataset.pred = fmt(pred, 3);
      const who = `${mx.users[u]}, ${mx.items[i]}`;
      input.setAttribute("aria-label", obs !== null ? `${who}: rated ${obs}` + (predicted ? `, model fits ${fmt(pred)}` : "")
        : `${who}: no rating` + (predicted ? `, predicted ${fmt(pred)}` : ""));
    }
    if (fit) {
      mxStats(fit);
      mxHeat(fit);
      mxSpark(fit.loss_history);
      if (mx.hover) mxHover(mx.hover[0], mx.hover[1]);
    }
    mx.version += 1;
    $("#mx-grid").dataset.version = String(mx.version);
  }

  function mxHeat(fit) {
    const k = fit.params.factors, biases = fit.params.biases;
    let scale = 0.5;
    for (const row of fit.U.concat(fit.I)) for (const v of row) scale = Math.max(scale, Math.abs(v));
    const cell = (v, isBias) => {
      const t = Math.min(1, Math.abs(v) / scale);
      const bg = mix(v >= 0 ? "#1d4ed8" : "#c2410c", t * 0.9);
      return el("td", { class: isBias ? "bias" : null, style: `background:${bg};color:${t > 0.55 ? "#fff" : "#111827"}` }, fmt(v));
    };
    const build = (table, names, M, bias, biasName) => {
      const head = el("tr", {}, el("td"));
      for (let f = 0; f < k; f++) head.append(el("th", { scope: "col" }, `f${f + 1}`));
      if (biases) head.append(el("th", { scope: "col", title: "bias" }, biasName));
      const rows = names.map((name, r) => {
        const tr = el("tr", { "data-row": r }, el("th", { scope: "row" }, name));
        for (let f = 0; f < k; f++) tr.append(cell(M[r][f], false));
        if (biases) tr.append(cell(bias[r], true));
        return tr;
      });
      table.replaceChildren(el("thead", {}, head), el("tbody", {}, rows));
    };
    build($("#mx-U"), mx.users, fit.U, fit.user_bias, "b_u");
    build($("#mx-I"), mx.items, fit.I, fit.item_bias, "b_i");
    $("#mx-mu").textContent = biases ? `μ (mean of the known ratings) = ${fmt(fit.mu)}` : "No biases: the prediction is the dot product alone.";
    if (k === 0) $("#mx-mu").textContent += " · k = 0: biases only, no taste vectors.";
  }

  function mxSpark(hist) {
    const box = $("#mx-loss");
    const w = 260, h = 60, pad = 4;
    const lo = Math.min(...hist), hi = Math.max(...hist);
    const x = (j) => pad + (j * (w - 2 * pad)) / Math.max(1, hist.length - 1);
    const y = (v) => h - pad - ((v - lo) * (h - 2 * pad)) / Math.max(1e-12, hi - lo);
    const pts = hist.map((v, j) => `${x(j).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    box.replaceChildren(
      svg("polyline", { points: pts, fill: "none", stroke: "#1d4ed8", "stroke-width": 2 }),
      svg("text", { x: w - pad, y: 12, "text-anchor": "end", class: "tick" }, `${fmt(hist[0], 1)} → ${fmt(hist[hist.length - 1], 2)}`),
    );
  }

  function mxHover(u, i) {
    $$("#mx-U tr.hl, #mx-I tr.hl").forEach((r) => r.classList.remove("hl"));
    $$("#mx-grid td.hl").forEach((c) => c.classList.remove("hl"));
    const box = $("#mx-explain");
    if (u === null || !mx.fit) { mx.hover = null; return; }
    mx.hover = [u, i];
    box.hidden = false;
    const fit = mx.fit, p = fit.params;
    $(`#mx-grid td[data-u="${u}"][data-i="${i}"]`).classList.add("hl");
    if (mx.model === "blend" && mx.blend) {
      box.replaceChildren(...blendBreakdown(mx.blend, u, i, `${mx.users[u]} × ${mx.items[i]}`, mx.ratings[u][i]));
      return;
    }
    const ru = $(`#mx-U tr[data-row="${u}"]`), ri = $(`#mx-I tr[data-row="${i}"]`);
    if (ru) ru.classList.add("hl");
    if (ri) ri.classList.add("hl");
    const terms = [];
    let dot = 0;
    for (let f = 0; f < p.factors; f++) {
      dot += fit.U[u][f] * fit.I[i][f];
      terms.push(`${fmt(fit.U[u][f])}×${fmt(fit.I[i][f])}`);
    }
    const pred = fit.predicted[u][i], sum = fit.unclipped[u][i];
    const obs = mx.ratings[u][i];
    const parts = [];
    if (p.biases) parts.push(`μ ${fmt(fit.mu)}`, `${signed(fit.user_bias[u])} (b_u, ${mx.users[u]})`, `${signed(fit.item_bias[i])} (b_i, ${mx.items[i]})`);
    if (p.factors > 0) parts.push(`${p.biases ? signed(dot) : fmt(dot)} (U·I)`);
    const [lo, hi] = mx.seed.scale;
    const clipped = fmt(sum) !== fmt(pred) ? ` (the sum is ${fmt(sum)}; shown as ${fmt(pred)}, the scale runs from ${lo} to ${hi})` : "";
    box.replaceChildren(
      el("div", {}, el("strong", {}, `${mx.users[u]} × ${mx.items[i]}: `), (obs !== null ? `rated ${obs}, the model fits ${fmt(pred)}` : `not rated, predicted ${fmt(pred)}`) + clipped),
      el("div", { class: "eq" }, `${fmt(sum)} = ${parts.join(" ")}`),
      p.factors > 0 ? el("div", { class: "eq" }, `U·I = row ${mx.users[u]} of U · row ${mx.items[i]} of I = ${terms.join(" + ")} = ${fmt(dot)}`) : null,
    );
  }

  $$('input[name="mx-view"]').forEach((r) => r.addEventListener("change", () => { mx.view = r.value; mxRender(false); }));
  $$('input[name="mx-model"]').forEach((r) => r.addEventListener("change", () => { mx.model = r.value; mxBlend(); }));
  $("#mx-k").addEventListener("input", () => { $("#mx-k-out").textContent = $("#mx-k").value; mxRequestFit(); });
  $("#mx-reg").addEventListener("input", () => { $("#mx-reg-out").textContent = fmt($("#mx-reg").value); mxRequestFit(); });
  $("#mx-bias").addEventListener("change", mxRequestFit);
  $("#mx-reset").addEventListener("click", () => {
    mx.ratings = mx.seed.ratings.map((r) => r.slice());
    $$("#mx-grid td.invalid").forEach((td) => { td.classList.remove("invalid"); td.firstChild.removeAttribute("aria-invalid"); });
    mxRender(true);
    mxRequestFit();
  });

  // ------------------------------------------------------------------ the blend, shared by both matrices
  function blendSummary(res) {
    const members = res.members.map((m) => `${m.name} ${fmt(m.probe_rmse, 3)}`).join(", ");
    return `Blend (${res.blender}) of ${res.members.length} models, its weights learned on what each model predicted ` +
      `for the ${res.ratings} known ratings without seeing them (${res.folds} folds). Error there: ${members}; ` +
      `the blend ${fmt(res.rmse_probe_inner, 3)} (on a fifth of them).`;
  }

  // one filled cell, member by member: prediction × weight = contribution, plus the intercept
  function blendBreakdown(res, u, i, who, obs, hidden = false) {
    const rows = res.members.map((m) => {
      const p = m.predicted[u][i], c = m.contribution[u][i];
      const w = Math.abs(p) > 1e-9 ? c / p : null;
      return el("tr", {}, el("th", { scope: "row" }, m.name), el("td", {}, fmt(p)), el("td", {}, fmt(w, 3)), el("td", {}, signed(c)));
    });
    rows.push(el("tr", {}, el("th", { scope: "row" }, "intercept"), el("td", {}, "–"), el("td", {}, "–"), el("td", {}, signed(res.base[u][i]))));
    const sum = res.unclipped[u][i], shown = res.predicted[u][i];
    const clipped = fmt(sum) !== fmt(shown) ? ` (the sum is ${fmt(sum)}; shown on the scale as ${fmt(shown)})` : "";
    return [
      el("div", {}, el("strong", {}, who + ": "), (obs === null ? "not rated" : `rated ${obs}`) + `, the blend ${obs !== null && !hidden ? "fits" : "predicts"} ${fmt(shown)}` + clipped),
      el("table", { class: "breakdown" },
        el("caption", {}, `Blend (${res.blender}): each model's prediction × its weight`),
        el("thead", {}, el("tr", {}, ["model", "prediction", "weight", "contribution"].map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, rows),
        el("tfoot", {}, el("tr", {}, el("th", { scope: "row" }, "sum"), el("td"), el("td"), el("td", {}, fmt(sum))))),
    ];
  }

  // ------------------------------------------------------------------ the real matrix
  const rm = { data: null, view: "observed", seq: 0, model: "mf", blend: null, blendAsked: null, blendSeq: 0, sel: null };

  async function rmLoad() {
    const seq = ++rm.seq;
    const params = { dataset: $("#rm-dataset").value || "synthetic", factors: $("#rm-k").value, reg: $("#rm-reg").value };
    $("#rm-stats").textContent = "Fitting…";
    try {
      const data = await api("/lab/api/matrix/sample?" + qs(params));
      if (seq !== rm.seq) return;
      if (!rm.data || rm.data.dataset !== data.dataset) { rm.blend = null; rm.blendAsked = null; rm.sel = null; }
      rm.data = data;
      rmDraw();
      rmBlend();
    } catch (err) { showError(err); }
  }

  // the block and its hidden cells depend on the data set only: one blend per data set, not per slider move
  async function rmBlend() {
    const d = rm.data;
    if (rm.model !== "blend" || !d || rm.blend || rm.blendAsked === d.dataset) return;
    rm.blendAsked = d.dataset;
    const seq = ++rm.blendSeq;
    $("#rm-stats").textContent = "Fitting the blend (five models, each six times)…";
    try {
      const res = await api("/lab/api/matrix/blend", { ratings: d.observed, scale: d.scale, hide: d.held_out });
      if (seq !== rm.blendSeq || rm.data.dataset !== d.dataset) return;
      rm.blend = res;
      rmDraw();
    } catch (err) {
      if (seq !== rm.blendSeq) return;
      rm.blendAsked = null;
      $("#rm-stats").textContent = `No blend here: ${err.message}`;
    }
  }

  function rmColour(v, lo, hi) {
    const t = Math.max(0, Math.min(1, (v - lo) / Math.max(1e-9, hi - lo)));
    return mix("#08306b", 0.08 + 0.92 * t);
  }

  function rmDraw() {
    const d = rm.data;
    const cs = 15, left = 46, top = 18;
    const nU = d.users.length, nI = d.items.length;
    const [lo, hi] = d.scale;
    const heldKey = new Set(d.held_out.map(([a, b]) => a + ":" + b));
    const W = left + nI * cs + 150, H = top + nU * cs + 10;
    const blend = rm.model === "blend" ? rm.blend : null;
    const src = rm.model === "blend" ? blend : d;
    const modelName = rm.model === "blend" ? "blend" : "factorization";
    const hadFocus = document.activeElement && document.activeElement.id === "rm-svg";
    const root = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", id: "rm-svg", tabindex: 0,
      "aria-label": `${nU} users by ${nI} items of ${d.dataset}; ${rm.view} view, ${modelName}; held-out error ${fmt(src ? src.rmse_held_out : null, 3)}` });
    const pred = rm.view === "predicted" && src;
    for (let u = 0; u < nU; u++) {
      root.append(svg("text", { x: left - 4, y: top + u * cs + cs - 4, "text-anchor": "end" }, d.users[u]));
      for (let i = 0; i < nI; i++) {
        const obs = d.observed[u][i];
        const p = src ? src.predicted[u][i] : null;
        const held = heldKey.has(u + ":" + i);
        const x = left + i * cs, y = top + u * cs;
        const tip = `${d.users[u]} × ${d.titles[i]}: ` + (obs !== null ? `rated ${obs}` : "not rated") + `, ${modelName} predicts ${fmt(p)}` + (held ? " (held out of the fit)" : "");
        let shape;
        if (obs !== null && !(pred && held)) {
          shape = svg("rect", { x: x + 0.5, y: y + 0.5, width: cs - 1, height: cs - 1, fill: rmColour(obs, lo, hi), class: "cell obs" });
        } else if (pred) {
          shape = svg("rect", { x: x + 3, y: y + 3, width: cs - 6, height: cs - 6, rx: 2, fill: rmColour(p, lo, hi), class: "cell pred" });
        } else {
          shape = svg("rect", { x: x + 0.5, y: y + 0.5, width: cs - 1, height: cs - 1, fill: "#f3f4f6", class: "cell none" });
        }
        shape.setAttribute("data-u", u);
        shape.setAttribute("data-i", i);
        shape.append(svg("title", {}, tip));
        root.append(shape);
        if (held) root.append(svg("rect", { x: x + 1, y: y + 1, width: cs - 2, height: cs - 2, fill: "none", stroke: "#b91c1c", "stroke-width": 1.5, "pointer-events": "none" }));
      }
    }
    for (let i = 0; i < nI; i += 5) root.append(svg("text", { x: left + i * cs + cs / 2, y: top - 6, "text-anchor": "middle" }, String(i + 1)));
    // legend
    const lx = left + nI * cs + 20;
    for (let s = 0; s <= 4; s++) {
      const v = lo + ((hi - lo) * s) / 4;
      root.append(svg("rect", { x: lx, y: top + s * 18, width: 14, height: 14, fill: rmColour(v, lo, hi) }));
      root.append(svg("text", { x: lx + 20, y: top + s * 18 + 11 }, fmt(v, 1)));
    }
    root.append(svg("rect", { x: lx, y: top + 100, width: 14, height: 14, fill: "#f3f4f6" }), svg("text", { x: lx + 20, y: top + 111 }, "not rated"));
    root.append(svg("rect", { x: lx + 3, y: top + 121, width: 8, height: 8, fill: rmColour(3, 1, 5), rx: 2 }), svg("text", { x: lx + 20, y: top + 129 }, "predicted"));
    root.append(svg("rect", { x: lx + 1, y: top + 137, width: 12, height: 12, fill: "none", stroke: "#b91c1c", "stroke-width": 1.5 }), svg("text", { x: lx + 20, y: top + 147 }, "held out"));
    if (rm.sel) {
      const [su, si] = rm.sel;
      root.append(svg("rect", { x: left + si * cs, y: top + su * cs, width: cs, height: cs, fill: "none", stroke: "#f59e0b", "stroke-width": 2.5, class: "sel", "pointer-events": "none" }));
    }
    root.addEventListener("click", (e) => { const t = e.target.closest("[data-u]"); if (t) rmSelect(Number(t.dataset.u), Number(t.dataset.i)); });
    root.addEventListener("keydown", rmKey);
    $("#rm-wrap").replaceChildren(root);
    if (hadFocus) root.focus();
    const block = `${nU} most active users × ${nI} most rated items · ${Math.round(d.density * 100)}% of cells known · `;
    if (rm.model === "blend" && blend) {
      $("#rm-stats").textContent = block + `blend: fit error ${fmt(blend.rmse, 3)} · held-out error ${fmt(blend.rmse_held_out, 3)} ` +
        `(factorization ${fmt(d.rmse_held_out, 3)}; ${d.held_out.length} hidden ratings) · ${fmt(blend.ms / 1000, 1)} s. ` + blendSummary(blend);
    } else if (rm.model === "mf") {
      $("#rm-stats").textContent = block + `fit error ${fmt(d.rmse_train, 3)} · held-out error ${fmt(d.rmse_held_out, 3)} (${d.held_out.length} hidden ratings) · solver ${fmt(d.ms, 0)} ms`;
    }
    if (rm.sel) rmExplain();
  }

  function rmSelect(u, i) {
    rm.sel = [u, i];
    rmDraw();
  }

  function rmKey(e) {
    const d = rm.data;
    const [u, i] = rm.sel || [0, 0];
    const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    if (!(e.key in moves)) return;
    e.preventDefault();
    const [du, di] = rm.sel ? moves[e.key] : [0, 0];
    rmSelect(Math.max(0, Math.min(d.users.length - 1, u + du)), Math.max(0, Math.min(d.items.length - 1, i + di)));
  }

  function rmExplain() {
    const d = rm.data, [u, i] = rm.sel, box = $("#rm-explain");
    const who = `${d.users[u]} × ${d.titles[i]}`, obs = d.observed[u][i];
    const held = d.held_out.some(([a, b]) => a === u && b === i) ? " (hidden from the fit)" : "";
    box.hidden = false;
    if (rm.model === "blend" && rm.blend) {
      box.replaceChildren(...blendBreakdown(rm.blend, u, i, who + held, obs, held !== ""));
    } else if (rm.model === "mf") {
      box.replaceChildren(el("div", {}, el("strong", {}, who + held + ": "),
        (obs !== null ? `rated ${obs}, ` : "not rated, ") + `the factorization predicts ${fmt(d.predicted[u][i])}. Pick Blend to see a blend's models one by one.`));
    }
  }
  $$('input[name="rm-view"]').forEach((r) => r.addEventListener("change", () => { rm.view = r.value; if (rm.data) rmDraw(); }));
  $$('input[name="rm-model"]').forEach((r) => r.addEventListener("change", () => { rm.model = r.value; if (rm.data) { rmDraw(); rmBlend(); } }));
  $("#rm-k").addEventListener("input", () => { $("#rm-k-out").textContent = $("#rm-k").value; rmLoad(); });
  $("#rm-reg").addEventListener("input", () => { $("#rm-reg-out").textContent = fmt($("#rm-reg").value, 1); rmLoad(); });
  $("#rm-dataset").addEventListener("change", rmLoad);

  // ================================================================== shared explorer state
  const st = { datasets: [], dataset: "synthetic", models: [], users: [], items: [] };

  async function loadDatasets() {
    st.datasets = await api("/lab/api/datasets");
    for (const sel of $$(".dataset-select, #rm-dataset")) {
      sel.replaceChildren(...st.datasets.map((d) => el("option", { value: d.name }, d.label)));
      sel.value = st.dataset;
      if (sel.id !== "rm-dataset") sel.addEventListener("change", () => setDataset(sel.value).catch(showError));
    }
  }

  async function setDataset(name) {
    st.dataset = name;
    for (const sel of $$(".dataset-select")) sel.value = name;
    for (const id of ["#ex-results", "#ex-overlap", "#nu-results", "#nu-overlap", "#it-results", "#it-head"]) $(id).replaceChildren();
    ev.results = {};
    evRender();
    nu.picked = [];
    const [models, users, items] = await Promise.all([
      api("/lab/api/models?" + qs({ dataset: name })),
      api("/lab/api/users?" + qs({ dataset: name, limit: 1000 })),
      api("/lab/api/items?" + qs({ dataset: name, limit: 1000 })),
    ]);
    st.models = models;
    st.users = users.users;
    st.items = items;
    models.forEach((m) => colourOf(m.name));
    const info = users.info;
    $("#ex-info").textContent = `${users.label}: ${info.interactions.toLocaleString()} ${info.kind} interactions, ${info.users} users, ${info.items} items.`;
    $("#ex-user").replaceChildren(...st.users.map((u) => el("option", { value: String(u.user) }, `${u.user} (${u.count} items)`)));
    $("#it-item").replaceChildren(...st.items.slice(0, 400).map((it) => el("option", { value: String(it.item) }, `${it.title} (${it.count})`)));
    for (const [id, filter] of [["#ex-models", () => true], ["#it-models", () => true], ["#ev-models", (m) => !m.name.startsWith("saved:")]]) {
      const box = $(id);
      box.replaceChildren(el("legend", {}, "Models"));
      for (const m of models.filter(filter)) {
        const cid = `${id.slice(1)}-${m.name}`;
        box.append(el("label", { for: cid, title: m.doc },
          el("input", { type: "checkbox", id: cid, value: m.name, checked: m.default && !m.heavy }),
          el("span", { class: "dot", style: `display:inline-block;width:.7rem;height:.7rem;border-radius:50%;background:${colourOf(m.name)}` }),
          m.name, m.heavy ? el("span", { class: "tag" }, "slow") : null));
      }
    }
    nuRenderPicker(st.items.slice(0, 40));
    nuCount();
    await exHistory();
  }

  const checked = (id) => $$(`${id} input[type=checkbox]:checked`).map((c) => c.value);

  // rendering one model's list (explorer, new user, similar items)
  function renderColumns(container, names, heading) {
    container.replaceChildren();
    container.dataset.done = "0";
    const cols = {};
    for (const name of names) {
      const col = el("section", { class: "col", "data-model": name, "aria-busy": "true", "aria-label": `${name} ${heading}` },
        el("h4", {}, el("span", { class: "dot", style: `display:inline-block;width:.7rem;height:.7rem;border-radius:50%;margin-right:.35rem;background:${colourOf(name)}` }), name),
        el("div", { class: "meta" }, "training and scoring…"));
      container.append(col);
      cols[name] = col;
    }
    return cols;
  }

  function fillColumn(col, result) {
    col.removeAttribute("aria-busy");
    const meta = col.querySelector(".meta");
    meta.textContent = result.fit_s > 0 ? `trained in ${fmt(result.fit_s, 2)} s` : "ready";
    if (result.error) {
      col.append(el("p", { class: "err" }, result.error));
      return;
    }
    if (result.warnings && result.warnings.length) col.append(el("p", { class: "meta" }, result.warnings.join("; ")));
    const ol = el("ol", { class: "recs" });
    for (const it of result.items) {
      const why = it.explanation && it.explanation.text ? it.explanation.text : "";
      const named = it.explanation && it.explanation.contributions ? it.explanation.contributions.filter((c) => c.is_item) : [];
      const contrib = named.length ? ": " + named.slice(0, 3).map((c) => `${c.label} ${fmt(c.weight)}`).join(", ") : "";
      ol.append(el("li", { tabindex: "0", "data-item": String(it.item) },
        el("span", { class: "s", title: (SCORE_FORMAT[result.score_kind] || SCORE_FORMAT.score)[1] }, fmtScore(it.score, result.score_kind)),
        el("span", { class: "t" }, it.title),
        el("span", { class: "g" }, " " + (it.genres || []).join(", ")),
        why ? el("span", { class: "why" }, why + contrib) : null));
    }
    col.append(ol);
  }

  function crossLink(container) {
    const lists = $$("ol.recs", container);
    const count = {};
    for (const ol of lists) for (const li of $$("li", ol)) count[li.dataset.item] = (count[li.dataset.item] || 0) + 1;
    for (const li of $$("ol.recs li", container)) {
      const n = count[li.dataset.item];
      if (n > 1 && !li.querySelector(".shared")) li.querySelector(".t").after(el("span", { class: "shared" }, `in ${n} lists`));
      const on = () => $$(`ol.recs li[data-item="${CSS.escape(li.dataset.item)}"]`, container).forEach((x) => x.classList.add("hl"));
      const off = () => $$("ol.recs li.hl", container).forEach((x) => x.classList.remove("hl"));
      li.addEventListener("mouseenter", on);
      li.addEventListener("focus", on);
      li.addEventListener("mouseleave", off);
      li.addEventListener("blur", off);
    }
  }

  function overlapTable(box, results) {
    const ok = results.filter((r) => !r.error && r.items.length);
    if (ok.length < 2) { box.replaceChildren(); return; }
    const sets = ok.map((r) => new Set(r.items.map((x) => String(x.item))));
    const head = el("tr", {}, el("td"), ok.map((r) => el("th", { scope: "col" }, r.model)));
    const rows = ok.map((r, a) => el("tr", {}, el("th", { scope: "row" }, r.model), ok.map((_, b) => {
      const inter = [...sets[a]].filter((x) => sets[b].has(x)).length;
      const uni = new Set([...sets[a], ...sets[b]]).size;
      const j = uni ? inter / uni : 0;
      return el("td", { style: `background:${mix("#1d4ed8", j * 0.6)};color:${j > 0.75 ? "#fff" : "#111827"}` }, fmt(j));
    })));
    box.replaceChildren(el("div", { class: "overlap" },
      el("h3", {}, "Overlap between the lists (Jaccard: shared items ÷ all items)"),
      el("table", {}, el("thead", {}, head), el("tbody", {}, rows))));
  }

  async function runColumns(container, overlapBox, names, heading, request) {
    const cols = renderColumns(container, names, heading);
    const results = [];
    await Promise.all(names.map(async (name) => {
      try {
        const res = await request(name);
        const r = res.results[0];
        results.push(r);
        fillColumn(cols[name], r);
      } catch (err) {
        fillColumn(cols[name], { model: name, error: err.message, items: [], fit_s: 0 });
      }
    }));
    results.sort((a, b) => names.indexOf(a.model) - names.indexOf(b.model));
    crossLink(container);
    if (overlapBox) overlapTable(overlapBox, results);
    container.dataset.done = "1";
    return results;
  }

  // ================================================================== explorer
  async function exHistory() {
    const user = $("#ex-user").value;
    if (!user) return;
    const h = await api("/lab/api/history?" + qs({ dataset: st.dataset, user, limit: 25 }));
    $("#ex-history-title").textContent = `History of ${h.user}: ${h.total} items` + (h.total > h.items.length ? ` (best ${h.items.length} shown)` : "");
    $("#ex-history tbody").replaceChildren(...h.items.map((it) => el("tr", {},
      el("td", {}, it.title), el("td", {}, it.genres.join(", ")), el("td", { class: "num" }, h.explicit ? fmt(it.rating, 1) : "✓"))));
  }

  async function exRecommend() {
    const names = checked("#ex-models");
    if (!names.length) { showError("Choose at least one model."); return; }
    const user = $("#ex-user").value;
    const k = Number($("#ex-k").value);
    const btn = $("#ex-go");
    btn.disabled = true;
    try {
      await runColumns($("#ex-results"), $("#ex-overlap"), names, `recommendations for ${user}`,
        (name) => api("/lab/api/recommend", { dataset: st.dataset, user, models: [name], k }));
    } finally { btn.disabled = false; }
  }
  $("#ex-user").addEventListener("change", () => { exHistory().catch(showError); $("#ex-results").replaceChildren(); $("#ex-overlap").replaceChildren(); });
  $("#ex-go").addEventListener("click", () => exRecommend().catch(showError));

  // ================================================================== new user
  const nu = { picked: [], titles: {} };

  function nuRenderPicker(items) {
    $("#nu-items").replaceChildren(...items.map((it) => {
      nu.titles[String(it.item)] = it.title;
      const b = el("button", { type: "button", "data-item": String(it.item), "aria-pressed": nu.picked.includes(String(it.item)) ? "true" : "false" },
        it.title, el("span", { class: "g" }, (it.genres || []).join(", ")));
      b.addEventListener("click", () => nuToggle(String(it.item), b));
      return b;
    }));
  }

  function nuCount() {
    const n = nu.picked.length;
    const names = nu.picked.map((i) => nu.titles[i]).join(", ");
    $("#nu-count").textContent = n < 5 ? `Pick 5 items (${n} chosen${n ? ": " + names : ""}).` : `Chosen: ${names}.`;
  }

  function nuToggle(item, button) {
    const at = nu.picked.indexOf(item);
    if (at >= 0) nu.picked.splice(at, 1);
    else if (nu.picked.length >= 5) { $("#nu-count").textContent = "Five chosen: unpick one first, or start over."; return; }
    else nu.picked.push(item);
    button.setAttribute("aria-pressed", at >= 0 ? "false" : "true");
    nuCount();
    if (nu.picked.length === 5 && at < 0) nuRecommend().catch(showError);
  }

  async function nuRecommend() {
    const names = st.models.filter((m) => m.supports_history && !m.heavy).map((m) => m.name);
    const items = nu.picked.slice();
    await runColumns($("#nu-results"), $("#nu-overlap"), names, "recommendations for the new person",
      (name) => api("/lab/api/cold_start", { dataset: st.dataset, items, models: [name], k: 10 }));
  }

  let nuSearchTimer = null;
  $("#nu-search").addEventListener("input", () => {
    clearTimeout(nuSearchTimer);
    nuSearchTimer = setTimeout(async () => {
      try {
        const q = $("#nu-search").value;
        nuRenderPicker(await api("/lab/api/items?" + qs({ dataset: st.dataset, q, limit: 40 })));
      } catch (err) { showError(err); }
    }, 200);
  });
  $("#nu-clear").addEventListener("click", () => {
    nu.picked = [];
    $$("#nu-items button").forEach((b) => b.setAttribute("aria-pressed", "false"));
    $("#nu-results").replaceChildren();
    $("#nu-overlap").replaceChildren();
    nuCount();
  });

  // ================================================================== items: similar + map
  async function itSimilar() {
    const item = $("#it-item").value;
    const names = checked("#it-models");
    if (!item || !names.length) return;
    const title = nu.titles[item] || (st.items.find((x) => String(x.item) === item) || {}).title || item;
    const rec = st.items.find((x) => String(x.item) === item);
    $("#it-head").textContent = `Items similar to ${title}` + (rec ? ` (${rec.genres.join(", ")}; ${rec.count} interactions)` : "");
    $$("#it-map circle.sel").forEach((c) => c.classList.remove("sel"));
    const dot = $(`#it-map circle[data-item="${CSS.escape(item)}"]`);
    if (dot) dot.classList.add("sel");
    await runColumns($("#it-results"), null, names, `items similar to ${title}`,
      (name) => api("/lab/api/similar?" + qs({ dataset: st.dataset, item, models: [name], k: 10 })));
  }
  $("#it-go").addEventListener("click", () => itSimilar().catch(showError));

  const GENRE_COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#8C564B", "#6A3D9A", "#9CA3AF"];

  async function itMap() {
    const source = $("#it-source").value || "svd";
    let data;
    try {
      data = await api("/lab/api/embedding?" + qs({ dataset: st.dataset, source }));
    } catch (err) {
      if (source !== "svd") { $("#it-source").value = "svd"; return itMap(); }
      throw err;
    }
    $("#it-source").replaceChildren(...data.sources.map((s) => el("option", { value: s.name }, s.label)));
    $("#it-source").value = data.source;
    const colour = {};
    data.legend.forEach((g, j) => { colour[g] = g === "Other" ? "#9CA3AF" : GENRE_COLOURS[j % GENRE_COLOURS.length]; });
    $("#it-legend").replaceChildren(...data.legend.map((g) => el("li", {}, el("span", { class: "dot", style: `background:${colour[g]}` }), g)));
    const W = 640, H = 480, pad = 24;
    const maxCount = Math.max(...data.points.map((p) => p.count), 1);
    const box = $("#it-map");
    const selected = $("#it-item").value;
    const X = fitAxis(data.points.map((p) => p.x), pad, W - pad);
    const Y = fitAxis(data.points.map((p) => -p.y), pad, H - pad);
    const circles = data.points.map((p) => {
      const c = svg("circle", {
        cx: X(p.x).toFixed(1), cy: Y(-p.y).toFixed(1),
        r: (2.5 + 5 * Math.sqrt(p.count / maxCount)).toFixed(1), fill: colour[p.genre], "fill-opacity": 0.85,
        "data-item": String(p.item), class: String(p.item) === selected ? "sel" : null,
      }, svg("title", {}, `${p.title} (${p.genres.join(", ")})`));
      c.addEventListener("mousemove", (e) => tip(e, `${p.title}`, `${p.genres.join(", ")} · ${p.count} interactions`));
      c.addEventListener("mouseleave", untip);
      c.addEventListener("click", () => {
        nu.titles[String(p.item)] = p.title;
        if (!$(`#it-item option[value="${CSS.escape(String(p.item))}"]`)) $("#it-item").append(el("option", { value: String(p.item) }, p.title));
        $("#it-item").value = String(p.item);
        itSimilar().catch(showError);
      });
      return c;
    });
    box.replaceChildren(svg("rect", { x: 0, y: 0, width: W, height: H, fill: "none" }), ...circles);
    const label = data.sources.find((s) => s.name === data.source).label;
    box.setAttribute("aria-label", `Map of ${data.points.length} items, ${label}, coloured by genre`);
    $("#it-map-cap").textContent = `${data.points.length} most rated items · ${label} · PCA to 2-D · dot size: number of interactions.`;
  }
  $("#it-source").addEventListener("change", () => itMap().catch(showError));

  // the points' range on one axis, centred and stretched over [lo, hi] of the plot (each axis its own
  // scale: the map shows who is near whom, and a flat cloud would otherwise fill a thin band)
  function fitAxis(values, lo, hi) {
    const min = Math.min(...values), max = Math.max(...values);
    if (!(max > min)) return () => (lo + hi) / 2;
    return (v) => lo + ((v - min) / (max - min)) * (hi - lo);
  }

  function tip(e, title, sub) {
    const t = $("#tooltip");
    t.replaceChildren(el("strong", {}, title), el("br"), sub);
    t.hidden = false;
    t.style.left = Math.min(window.innerWidth - 260, e.clientX + 14) + "px";
    t.style.top = e.clientY + 14 + "px";
  }
  function untip() { $("#tooltip").hidden = true; }

  // ================================================================== evaluation
  const ev = { results: {}, order: [] };
  const METRICS = [["ndcg@10", "NDCG@10"], ["recall@10", "Recall@10"], ["precision@10", "Precision@10"], ["map@10", "MAP@10"],
    ["hit_rate@10", "Hit rate@10"], ["coverage", "Catalogue coverage"], ["novelty", "Novelty (bits)"], ["popularity", "Mean popularity of recs"]];

  async function evRun() {
    const names = checked("#ev-models");
    if (!names.length) { showError("Choose at least one model."); return; }
    const btn = $("#ev-go");
    btn.disabled = true;
    ev.order = names;
    $("#ev-status").dataset.done = "0";
    try {
      for (const [j, name] of names.entries()) {
        if (ev.results[name]) continue;
        $("#ev-status").textContent = `Training and evaluating ${name} (${j + 1} of ${names.length})…`;
        const res = await api("/lab/api/evaluate", { dataset: st.dataset, models: [name], k: 10 });
        ev.results[name] = res.results[0];
        ev.split = res;
        evRender();
      }
      const r = ev.split ? ev.split.report : {};
      $("#ev-status").textContent = `Split ${ev.split ? ev.split.split : ""}: ${r.train_interactions} training and ${r.test_interactions} test interactions, ${r.test_users} test users.`;
    } catch (err) { showError(err); } finally {
      btn.disabled = false;
      $("#ev-status").dataset.done = "1";
    }
  }
  $("#ev-go").addEventListener("click", () => evRun());

  function evRender() {
    const names = ev.order.filter((n) => ev.results[n]);
    const ok = names.filter((n) => !ev.results[n].error);
    // legend
    $("#ev-legend").replaceChildren(...names.map((n) => el("li", {}, el("span", { class: "dot", style: `background:${colourOf(n)}` }),
      n + (ev.results[n].error ? ` (failed: ${ev.results[n].error})` : ""))));
    // bars
    const bars = el("div", { class: "bars" });
    for (const [key, label] of METRICS) {
      const vals = ok.map((n) => ev.results[n].metrics[key]);
      const max = Math.max(1e-12, ...vals.filter((v) => v !== null));
      const block = el("div", { role: "group", "aria-label": label }, el("h4", {}, label));
      ok.forEach((n, j) => {
        const v = vals[j];
        block.append(el("div", { class: "bar-row" }, el("span", {}, n),
          el("span", { class: "b", style: `width:${v === null ? 0 : (100 * v) / max}%;background:${colourOf(n)}`, role: "img", "aria-label": `${n}: ${fmt(v, 3)}` }),
          el("span", { class: "v" }, key === "popularity" ? fmt(v, 0) : fmt(v, 3))));
      });
      bars.append(block);
    }
    $("#ev-bars").replaceChildren(ok.length ? bars : el("p", { class: "help" }, "Choose models and press Evaluate."));
    lineChart($("#ev-precision"), ok.map((n) => ({ name: n, xs: ev.results[n].ks, ys: ev.results[n].precision })), "k", "precision");
    lineChart($("#ev-recall"), ok.map((n) => ({ name: n, xs: ev.results[n].ks, ys: ev.results[n].recall })), "k", "recall");
    const pops = ok.map((n) => ({ name: n, xs: ev.results[n].popularity.recommended.map((_, j) => j + 1), ys: ev.results[n].popularity.recommended }));
    if (ok.length) {
      const held = ev.results[ok[0]].popularity.held_out;
      pops.push({ name: "held-out items", xs: held.map((_, j) => j + 1), ys: held, dash: true, colour: "#111827" });
    }
    lineChart($("#ev-pop"), pops, "item popularity decile (10 = most popular)", "share of slots");
    // table
    const cols = ["fit_s", ...METRICS.map((m) => m[0]), "rmse"];
    const table = el("table", { class: "list" },
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "model"), cols.map((c) => el("th", { scope: "col", class: "num" }, c)))),
      el("tbody", {}, ok.map((n) => el("tr", {}, el("th", { scope: "row" }, n), cols.map((c) => {
        const v = c === "fit_s" ? ev.results[n].fit_s : ev.results[n].metrics[c];
        return el("td", { class: "num" }, v === undefined ? "–" : fmt(v, c === "popularity" ? 1 : 3));
      })))));
    $("#ev-table").replaceChildren(table);
  }

  function lineChart(box, series, xlabel, ylabel) {
    const W = 420, H = 260, L = 44, R = 12, T = 10, B = 34;
    box.replaceChildren();
    if (!series.length) return;
    const xs = series.flatMap((s) => s.xs), ys = series.flatMap((s) => s.ys).filter((v) => v !== null);
    const x0 = Math.min(...xs), x1 = Math.max(...xs), y1 = Math.max(1e-9, ...ys) * 1.05;
    const X = (v) => L + ((v - x0) / Math.max(1e-9, x1 - x0)) * (W - L - R);
    const Y = (v) => H - B - (v / y1) * (H - T - B);
    for (let j = 0; j <= 4; j++) {
      const v = (y1 * j) / 4;
      box.append(svg("line", { x1: L, x2: W - R, y1: Y(v), y2: Y(v), class: "gridline" }));
      box.append(svg("text", { x: L - 4, y: Y(v) + 3, "text-anchor": "end", class: "tick" }, v < 1 ? v.toFixed(2) : v.toFixed(1)));
    }
    const step = Math.max(1, Math.round((x1 - x0) / 10));
    for (let v = x0; v <= x1; v += step) box.append(svg("text", { x: X(v), y: H - B + 14, "text-anchor": "middle", class: "tick" }, String(v)));
    box.append(svg("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }), svg("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }));
    box.append(svg("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle", class: "tick" }, xlabel));
    box.append(svg("text", { x: 12, y: (T + H - B) / 2, "text-anchor": "middle", class: "tick", transform: `rotate(-90 12 ${(T + H - B) / 2})` }, ylabel));
    for (const s of series) {
      const pts = s.xs.map((x, j) => `${X(x).toFixed(1)},${Y(s.ys[j] || 0).toFixed(1)}`).join(" ");
      const c = s.colour || colourOf(s.name);
      box.append(svg("polyline", { points: pts, fill: "none", stroke: c, "stroke-width": 2, "stroke-dasharray": s.dash ? "5 4" : null },
        svg("title", {}, s.name)));
    }
    box.setAttribute("aria-label", `${ylabel} by ${xlabel}: ` + series.map((s) => `${s.name} from ${fmt(s.ys[0], 3)} to ${fmt(s.ys[s.ys.length - 1], 3)}`).join("; "));
  }

  // ================================================================== start
  onShow.items = () => { itMap().catch(showError); };
  async function start() {
    try {
      mxInit();
      await loadDatasets();
      rmLoad();
      await setDataset(st.dataset);
      document.body.dataset.ready = "1";
    } catch (err) { showError(err); }
    const want = (location.hash || "#matrix").slice(1);
    const tab = $("#tab-" + want);
    activate(tab || tabs[0]);
  }
  start();
})();
