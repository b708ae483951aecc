// The collector's live page: polls /api/stats and /api/events every second and
// draws them. Every value from an event goes into the page as text
// (textContent, setAttribute on SVG geometry only), never as HTML.
"use strict";

(function () {
  const POLL_MS = 1000;
  const LATEST = 20;          // events and refusals listed
  const SHOWN_CHARS = 300;    // a longer value is cut, saying how much is left out
  const SHOWN_LABEL = 80;     // a longer source, action or noun is cut
  const SVG = "http://www.w3.org/2000/svg";
  const MARGIN = { left: 48, right: 8, top: 8, bottom: 22 };
  const BY_NAME_SHOWN = new Set(["source", "action", "noun", "uuid", "client_timestamp"]);

  function byId(id) { return document.getElementById(id); }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function svg(tag, attributes, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function clock(ms) {
    if (typeof ms !== "number") return "";
    return new Date(ms).toISOString().slice(11, 23) + " UTC";
  }

  function duration(ms) {
    if (typeof ms !== "number") return "–";
    const size = Math.abs(ms);
    if (size < 1000) return ms + " ms";
    if (size < 60000) return (ms / 1000).toFixed(1) + " s";
    if (size < 3600000) return (ms / 60000).toFixed(1) + " min";
    return (ms / 3600000).toFixed(1) + " h";
  }

  function sum(values, from) {
    let total = 0;
    for (let i = from || 0; i < values.length; i++) total += values[i];
    return total;
  }

  // A label cut at SHOWN_LABEL code points, with an ellipsis.
  function cut(text) {
    const points = Array.from(String(text));
    return points.length <= SHOWN_LABEL ? points.join("") : points.slice(0, SHOWN_LABEL).join("") + "…";
  }

  // A value as text, cut at SHOWN_CHARS (counted in code points, so no
  // surrogate pair is split), with a note saying how much was left out.
  function valueNode(value) {
    const text = typeof value === "string" ? value : JSON.stringify(value);
    const points = Array.from(text === undefined ? String(value) : text);
    const node = element("dd");
    if (points.length <= SHOWN_CHARS) {
      node.textContent = points.join("");
    } else {
      node.append(points.slice(0, SHOWN_CHARS).join(""));
      node.append(element("span", "cut", " … (" + (points.length - SHOWN_CHARS) + " more characters)"));
    }
    return node;
  }

  function setStatus(state, text) {
    const status = byId("status");
    status.className = "status " + state;
    status.textContent = text;
  }

  function niceCeiling(value) {
    if (value <= 1) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 2.5, 5, 10]) {
      if (step * power >= value) return step * power;
    }
    return 10 * power;
  }

  function rateLabel(value) {
    return (Number.isInteger(value) ? value : value.toFixed(1)) + "/s";
  }

  // The charts' left margin: room for the widest rate label of either (20000/s
  // included), measured as drawn, so that both keep one time axis.
  function leftMargin(charts) {
    let widest = 0;
    for (const [id, values] of charts) {
      const chart = byId(id);
      const top = niceCeiling(Math.max(1, ...values));
      chart.replaceChildren(...[0, 0.5, 1].map((fraction) => svg("text", {}, rateLabel(top * fraction))));
      for (const label of chart.children) widest = Math.max(widest, label.getComputedTextLength());
    }
    return Math.max(MARGIN.left, Math.ceil(widest) + 8);
  }

  // One series as a filled step shape, a step per second.
  function stepPath(values, x, y) {
    let d = "M" + x(0) + "," + y(0);
    for (let i = 0; i < values.length; i++) {
      d += "L" + x(i) + "," + y(values[i]) + "L" + x(i + 1) + "," + y(values[i]);
    }
    return d + "L" + x(values.length) + "," + y(0) + "Z";
  }

  // One series per second on its own scale, into the SVG chart ``id``.
  // Drawn in CSS pixels (the viewBox follows the chart's width), so that its
  // text stays readable on a phone.
  function drawChart(id, values, className, left) {
    const chart = byId(id);
    const box = { width: Math.max(280, Math.round(chart.clientWidth) || 800),
      height: Number(chart.dataset.height) };
    chart.setAttribute("viewBox", "0 0 " + box.width + " " + box.height);
    const top = niceCeiling(Math.max(1, ...values));
    const c = Object.assign({}, MARGIN, { left: left });
    const plotWidth = box.width - c.left - c.right;
    const plotHeight = box.height - c.top - c.bottom;
    const x = (i) => (c.left + (i * plotWidth) / values.length).toFixed(1);
    const y = (v) => (c.top + plotHeight - (v * plotHeight) / top).toFixed(1);
    const parts = [];
    for (const fraction of [0, 0.5, 1]) {
      const value = top * fraction;
      parts.push(svg("line", { class: fraction ? "grid" : "axis", x1: c.left, x2: box.width - c.right,
        y1: y(value), y2: y(value) }));
      parts.push(svg("text", { x: c.left - 4, y: Number(y(value)) + 4, "text-anchor": "end" },
        rateLabel(value)));
    }
    const minutes = Math.round(values.length / 60);
    for (const [at, label, anchor] of [[0, "−" + minutes + " min", "start"],
      [values.length / 2, "−" + minutes / 2 + " min", "middle"], [values.length, "now", "end"]]) {
      parts.push(svg("text", { x: x(at), y: box.height - 6, "text-anchor": anchor }, label));
    }
    parts.push(svg("path", { class: className, d: stepPath(values, x, y) }));
    chart.replaceChildren(...parts);
  }

  function drawRates(rates) {
    const refused = rates.refused_events.map((n, i) => n + rates.refused_requests[i]);
    const left = leftMargin([["rate-chart", rates.stored], ["refused-chart", refused]]);
    drawChart("rate-chart", rates.stored, "stored", left);
    drawChart("refused-chart", refused, "refused", left);
    return { stored: sum(rates.stored), refused: sum(refused),
      recent: sum(rates.stored, rates.stored.length - 10) / 10 };
  }

  function drawStatuses(statuses) {
    const entries = Object.entries(statuses);
    byId("statuses").textContent = entries.length
      ? entries.map(([status, batches]) => status + " × " + batches).join(", ")
      : "none";
  }

  function drawCounts(counts, more) {
    const body = byId("counts").tBodies[0];
    body.replaceChildren(...counts.map((row) => {
      const tr = element("tr");
      for (const cell of [row.stream, row.source, row.action]) tr.append(element("td", "", cell === null ? "–" : cut(cell)));
      tr.append(element("td", "num", row.count));
      return tr;
    }));
    byId("counts-empty").classList.toggle("hidden", counts.length > 0);
    byId("counts-more").textContent = more ? "… and " + more + " more, fewer events each." : "";
  }

  function drawDelays(delays, stored) {
    const most = Math.max(1, ...delays.buckets.map((b) => b.count));
    byId("delays").replaceChildren(...delays.buckets.map((bucket) => {
      const bar = element("div", "bar");
      const track = element("div", "track");
      const fill = element("div", "fill");
      fill.style.width = ((100 * bucket.count) / most).toFixed(1) + "%";
      if (!bucket.count) fill.style.display = "none";
      track.append(fill);
      bar.append(element("span", "", bucket.label), track, element("span", "num", bucket.count));
      return bar;
    }));
    byId("delays-note").textContent = delays.events
      ? "Last " + delays.events + " stored events with a timestamp: median " + duration(delays.p50_ms) +
        ", 90% within " + duration(delays.p90_ms) + ", longest " + duration(delays.max_ms) + "."
      : stored
        ? "No delay to show: none of the last events stored has a timestamp the collector read" +
          " (a v2 event's client_timestamp is read with --schema)."
        : "No events with a timestamp yet.";
    byId("delay-median").textContent = duration(delays.p50_ms);
  }

  function eventCard(event) {
    const card = element("li");
    const head = element("div", "head");
    const what = [event.source, event.action, event.noun].filter((v) => v !== null && v !== "")
      .map(cut).join(" · ");
    head.append(element("span", "what", what || "(no source, action or noun)"));
    head.append(element("span", "meta", "v" + event.version));
    head.append(element("span", "meta", "received " + clock(event.received_ms)));
    if (typeof event.timestamp_ms === "number") {
      head.append(element("span", "meta", "delay " + duration(event.received_ms - event.timestamp_ms)));
    }
    if (event.receipts > 1) head.append(element("span", "meta", "received " + event.receipts + " times"));
    card.append(head);
    card.append(element("div", "meta", "uuid " + event.uuid));
    const named = event.named !== null && typeof event.named === "object";
    const fields = named ? event.named : event.fields;
    const list = element("dl");
    if (fields !== null && typeof fields === "object") {
      for (const [name, value] of Object.entries(fields)) {
        if (named && BY_NAME_SHOWN.has(name)) continue;
        list.append(element("dt", "", named ? name : "field " + name), valueNode(value));
      }
    }
    if (list.childElementCount) card.append(list);
    return card;
  }

  // An event a 422 named (index, uuid, reason), or a request refused whole (status, error).
  function refusalCard(refusal) {
    const card = element("li");
    const head = element("div", "head");
    const whole = typeof refusal.status === "number";
    head.append(element("span", "what", whole
      ? refusal.stream + " request refused whole: " + refusal.status
      : refusal.stream + " event " + refusal.index + " of its batch"));
    head.append(element("span", "meta", "received " + clock(refusal.received_ms)));
    card.append(head);
    if (refusal.uuid) card.append(element("div", "meta", "uuid " + refusal.uuid));
    card.append(element("div", "reason", whole ? refusal.error : refusal.reason));
    return card;
  }

  function drawList(id, items, card) {
    byId(id).replaceChildren(...items.map(card));
    byId(id + "-empty").classList.toggle("hidden", items.length > 0);
  }

  function draw(stats, latest) {
    const totals = drawRates(stats.rates);
    byId("rate-now").textContent = totals.recent.toFixed(1);
    byId("stored-window").textContent = totals.stored;
    byId("refused-window").textContent = totals.refused;
    byId("total").textContent = stats.total;
    drawStatuses(stats.rates.statuses);
    drawCounts(stats.counts, stats.counts_left_out);
    drawDelays(stats.delays, stats.total);
    drawList("events", latest.events, eventCard);
    const refusals = latest.refused.concat(stats.rates.requests)
      .sort((a, b) => b.received_ms - a.received_ms).slice(0, LATEST);
    drawList("refused", refusals, refusalCard);
  }

  async function getJSON(path) {
    const response = await fetch(path, { cache: "no-store", headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(path + " answered " + response.status);
    return response.json();
  }

  async function poll() {
    let stats, latest;
    try {
      [stats, latest] = await Promise.all([getJSON("api/stats"), getJSON("api/events?limit=" + LATEST)]);
    } catch (error) {
      setStatus("stale", "cannot reach the collector (" + error.message + "); trying again");
      setTimeout(poll, POLL_MS);
      return;
    }
    try {
      draw(stats, latest);  // a bug here reaches the console, not the status line
      setStatus("live", "live · updated " + clock(stats.now_ms));
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  poll();
})();
