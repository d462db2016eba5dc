// Virtual keys: the list with search and filters, and creation.

import { allKeys, api } from "../api.js";
import { h, replace, table, select, field, badge, empty } from "../dom.js";
import * as fmt from "../format.js";
import { budgetBar } from "../charts.js";
import { keyDialog, showSecret } from "../key-form.js";
import { pageHeader } from "../widgets.js";

export function keyState(key) {
  if (key.revoked_at) return ["revoked", "bad"];
  if (!key.active) return ["inactive", "bad"];
  if (key.expires_at && key.expires_at * 1000 <= Date.now()) return ["expired", "warn"];
  return ["active", "ok"];
}

const filters = { search: "", state: "", team: "", budget: "" };

export async function render(main, { navigate }) {
  const [keys, teamsData] = await Promise.all([allKeys(), api.get("teams")]);
  const teams = teamsData.teams || [];
  const search = h("input", { type: "search", id: "key-search", placeholder: "Name, id or prefix", value: filters.search, autocomplete: "off" });
  const state = select([["", "Any state"], ["active", "Active"], ["revoked", "Revoked"], ["inactive", "Inactive"], ["expired", "Expired"]], filters.state, { id: "key-state" });
  const team = select([["", "Any team"], ["-", "No team"], ...teams.map((t) => [t.id, t.name || t.id])], filters.team, { id: "key-team" });
  const budget = select([["", "Any budget"], ["with", "With a budget"], ["without", "Without a budget"]], filters.budget, { id: "key-budget" });
  const results = h("div", {});
  const create = h("button", { type: "button", class: "primary", id: "create-key" }, "Create key");
  create.addEventListener("click", async () => {
    const created = await keyDialog({ teams });
    if (created && created.secret) {
      await showSecret(created);
      navigate(`#/keys/${encodeURIComponent(created.key.id)}`);
    }
  });

  function show() {
    Object.assign(filters, { search: search.value.trim().toLowerCase(), state: state.value, team: team.value, budget: budget.value });
    const rows = keys.filter((k) => {
      if (filters.search && ![k.id, k.name, k.key_prefix, k.description].some((v) => (v || "").toLowerCase().includes(filters.search))) return false;
      if (filters.state && keyState(k)[0] !== filters.state) return false;
      if (filters.team === "-" ? k.team_id : filters.team && k.team_id !== filters.team) return false;
      if (filters.budget === "with" && !k.budget) return false;
      if (filters.budget === "without" && k.budget) return false;
      return true;
    });
    replace(
      results,
      h("p", { class: "muted small", role: "status" }, `${rows.length} of ${keys.length} keys`),
      rows.length
        ? table(
            [
              ["Name", (k) => h("span", {}, h("a", { href: `#/keys/${encodeURIComponent(k.id)}` }, k.name || k.id), h("div", { class: "muted small mono" }, k.id))],
              ["Prefix", (k) => h("span", { class: "mono" }, `${k.key_prefix}…`)],
              ["State", (k) => badge(...keyState(k))],
              ["Team", (k) => (k.team_id ? h("a", { href: `#/teams/${encodeURIComponent(k.team_id)}` }, k.team_id) : "—")],
              ["Budget", (k) => (k.budget ? budgetBar(Number(k.budget_usage ? k.budget_usage.spent_usd : 0), Number(k.budget.max_usd)) : "—")],
              ["Rate limit", (k) => rateText(k.rate_limit)],
              ["Created", (k) => fmt.ago(k.created_at)],
            ],
            rows,
            { caption: "Virtual keys", onRow: (k) => navigate(`#/keys/${encodeURIComponent(k.id)}`), rowLabel: (k) => `Open key ${k.name || k.id}` },
          )
        : empty(keys.length ? "No key matches these filters." : "No virtual keys yet: create one for each app."),
    );
  }
  for (const control of [search, state, team, budget]) control.addEventListener("input", show);
  replace(
    main,
    pageHeader("Virtual keys", "Each app calls the gateway with its own key: its models, budget and rate limits.", create),
    h("div", { class: "toolbar", role: "search" }, field("Search", search), field("State", state), field("Team", team), field("Budget", budget)),
    results,
  );
  show();
}

export function rateText(limit) {
  if (!limit) return "—";
  const parts = [];
  if (limit.requests_per_minute) parts.push(`${fmt.count(limit.requests_per_minute)} req/min`);
  if (limit.tokens_per_minute) parts.push(`${fmt.short(limit.tokens_per_minute)} tok/min`);
  return parts.join(" · ") || "—";
}
