// Overview: requests, errors and spend over time; spend by model, key and team; the top
// erroring keys and models; budget use. One UsageOverview call: the store aggregates.

import { api } from "../api.js";
import { h, replace, table } from "../dom.js";
import * as fmt from "../format.js";
import { barList, budgetBar, colors, series, timeChart } from "../charts.js";
import { card, pageHeader, rangePicker, stat } from "../widgets.js";

let range = "24h";

export async function render(main) {
  const body = h("div", { class: "stack" });
  const picker = rangePicker(range, (value) => {
    range = value;
    load();
  });
  replace(main, pageHeader("Overview", "Traffic, errors and spend across every key and team.", picker), body);
  let disposers = [];
  const dispose = () => {
    disposers.forEach((fn) => fn());
    disposers = [];
  };

  async function load() {
    const end = Date.now() / 1000;
    const started = performance.now();
    const data = await api.get("usage/overview", { start_time: end - fmt.rangeSeconds(range), end_time: end, top: 8 });
    dispose();
    disposers = draw(body, data);
    main.dataset.renderMs = String(Math.round(performance.now() - started));
    main.dataset.ready = "overview";
  }
  await load();
  return dispose;
}

export function draw(body, data) {
  const totals = data.totals || {};
  const requests = Number(totals.requests || 0);
  const errors = Number(totals.errors || 0);
  const stats = h(
    "div",
    { class: "stats" },
    stat("Requests", fmt.count(requests), `${fmt.short(totals.total_tokens)} tokens`),
    stat("Errors", fmt.count(errors), `${fmt.percent(errors, requests)} of requests`, errors ? "warn" : ""),
    stat("Spend", fmt.usd(totals.cost), requests ? `${fmt.usd(totals.cost / requests)} per request` : "no requests"),
    stat("Tokens", fmt.short(totals.total_tokens), `${fmt.short(totals.prompt_tokens)} in · ${fmt.short(totals.completion_tokens)} out`),
  );
  const trafficBox = h("div", { class: "chart-box" });
  const spendBox = h("div", { class: "chart-box" });
  const money = (rows) => rows.map((r) => ({ name: r.name, value: Number(r.cost || 0), label: fmt.usd(r.cost) }));
  const errorsTable = (rows, what, link) =>
    rows.length
      ? table(
          [
            [what, (r) => (r.name ? h("a", { href: link(r.name) }, r.name) : h("em", {}, "(none)"))],
            ["Errors", (r) => fmt.count(r.errors), "num"],
            ["Rate", (r) => fmt.percent(r.errors, r.requests), "num"],
          ],
          rows,
          { caption: `Top erroring ${what.toLowerCase()}s` },
        )
      : h("p", { class: "empty" }, "No errors in this range.");
  const budgets = data.budgets || [];
  const logsFor = (param) => (name) => `#/logs?${param}=${encodeURIComponent(name)}&errors_only=1`;
  replace(
    body,
    stats,
    h("div", { class: "grid-2" }, card("Requests and errors", trafficBox), card("Spend", spendBox)),
    h(
      "div",
      { class: "grid-3" },
      card("Spend by model", barList(money(data.by_model || []), { link: (n) => `#/logs?model=${encodeURIComponent(n)}` })),
      card("Spend by key", barList(money(data.by_key || []).map((r) => ({ ...r, emptyName: "(no key: admin or open mode)" })), { link: (n) => `#/keys/${encodeURIComponent(n)}` })),
      card("Spend by team", barList(money(data.by_team || []).map((r) => ({ ...r, emptyName: "(no team)" })), { link: (n) => `#/teams/${encodeURIComponent(n)}` })),
    ),
    h(
      "div",
      { class: "grid-3" },
      card("Top erroring keys", errorsTable(data.top_error_keys || [], "Key", logsFor("key_id"))),
      card("Top erroring models", errorsTable(data.top_error_models || [], "Model", logsFor("model"))),
      card(
        "Budget use",
        budgets.length
          ? h(
              "ul",
              { class: "budget-list" },
              budgets.map((b) =>
                h(
                  "li",
                  {},
                  h("a", { href: `#/${b.kind === "team" ? "teams" : "keys"}/${encodeURIComponent(b.id)}` }, b.name || b.id),
                  h("span", { class: "muted small" }, b.kind === "team" ? " team" : " key", ` · resets ${b.budget.reset}`),
                  budgetBar(Number(b.usage ? b.usage.spent_usd : 0), Number(b.budget.max_usd)),
                ),
              ),
            )
          : h("p", { class: "empty" }, "No key or team has a budget."),
      ),
    ),
  );
  const traffic = series(data, [(b) => Number(b.requests), (b) => Number(b.errors)]);
  const spend = series(data, [(b) => Number(b.cost)]);
  return [
    timeChart(trafficBox, traffic, [
      { label: "Requests", color: colors.requests, bars: true },
      { label: "Errors", color: colors.errors, bars: true },
    ]),
    timeChart(spendBox, spend, [{ label: "Spend (USD)", color: colors.spend, money: true }]),
  ];
}
