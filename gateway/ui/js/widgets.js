// Pieces several pages share: page headers, the range picker, stat cards, key forms.

import { h, field, select } from "./dom.js";
import * as fmt from "./format.js";

export function pageHeader(title, subtitle, ...actions) {
  return h(
    "div",
    { class: "page-head" },
    h("div", {}, h("h1", {}, title), subtitle ? h("p", { class: "muted" }, subtitle) : null),
    actions.length ? h("div", { class: "actions" }, actions) : null,
  );
}

// 1 h / 24 h / 7 d / 30 d as a radio group: arrow keys move between options natively.
let pickers = 0;
export function rangePicker(current, onChange) {
  const name = `range${++pickers}`;
  return h(
    "fieldset",
    { class: "segmented" },
    h("legend", { class: "sr-only" }, "Time range"),
    fmt.RANGES.map(([value, label]) => {
      const id = `${name}-${value}`;
      const input = h("input", { type: "radio", name, id, value, checked: value === current });
      input.addEventListener("change", () => input.checked && onChange(value));
      return h("span", {}, input, h("label", { for: id }, label));
    }),
  );
}

export function stat(label, value, detail, kind = "") {
  return h(
    "div",
    { class: ["stat", kind && `stat-${kind}`] },
    h("div", { class: "stat-label" }, label),
    h("div", { class: "stat-value" }, value),
    detail ? h("div", { class: "stat-detail" }, detail) : null,
  );
}

export function card(title, ...body) {
  return h("section", { class: "card", "aria-label": title }, h("h2", {}, title), body);
}

export function listText(values) {
  return (values || []).join(", ");
}

export function parseList(text) {
  return text
    .split(/[\n,]/)
    .map((s) => s.trim())
    .filter(Boolean);
}

// The fields of a budget; read() gives {budget} or {clear: true} or null (invalid).
export function budgetFields(budget) {
  const max = h("input", { type: "number", min: "0", step: "0.01", inputmode: "decimal", value: budget ? String(budget.max_usd) : "", placeholder: "no budget" });
  const reset = select(
    [
      ["1h", "every hour"],
      ["1d", "every day"],
      ["1w", "every week"],
      ["1mo", "every month"],
    ],
    budget ? budget.reset : "1mo",
  );
  return {
    nodes: [field("Budget (USD)", max, "Empty: no budget."), field("Budget resets", reset)],
    read() {
      if (max.value.trim() === "") return { clear: true };
      const value = Number(max.value);
      if (!(value >= 0)) return null;
      return { budget: { max_usd: value, reset: reset.value } };
    },
  };
}
