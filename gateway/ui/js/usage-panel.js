// The usage chart and recent requests of one key or team (their detail pages).

import { api } from "./api.js";
import { h, replace, table, badge, empty } from "./dom.js";
import * as fmt from "./format.js";
import { colors, series, timeChart } from "./charts.js";
import { card, rangePicker, stat } from "./widgets.js";

export function usagePanel(filter) {
  let range = "7d";
  let dispose = () => {};
  const body = h("div", {});
  const root = h("section", { class: "card", "aria-label": "Usage" }, h("div", { class: "card-head" }, h("h2", {}, "Usage"), rangePicker(range, (v) => { range = v; load(); })), body);

  async function load() {
    const end = Date.now() / 1000;
    const data = await api.get("usage/overview", { ...filter, start_time: end - fmt.rangeSeconds(range), end_time: end, top: 5 });
    dispose();
    const t = data.totals || {};
    const chartBox = h("div", { class: "chart-box" });
    replace(
      body,
      h(
        "div",
        { class: "stats stats-small" },
        stat("Requests", fmt.count(t.requests)),
        stat("Errors", fmt.count(t.errors), fmt.percent(Number(t.errors || 0), Number(t.requests || 0)), Number(t.errors) ? "warn" : ""),
        stat("Spend", fmt.usd(t.cost)),
        stat("Tokens", fmt.short(t.total_tokens)),
      ),
      chartBox,
      (data.by_model || []).length
        ? h("p", { class: "muted small" }, "Models: ", (data.by_model || []).map((m) => `${m.name || "(none)"} ${fmt.usd(m.cost)} (${fmt.count(m.requests)})`).join(" · "))
        : null,
    );
    const stop = [
      timeChart(chartBox, series(data, [(b) => Number(b.requests), (b) => Number(b.errors), (b) => Number(b.cost)]).slice(0, 3), [
        { label: "Requests", color: colors.requests, bars: true },
        { label: "Errors", color: colors.errors, bars: true },
      ], { height: 180 }),
    ];
    dispose = () => stop.forEach((fn) => fn());
  }
  return { node: root, load, dispose: () => dispose() };
}

export async function recentRequests(filter, navigate) {
  const data = await api.get("logs", { ...filter, page_size: 15 });
  const entries = data.entries || [];
  const query = new URLSearchParams(filter).toString();
  return card(
    "Recent requests",
    entries.length ? logTable(entries, navigate) : empty("No requests yet."),
    h("p", {}, h("a", { href: `#/logs?${query}` }, "All of its requests in the request log →")),
  );
}

export function logTable(entries, navigate) {
  return table(
    [
      ["Time", (e) => h("span", { title: fmt.when(e.ts) }, fmt.when(e.ts))],
      ["Status", (e) => badge(String(e.status), fmt.statusKind(e.status))],
      ["Key", (e) => e.key_id || "—"],
      ["Model", (e) => h("span", {}, e.model_requested || "—", e.model_served && e.model_served !== e.model_requested ? h("span", { class: "muted" }, ` → ${e.model_served}`) : null)],
      ["Provider", (e) => e.provider || "—"],
      ["Error", (e) => e.error_type || ""],
      ["Tokens", (e) => fmt.count(e.total_tokens), "num"],
      ["Cost", (e) => fmt.usd(e.cost), "num"],
      ["Latency", (e) => fmt.ms(e.latency_ms), "num"],
    ],
    entries,
    { caption: "Requests", onRow: (e) => navigate(`#/logs/${encodeURIComponent(e.id)}`), rowLabel: (e) => `Open request ${e.request_id || e.id}` },
  );
}
