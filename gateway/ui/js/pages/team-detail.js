// One team: its budget, its keys, usage and recent requests.

import { allKeys, api } from "../api.js";
import { h, replace, table, badge, definitionList, empty } from "../dom.js";
import * as fmt from "../format.js";
import { budgetBar } from "../charts.js";
import { teamDialog } from "../team-form.js";
import { keyState } from "./keys.js";
import { recentRequests, usagePanel } from "../usage-panel.js";
import { card, pageHeader } from "../widgets.js";

export async function render(main, { id, navigate }) {
  const [data, keys] = await Promise.all([api.get("teams"), allKeys()]);
  const team = (data.teams || []).find((t) => t.id === id);
  if (!team) {
    replace(main, h("p", { class: "crumbs" }, h("a", { href: "#/teams" }, "Teams")), empty(`No team with id ${id}.`));
    return null;
  }
  const members = keys.filter((k) => k.team_id === team.id);
  const edit = h("button", { type: "button", id: "edit-team" }, "Edit");
  edit.addEventListener("click", async () => {
    if (await teamDialog(team)) navigate(`#/teams/${encodeURIComponent(team.id)}`);
  });
  const usage = usagePanel({ team_id: team.id });
  replace(
    main,
    h("p", { class: "crumbs" }, h("a", { href: "#/teams" }, "Teams"), " / ", team.id),
    pageHeader(team.name || team.id, `${members.length} keys`, edit),
    card(
      "Budget",
      definitionList([
        ["Id", h("span", { class: "mono" }, team.id)],
        ["Budget", team.budget ? budgetBar(Number(team.budget_usage ? team.budget_usage.spent_usd : 0), Number(team.budget.max_usd)) : "none"],
        team.budget ? ["Resets", `${team.budget.reset}${team.budget_usage && team.budget_usage.window_end ? ` (next ${fmt.when(team.budget_usage.window_end)})` : ""}`] : null,
        ["Created", fmt.when(team.created_at)],
      ]),
    ),
    card(
      "Keys",
      members.length
        ? table(
            [
              ["Name", (k) => h("a", { href: `#/keys/${encodeURIComponent(k.id)}` }, k.name || k.id)],
              ["State", (k) => badge(...keyState(k))],
              ["Budget", (k) => (k.budget ? budgetBar(Number(k.budget_usage ? k.budget_usage.spent_usd : 0), Number(k.budget.max_usd)) : "—")],
            ],
            members,
            { caption: "Keys of the team" },
          )
        : empty("No key belongs to this team yet (set it in a key's settings)."),
    ),
    usage.node,
    await recentRequests({ team_id: team.id }, navigate),
  );
  await usage.load();
  return usage.dispose;
}
