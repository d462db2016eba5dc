// Providers and deployments, read-only, from the redacted config view; live health from this
// replica's circuit breakers (/api/stats) and the last 15 minutes of the request log.

import { api, config } from "../api.js";
import { h, replace, table, badge, empty } from "../dom.js";
import * as fmt from "../format.js";
import { card, pageHeader } from "../widgets.js";

const WINDOW_S = 900;
const REFRESH_MS = 15000;

function priceText(p) {
  if (!p) return "no price";
  const parts = [`in ${fmt.usd(p.input)}`, `out ${fmt.usd(p.output)}`];
  if (p.cached_input !== undefined) parts.push(`cached ${fmt.usd(p.cached_input)}`);
  return `${parts.join(" · ")} /1M`;
}

export async function render(main) {
  const cfg = await config({ refresh: true });
  const health = h("div", {});
  const refresh = h("button", { type: "button", on: { click: () => loadHealth() } }, "Refresh");

  async function loadHealth() {
    const end = Date.now() / 1000;
    const [stats, recent] = await Promise.all([api.get("stats"), api.get("usage/overview", { start_time: end - WINDOW_S, end_time: end, top: 100 })]);
    const byProvider = new Map((recent.by_provider || []).map((r) => [r.name, r]));
    const circuits = stats.circuits || [];
    const worst = (name) => {
      const states = circuits.filter((c) => c.provider === name).map((c) => c.state);
      return states.includes("open") ? "open" : states.includes("half_open") ? "half_open" : "closed";
    };
    replace(
      health,
      table(
        [
          ["Provider", (p) => p.name],
          ["Circuit", (p) => {
            const s = cfg.circuit_breakers ? worst(p.name) : "off";
            return badge(s.replace("_", "-"), s === "open" ? "bad" : s === "half_open" ? "warn" : s === "off" ? "" : "ok");
          }],
          ["Requests (15 min)", (p) => fmt.count(byProvider.get(p.name)?.requests || 0), "num"],
          ["Error rate (15 min)", (p) => {
            const r = byProvider.get(p.name);
            return r && Number(r.requests) ? fmt.percent(Number(r.errors), Number(r.requests)) : "—";
          }, "num"],
        ],
        cfg.providers || [],
        { caption: "Provider health" },
      ),
      circuits.length
        ? h("div", {}, h("h3", {}, "Circuits this replica remembers"), table(
            [
              ["Provider", (c) => c.provider],
              ["Model or key", (c) => (c.model ? `model ${c.model}` : `key ${c.key}`)],
              ["State", (c) => badge(c.state.replace("_", "-"), c.state === "open" ? "bad" : c.state === "half_open" ? "warn" : "ok")],
              ["Failures in a row", (c) => fmt.count(c.consecutive_failures), "num"],
              ["Window", (c) => `${fmt.count(c.window_failures)} of ${fmt.count(c.window_requests)} failed`],
              ["Open for", (c) => (c.open_for_s ? `${Number(c.open_for_s).toFixed(1)} s` : "—")],
            ],
            circuits,
            { caption: "Circuits" },
          ))
        : h("p", { class: "muted small" }, "No target or key has failed lately on this replica (health is per replica)."),
      (stats.unpriced_models || []).length ? h("p", { class: "alert alert-warn" }, `Models served without a price (their cost is unknown): ${stats.unpriced_models.join(", ")}`) : null,
    );
  }

  replace(
    main,
    pageHeader("Providers and deployments", `Read-only: from the configuration. Default provider: ${cfg.default_provider}${cfg.restrict_to_declared ? " · only declared deployments are reachable" : ""}.`, refresh),
    card("Live health", health),
    card(
      "Providers",
      (cfg.providers || []).length
        ? table(
            [
              ["Name", (p) => h("strong", {}, p.name)],
              ["Kind", (p) => p.kind],
              ["Endpoint", (p) => h("span", { class: "mono small" }, p.base_url || "(the kind's default)")],
              ["Keys", (p) => h("ul", { class: "plain" }, (p.keys || []).map((k) => h("li", {}, `${k.name} · weight ${k.weight}`, (k.models || []).length ? ` · ${k.models.join(", ")}` : "")))],
              ["Base models", (p) => Object.entries(p.base_models || {}).map(([d, m]) => `${d} → ${m}`).join(", ") || "—"],
            ],
            cfg.providers,
            { caption: "Providers" },
          )
        : empty("No providers configured."),
      h("p", { class: "muted small" }, "Keys are shown by name only: their values never leave the service."),
    ),
    card(
      "Deployments",
      (cfg.deployments || []).length
        ? table(
            [
              ["Deployment", (d) => h("strong", { class: "mono" }, d.name)],
              ["Targets", (d) => h("ul", { class: "plain" }, (d.targets || []).map((t) => h("li", {}, `${t.provider}/${t.model}`, h("span", { class: "muted" }, ` · weight ${t.weight}${t.base_model ? ` · base ${t.base_model}` : ""} · ${priceText(t.price)}`))))],
              ["Routing", (d) => d.routing],
              ["Fallbacks", (d) => (d.fallbacks || []).join(" → ") || "—"],
              ["Context fallbacks", (d) => (d.context_fallbacks || []).join(" → ") || "—"],
            ],
            cfg.deployments,
            { caption: "Deployments" },
          )
        : empty("No deployments declared: callers name provider/model or an Azure deployment directly."),
    ),
    card(
      "Prices in use",
      (cfg.prices || []).length
        ? table(
            [
              ["Model", (p) => h("span", { class: "mono" }, p.model)],
              ["Input /1M", (p) => fmt.usd(p.input), "num"],
              ["Output /1M", (p) => fmt.usd(p.output), "num"],
              ["Cached input /1M", (p) => (p.cached_input === undefined ? "—" : fmt.usd(p.cached_input)), "num"],
              ["Per request", (p) => (p.per_request ? fmt.usd(p.per_request) : "—"), "num"],
            ],
            cfg.prices,
            { caption: "Prices" },
          )
        : empty("None of the deployments' models has a price."),
    ),
  );
  await loadHealth();
  main.dataset.ready = "providers";
  const timer = setInterval(() => loadHealth().catch(() => {}), REFRESH_MS);
  return () => clearInterval(timer);
}
