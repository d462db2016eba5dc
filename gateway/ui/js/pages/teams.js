// Teams: the list with search, their budgets and key counts; creation.

import { allKeys, api } from "../api.js";
import { h, replace, table, field, empty } from "../dom.js";
import * as fmt from "../format.js";
import { budgetBar } from "../charts.js";
import { teamDialog } from "../team-form.js";
import { pageHeader } from "../widgets.js";

export async function render(main, { navigate }) {
  const [data, keys] = await Promise.all([api.get("teams"), allKeys()]);
  const teams = data.teams || [];
  const counts = new Map();
  for (const k of keys) if (k.team_id) counts.set(k.team_id, (counts.get(k.team_id) || 0) + 1);
  const search = h("input", { type: "search", id: "team-search", placeholder: "Name or id", autocomplete: "off" });
  const results = h("div", {});
  const create = h("button", { type: "button", class: "primary", id: "create-team" }, "Create team");
  create.addEventListener("click", async () => {
    const team = await teamDialog();
    if (team) navigate(`#/teams/${encodeURIComponent(team.id)}`);
  });
  function show() {
    const q = search.value.trim().toLowerCase();
    const rows = teams.filter((t) => !q || t.id.toLowerCase().includes(q) || (t.name || "").toLowerCase().includes(q));
    replace(
      results,
      rows.length
        ? table(
            [
              ["Team", (t) => h("span", {}, h("a", { href: `#/teams/${encodeURIComponent(t.id)}` }, t.name || t.id), h("div", { class: "muted small mono" }, t.id))],
              ["Keys", (t) => fmt.count(counts.get(t.id) || 0), "num"],
              ["Budget", (t) => (t.budget ? budgetBar(Number(t.budget_usage ? t.budget_usage.spent_usd : 0), Number(t.budget.max_usd)) : "—")],
              ["Resets", (t) => (t.budget ? t.budget.reset : "—")],
              ["Created", (t) => fmt.ago(t.created_at)],
            ],
            rows,
            { caption: "Teams", onRow: (t) => navigate(`#/teams/${encodeURIComponent(t.id)}`), rowLabel: (t) => `Open team ${t.name || t.id}` },
          )
        : empty(teams.length ? "No team matches." : "No teams yet. A team groups keys under one budget."),
    );
  }
  search.addEventListener("input", show);
  replace(main, pageHeader("Teams", "Groups of keys sharing a budget.", create), h("div", { class: "toolbar", role: "search" }, field("Search", search)), results);
  show();
}
