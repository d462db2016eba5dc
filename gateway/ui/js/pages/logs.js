// Request logs: filters (kept in the page's #hash, never a credential), pages newest first.

import { api, config } from "../api.js";
import { h, replace, field, select, empty } from "../dom.js";
import { logTable } from "../usage-panel.js";
import { pageHeader } from "../widgets.js";

const FIELDS = ["key_id", "team_id", "model", "provider", "status", "error_type", "request_id", "range", "errors_only"];
const PERIODS = [
  ["", "Any time"],
  ["3600", "Last hour"],
  ["86400", "Last 24 hours"],
  ["604800", "Last 7 days"],
  ["2592000", "Last 30 days"],
];

export async function render(main, { query, navigate }) {
  const cfg = await config();
  const values = Object.fromEntries(FIELDS.map((f) => [f, query.get(f) || ""]));
  const text = (name, placeholder) => h("input", { type: "text", id: `log-${name}`, name, value: values[name], placeholder, autocomplete: "off", spellcheck: "false" });
  const controls = {
    key_id: text("key_id", "vk_…"),
    team_id: text("team_id", "team id"),
    model: text("model", "requested or served"),
    provider: select([["", "Any provider"], ...(cfg.providers || []).map((p) => [p.name, p.name])], values.provider, { id: "log-provider" }),
    status: h("input", { type: "number", id: "log-status", min: "100", max: "599", value: values.status, placeholder: "e.g. 402" }),
    error_type: text("error_type", "e.g. budget_exceeded"),
    request_id: text("request_id", "x-request-id"),
    range: select(PERIODS, values.range, { id: "log-range" }),
    errors_only: h("input", { type: "checkbox", id: "log-errors", checked: values.errors_only === "1" }),
  };
  const form = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter the request log" },
    field("Key id", controls.key_id),
    field("Team id", controls.team_id),
    field("Model", controls.model),
    field("Provider", controls.provider),
    field("Status", controls.status),
    field("Error type", controls.error_type),
    field("Request id", controls.request_id),
    field("Time", controls.range),
    h("div", { class: "field check" }, controls.errors_only, h("label", { for: "log-errors" }, "Errors only")),
    h("div", { class: "field actions-inline" }, h("button", { type: "submit", class: "primary" }, "Apply"), h("a", { href: "#/logs", class: "button ghost" }, "Clear")),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    for (const name of FIELDS) {
      const control = controls[name];
      const value = name === "errors_only" ? (control.checked ? "1" : "") : control.value.trim();
      if (value) params.set(name, value);
    }
    navigate(`#/logs?${params}`);
  });

  const results = h("div", {});
  const cursors = [""]; // the page tokens of the pages seen, for "Newer"
  async function load(page) {
    const request = { page_size: 50, page_token: cursors[page] };
    for (const name of ["key_id", "team_id", "model", "provider", "status", "error_type", "request_id"]) if (values[name]) request[name] = values[name];
    if (values.errors_only === "1") request.errors_only = true;
    if (values.range) request.start_time = Date.now() / 1000 - Number(values.range);
    const data = await api.get("logs", request);
    const entries = data.entries || [];
    if (data.next_page_token) cursors[page + 1] = data.next_page_token;
    const newer = h("button", { type: "button", disabled: page === 0, on: { click: () => load(page - 1) } }, "← Newer");
    const older = h("button", { type: "button", id: "older", disabled: !data.next_page_token, on: { click: () => load(page + 1) } }, "Older →");
    replace(
      results,
      entries.length ? logTable(entries, navigate) : empty("No request matches these filters."),
      h("nav", { class: "pager", "aria-label": "Pages" }, newer, h("span", { class: "muted", role: "status" }, `Page ${page + 1} · ${entries.length} requests`), older),
    );
    main.dataset.ready = "logs";
  }
  replace(
    main,
    pageHeader("Request logs", cfg.request_logs_include_content ? "Every request, newest first. Prompts and completions are kept (request_logs.include_content)." : "Every request, newest first. Prompts and completions are not kept (request_logs.include_content is off)."),
    form,
    results,
  );
  await load(0);
}
