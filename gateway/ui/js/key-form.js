// Create / edit a virtual key, and the one-time display of a new secret.

import { api, config } from "./api.js";
import { h, field, select, dialog, describe } from "./dom.js";
import { budgetFields, listText, parseList } from "./widgets.js";

// Opens the form; resolves with the API's answer ({key, secret} on create, the key on edit).
export async function keyDialog({ key = null, teams = [] } = {}) {
  const cfg = await config();
  const editing = key !== null;
  const id = h("input", { type: "text", name: "id", placeholder: "made for you when empty", autocomplete: "off", pattern: "[A-Za-z0-9][A-Za-z0-9._:\\-]{0,127}" });
  const name = h("input", { type: "text", name: "name", required: true, autocomplete: "off", value: key ? key.name : "" });
  const description = h("input", { type: "text", name: "description", autocomplete: "off", value: key ? key.description || "" : "" });
  const team = select([["", "No team"], ...teams.map((t) => [t.id, t.name || t.id])], key && key.team_id ? key.team_id : "", { name: "team" });
  const models = h("textarea", { name: "allowed_models", rows: "2", placeholder: "every model", value: key ? listText(key.allowed_models) : "" });
  const providerBoxes = (cfg.providers || []).map((p) => {
    const box = h("input", { type: "checkbox", name: "allowed_providers", value: p.name, id: `prov-${p.name}`, checked: key ? (key.allowed_providers || []).includes(p.name) : false });
    return h("span", { class: "check" }, box, h("label", { for: box.id }, p.name));
  });
  const budget = budgetFields(key ? key.budget : null);
  const limits = key && key.rate_limit ? key.rate_limit : {};
  const rpm = h("input", { type: "number", min: "1", step: "1", name: "rpm", placeholder: "no limit", value: limits.requests_per_minute ? String(limits.requests_per_minute) : "" });
  const tpm = h("input", { type: "number", min: "1", step: "1", name: "tpm", placeholder: "no limit", value: limits.tokens_per_minute ? String(limits.tokens_per_minute) : "" });
  const expires = h("input", { type: "date", name: "expires", value: key && key.expires_at ? new Date(key.expires_at * 1000).toISOString().slice(0, 10) : "" });
  const status = h("div", { role: "alert", class: "form-status" });
  const submit = h("button", { type: "submit", class: "primary" }, editing ? "Save changes" : "Create key");

  return new Promise((resolve) => {
    let result = null;
    const form = h(
      "form",
      { class: "form" },
      editing ? null : field("Id (optional)", id, "Letters, digits, '.', '_', ':' or '-'."),
      field("Name", name),
      field("Description", description),
      field("Team", team),
      field("Allowed models", models, "Globs, one per line or comma-separated (gpt-4o*, openai/gpt-4o-mini). Empty: every model."),
      h("fieldset", { class: "checks" }, h("legend", {}, "Allowed providers (none ticked: every provider)"), providerBoxes),
      h("div", { class: "row" }, budget.nodes),
      h("div", { class: "row" }, field("Requests per minute", rpm), field("Tokens per minute", tpm)),
      field("Expires on (UTC)", expires, "Empty: never."),
      status,
      h("div", { class: "actions" }, h("button", { type: "button", class: "ghost", on: { click: () => modal.close() } }, "Cancel"), submit),
    );
    const modal = dialog(editing ? `Edit ${key.name}` : "Create a virtual key", form, { onClose: () => resolve(result) });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const budgetValue = budget.read();
      if (budgetValue === null) {
        status.textContent = "The budget must be a number of USD, 0 or more.";
        return;
      }
      const body = {
        name: name.value.trim(),
        description: description.value.trim(),
        allowed_models: parseList(models.value),
        allowed_providers: providerBoxes.map((s) => s.querySelector("input")).filter((b) => b.checked).map((b) => b.value),
      };
      const rate = {};
      if (rpm.value) rate.requests_per_minute = Number(rpm.value);
      if (tpm.value) rate.tokens_per_minute = Number(tpm.value);
      const expiresAt = expires.value ? Date.parse(`${expires.value}T23:59:59Z`) / 1000 : null;
      if (editing) {
        if (budgetValue.clear) body.clear_budget = true;
        else body.budget = budgetValue.budget;
        if (Object.keys(rate).length) body.rate_limit = rate;
        else body.clear_rate_limit = true;
        if (team.value) body.team_id = team.value;
        else body.clear_team = true;
        if (expiresAt) body.expires_at = expiresAt;
        else body.clear_expiry = true;
      } else {
        if (id.value.trim()) body.id = id.value.trim();
        if (!budgetValue.clear) body.budget = budgetValue.budget;
        if (Object.keys(rate).length) body.rate_limit = rate;
        if (team.value) body.team_id = team.value;
        if (expiresAt) body.expires_at = expiresAt;
      }
      submit.disabled = true;
      status.textContent = "";
      try {
        result = editing ? await api.patch(`keys/${encodeURIComponent(key.id)}`, body) : await api.post("keys", body);
        modal.close();
      } catch (err) {
        status.className = "form-status alert alert-error";
        status.textContent = describe(err);
      } finally {
        submit.disabled = false;
      }
    });
    name.focus();
  });
}

// The secret of a created or rotated key, shown this once, with a copy button.
export function showSecret(created, what = "created") {
  return new Promise((resolve) => {
    const value = h("input", { type: "text", readOnly: true, id: "new-secret", class: "secret", value: created.secret, spellcheck: "false", autocomplete: "off" });
    const copied = h("span", { class: "copied", role: "status" });
    const copy = h("button", { type: "button", class: "primary", id: "copy-secret" }, "Copy");
    copy.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(value.value);
        copied.textContent = "Copied to the clipboard.";
      } catch {
        // Without the clipboard API (plain HTTP on another host): select it for Ctrl+C.
        value.select();
        copied.textContent = "Selected: press Ctrl+C (⌘C) to copy.";
      }
    });
    const done = h("button", { type: "button", class: "ghost" }, "I have saved it");
    const modal = dialog(
      `Key ${what}: copy its secret now`,
      h(
        "div",
        { class: "form" },
        h("p", {}, "This is the only time the secret is shown: Switchyard keeps only its hash. Give it to the app that calls the gateway (as its api-key)."),
        h("div", { class: "field" }, h("label", { for: "new-secret" }, `Secret of ${created.key.name || created.key.id}`), h("div", { class: "copy-row" }, value, copy)),
        copied,
        h("div", { class: "actions" }, done),
      ),
      {
        onClose: () => {
          value.value = ""; // leave nothing of it in the page
          resolve();
        },
      },
    );
    done.addEventListener("click", () => modal.close());
    copy.focus();
  });
}
