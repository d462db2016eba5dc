// One virtual key: its settings, edit, rotate, revoke; its usage and recent requests.

import { api } from "../api.js";
import { h, replace, badge, dialog, definitionList, describe } from "../dom.js";
import * as fmt from "../format.js";
import { budgetBar } from "../charts.js";
import { keyDialog, showSecret } from "../key-form.js";
import { keyState, rateText } from "./keys.js";
import { recentRequests, usagePanel } from "../usage-panel.js";
import { pageHeader } from "../widgets.js";

export async function render(main, { id, navigate }) {
  const [key, teamsData] = await Promise.all([api.get(`keys/${encodeURIComponent(id)}`), api.get("teams")]);
  const teams = teamsData.teams || [];
  const [stateText, stateKind] = keyState(key);
  const revoked = Boolean(key.revoked_at) || !key.active;
  const reload = () => navigate(`#/keys/${encodeURIComponent(key.id)}`);

  const edit = h("button", { type: "button", id: "edit-key" }, "Edit");
  edit.addEventListener("click", async () => {
    if (await keyDialog({ key, teams })) reload();
  });
  const rotate = h("button", { type: "button", id: "rotate-key", disabled: revoked }, "Rotate secret");
  rotate.addEventListener("click", () =>
    confirm(`Rotate the secret of ${key.name}?`, "A new secret is made and the old one stops working at once (on other replicas within auth.key_cache_ttl_s).", "Rotate", async () => {
      const rotated = await api.post(`keys/${encodeURIComponent(key.id)}/rotate`);
      return async () => {
        await showSecret(rotated, "rotated");
        reload();
      };
    }),
  );
  const revoke = h("button", { type: "button", class: "danger", id: "revoke-key", disabled: revoked }, "Revoke");
  revoke.addEventListener("click", () =>
    confirm(`Revoke ${key.name}?`, "Calls with this key are refused with 403 from now on. This cannot be undone from the console.", "Revoke key", async () => {
      await api.post(`keys/${encodeURIComponent(key.id)}/revoke`);
      reload();
    }),
  );

  const usage = usagePanel({ key_id: key.id });
  replace(
    main,
    h("p", { class: "crumbs" }, h("a", { href: "#/keys" }, "Virtual keys"), " / ", key.id),
    pageHeader(key.name || key.id, key.description || "", edit, rotate, revoke),
    h(
      "section",
      { class: "card", "aria-label": "Settings" },
      h("h2", {}, "Settings"),
      definitionList([
        ["State", badge(stateText, stateKind)],
        ["Id", h("span", { class: "mono" }, key.id)],
        ["Secret prefix", h("span", { class: "mono" }, `${key.key_prefix}…`)],
        ["Team", key.team_id ? h("a", { href: `#/teams/${encodeURIComponent(key.team_id)}` }, key.team_id) : "—"],
        ["Allowed models", (key.allowed_models || []).length ? key.allowed_models.join(", ") : "every model"],
        ["Allowed providers", (key.allowed_providers || []).length ? key.allowed_providers.join(", ") : "every provider"],
        ["Budget", key.budget ? h("span", {}, budgetBar(Number(key.budget_usage ? key.budget_usage.spent_usd : 0), Number(key.budget.max_usd)), ` resets ${key.budget.reset}`, key.budget_usage && key.budget_usage.window_end ? ` (next ${fmt.when(key.budget_usage.window_end)})` : "") : "none"],
        ["Rate limit", rateText(key.rate_limit)],
        ["Expires", key.expires_at ? fmt.when(key.expires_at) : "never"],
        ["Created", fmt.when(key.created_at)],
        ["Updated", fmt.when(key.updated_at)],
        key.revoked_at ? ["Revoked", fmt.when(key.revoked_at)] : null,
      ]),
    ),
    usage.node,
    await recentRequests({ key_id: key.id }, navigate),
  );
  await usage.load();
  return usage.dispose;
}

export function confirm(title, text, label, action) {
  const status = h("div", { role: "alert", class: "form-status" });
  const go = h("button", { type: "button", class: "danger", id: "confirm-action" }, label);
  const modal = dialog(title, h("div", { class: "form" }, h("p", {}, text), status, h("div", { class: "actions" }, h("button", { type: "button", class: "ghost", on: { click: () => modal.close() } }, "Cancel"), go)));
  go.addEventListener("click", async () => {
    go.disabled = true;
    try {
      // The action may hand back what to do once this dialog is gone (show a new secret).
      const after = await action();
      modal.close();
      if (after) await after();
    } catch (err) {
      status.className = "form-status alert alert-error";
      status.textContent = describe(err);
      go.disabled = false;
    }
  });
  go.focus();
}
