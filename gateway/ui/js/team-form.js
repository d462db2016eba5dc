// Create or edit a team (PUT /api/teams/{id}: an upsert).

import { api } from "./api.js";
import { h, field, dialog, describe } from "./dom.js";
import { budgetFields } from "./widgets.js";

export function teamDialog(team = null) {
  const id = h("input", { type: "text", required: true, autocomplete: "off", value: team ? team.id : "", readOnly: Boolean(team), pattern: "[A-Za-z0-9][A-Za-z0-9._:\\-]{0,127}" });
  const name = h("input", { type: "text", autocomplete: "off", value: team ? team.name : "" });
  const budget = budgetFields(team ? team.budget : null);
  const status = h("div", { role: "alert", class: "form-status" });
  const submit = h("button", { type: "submit", class: "primary" }, team ? "Save changes" : "Create team");
  return new Promise((resolve) => {
    let result = null;
    const form = h(
      "form",
      { class: "form" },
      field("Id", id, team ? "A team's id does not change." : "Letters, digits, '.', '_', ':' or '-'."),
      field("Name", name),
      h("div", { class: "row" }, budget.nodes),
      h("p", { class: "muted small" }, "A team's budget applies on top of each key's own: both must have room."),
      status,
      h("div", { class: "actions" }, h("button", { type: "button", class: "ghost", on: { click: () => modal.close() } }, "Cancel"), submit),
    );
    const modal = dialog(team ? `Edit ${team.name || team.id}` : "Create a team", form, { onClose: () => resolve(result) });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const b = budget.read();
      if (b === null) {
        status.textContent = "The budget must be a number of USD, 0 or more.";
        return;
      }
      const body = { id: id.value.trim(), name: name.value.trim() };
      if (!b.clear) body.budget = b.budget;
      submit.disabled = true;
      try {
        result = await api.put(`teams/${encodeURIComponent(body.id)}`, body);
        modal.close();
      } catch (err) {
        status.className = "form-status alert alert-error";
        status.textContent = describe(err);
      } finally {
        submit.disabled = false;
      }
    });
    (team ? name : id).focus();
  });
}
