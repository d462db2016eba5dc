// Charts: time series drawn by uPlot (vendored, see vendor/uplot/README.txt) and bar lists in
// plain DOM. Widths are set through the CSSOM (el.style.width), which the CSP allows; no style
// attribute or <style> element is ever written.

import uPlot from "../vendor/uplot/uPlot.esm.js";
import { h } from "./dom.js";
import * as fmt from "./format.js";

const COLORS = { requests: "#3b6fd8", errors: "#d64545", spend: "#1f9d74", tokens: "#8a5cd1" };

// Every bucket of the range, the ones the API left out (no requests) as zeros.
export function series(overview, pick) {
  const step = Number(overview.bucket_s);
  const start = Number(overview.start_time);
  const end = Number(overview.end_time);
  const byStart = new Map((overview.buckets || []).map((b) => [Math.round(Number(b.start)), b]));
  const xs = [];
  const ys = pick.map(() => []);
  for (let t = start; t < end; t += step) {
    xs.push(t);
    const b = byStart.get(Math.round(t));
    pick.forEach((fn, i) => ys[i].push(b ? fn(b) : 0));
  }
  return [xs, ...ys];
}

// A time-series chart in `container`; `lines` are [{label, color, bars?, format}].
export function timeChart(container, data, lines, { height = 220, title } = {}) {
  const bars = uPlot.paths.bars({ size: [0.7, 40] });
  const opts = {
    width: Math.max(280, container.clientWidth || 600),
    height,
    title: undefined,
    cursor: { drag: { x: false, y: false } },
    legend: { show: true, live: true },
    scales: { x: { time: true } },
    axes: [
      { stroke: "#5b6475", grid: { stroke: "#eef0f4" }, ticks: { stroke: "#dfe3ea" } },
      {
        stroke: "#5b6475",
        grid: { stroke: "#eef0f4" },
        ticks: { show: false },
        size: 60,
        values: (_u, values) => values.map((v) => (lines[0].money ? fmt.usd(v) : fmt.short(v))),
      },
    ],
    series: [
      {},
      ...lines.map((line) => ({
        label: line.label,
        stroke: line.color,
        width: line.bars ? 0 : 2,
        fill: line.bars ? line.color : `${line.color}22`,
        paths: line.bars ? bars : undefined,
        points: { show: false },
        value: (_u, v) => (v === null || v === undefined ? "—" : line.money ? fmt.usd(v) : fmt.count(v)),
      })),
    ],
  };
  const figure = h("figure", { class: "chart", "aria-label": title || lines.map((l) => l.label).join(", ") });
  container.appendChild(figure);
  const plot = new uPlot(opts, data, figure);
  const observer = new ResizeObserver(() => {
    const width = Math.max(280, container.clientWidth);
    if (Math.abs(width - plot.width) > 2) plot.setSize({ width, height });
  });
  observer.observe(container);
  // A text summary for screen readers and for anyone who prefers numbers.
  const total = data.slice(1).map((ys, i) => {
    const sum = ys.reduce((a, b) => a + b, 0);
    return `${lines[i].label}: ${lines[i].money ? fmt.usd(sum) : fmt.count(sum)}`;
  });
  figure.appendChild(h("figcaption", { class: "sr-only" }, `Totals over the range. ${total.join("; ")}.`));
  return () => {
    observer.disconnect();
    plot.destroy();
  };
}

export const colors = COLORS;

// Horizontal bars: [{name, value, label}] scaled to the largest value.
export function barList(rows, { empty = "Nothing in this range.", link, color = COLORS.spend, label = "value" } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  const max = Math.max(...rows.map((r) => r.value), 0) || 1;
  return h(
    "ol",
    { class: "bars" },
    rows.map((row) => {
      const fill = h("span", { class: "bar-fill" });
      fill.style.width = `${Math.max(1, (100 * row.value) / max)}%`;
      fill.style.backgroundColor = color;
      const name = row.name === "" ? h("em", {}, row.emptyName || "(none)") : row.name;
      return h(
        "li",
        { "aria-label": `${row.name || row.emptyName || "(none)"}: ${row.label}` },
        h("span", { class: "bar-name" }, link && row.name ? h("a", { href: link(row.name) }, name) : name),
        h("span", { class: "bar-track", "aria-hidden": "true" }, fill),
        h("span", { class: "bar-value", title: label }, row.label),
      );
    }),
  );
}

// Budget use as a labelled <progress> (native: announced by screen readers).
export function budgetBar(spent, max) {
  const ratio = max > 0 ? spent / max : 0;
  const kind = ratio >= 1 ? "bad" : ratio >= 0.8 ? "warn" : "ok";
  return h(
    "span",
    { class: "budget" },
    h("progress", { class: `progress-${kind}`, max: 100, value: Math.min(100, Math.round(ratio * 100)), "aria-label": `${fmt.usd(spent)} of ${fmt.usd(max)} used` }),
    h("span", { class: "budget-text" }, `${fmt.usd(spent)} / ${fmt.usd(max)}`),
  );
}
