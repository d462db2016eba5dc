// The only way the console builds DOM. Every value becomes a text node or a property: nothing
// here (or anywhere in the console) assigns innerHTML/outerHTML or calls insertAdjacentHTML,
// so text from the request log (prompts, completions, model names) can never become markup.

const PROPS = new Set(["value", "checked", "disabled", "selected", "hidden", "open", "readOnly", "required", "multiple"]);

// h("a", {href: "#/keys", class: "x", on: {click: fn}}, "text", child, [more children])
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "on") {
      for (const [event, fn] of Object.entries(value)) el.addEventListener(event, fn);
    } else if (name === "class") {
      el.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : value;
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (name === "href") {
      el.setAttribute("href", safeHref(value));
    } else if (PROPS.has(name)) {
      el[name] = value;
    } else if (name.startsWith("on")) {
      throw new Error("use the `on` map for events, not attributes");
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

// Only in-app (#/...) and same-origin relative links: a value from the log cannot become javascript:.
function safeHref(value) {
  const text = String(value);
  return text.startsWith("#") || text.startsWith("./") || text.startsWith("/") ? text : "#";
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

// A labelled form control: every input has a <label for>.
let nextId = 0;
export function field(label, control, hint) {
  if (!control.id) control.id = `f${++nextId}`;
  const parts = [h("label", { for: control.id }, label), control];
  if (hint) {
    const hintEl = h("small", { class: "hint", id: `${control.id}-hint` }, hint);
    control.setAttribute("aria-describedby", hintEl.id);
    parts.push(hintEl);
  }
  return h("div", { class: "field" }, parts);
}

export function select(options, value, attrs = {}) {
  return h(
    "select",
    attrs,
    options.map(([v, label]) => h("option", { value: v, selected: v === value }, label)),
  );
}

// A button whose action may be async: disabled while it runs.
export function button(label, action, attrs = {}) {
  const el = h("button", { type: "button", ...attrs }, label);
  el.addEventListener("click", async (event) => {
    if (el.disabled) return;
    el.disabled = true;
    try {
      await action(event);
    } finally {
      el.disabled = false;
    }
  });
  return el;
}

export function badge(text, kind = "") {
  return h("span", { class: ["badge", kind && `badge-${kind}`] }, text);
}

export function empty(text) {
  return h("p", { class: "empty" }, text);
}

export function errorBox(err) {
  return h("div", { class: "alert alert-error", role: "alert" }, describe(err));
}

export function describe(err) {
  if (err && err.status) return `${err.message} (HTTP ${err.status}${err.type ? `, ${err.type}` : ""})`;
  return String(err && err.message ? err.message : err);
}

// A table from rows; `columns` are [header, (row) => cell content, className?].
export function table(columns, rows, { caption, onRow, rowLabel } = {}) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      caption ? h("caption", { class: "sr-only" }, caption) : null,
      h("thead", {}, h("tr", {}, columns.map(([title, , cls]) => h("th", { scope: "col", class: cls }, title)))),
      h(
        "tbody",
        {},
        rows.map((row) => {
          const tr = h("tr", {}, columns.map(([, cell, cls]) => h("td", { class: cls }, cell(row))));
          if (onRow) {
            // Rows that open something are reachable and usable from the keyboard too.
            tr.tabIndex = 0;
            tr.classList.add("clickable");
            if (rowLabel) tr.setAttribute("aria-label", rowLabel(row));
            tr.addEventListener("click", (event) => {
              if (!event.target.closest("a, button")) onRow(row);
            });
            tr.addEventListener("keydown", (event) => {
              if ((event.key === "Enter" || event.key === " ") && event.target === tr) {
                event.preventDefault();
                onRow(row);
              }
            });
          }
          return tr;
        }),
      ),
    ),
  );
}

// A modal dialog (native <dialog>: focus stays inside, Escape closes it).
export function dialog(title, body, { onClose } = {}) {
  const titleId = `d${++nextId}`;
  const el = h(
    "dialog",
    { class: "dialog", "aria-labelledby": titleId },
    h("div", { class: "dialog-head" }, h("h2", { id: titleId }, title), h("button", { type: "button", class: "icon", "aria-label": "Close", on: { click: () => el.close() } }, "×")),
    body,
  );
  el.addEventListener("close", () => {
    el.remove();
    if (onClose) onClose();
  });
  document.body.appendChild(el);
  el.showModal();
  return el;
}

export function definitionList(pairs) {
  return h(
    "dl",
    { class: "facts" },
    pairs.filter(Boolean).map(([term, value]) => h("div", {}, h("dt", {}, term), h("dd", {}, value))),
  );
}
