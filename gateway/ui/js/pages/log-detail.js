// One request: outcome, attempts, retries and fallbacks, tokens, cost, latency; its prompt and
// completion when the config keeps content. All of it is untrusted text and rendered as text.

import { api, config } from "../api.js";
import { h, replace, table, badge, definitionList, empty } from "../dom.js";
import * as fmt from "../format.js";
import { card, pageHeader } from "../widgets.js";

function parse(text, fallback) {
  try {
    return text ? JSON.parse(text) : fallback;
  } catch {
    return fallback;
  }
}

// What the failed attempts say about retries and fallbacks.
export function journey(entry, attempts) {
  const tried = attempts.filter((a) => a.error_type !== "fallback_skipped" && a.error_type !== "circuit_open");
  const targets = [];
  for (const a of tried) {
    const t = `${a.provider}/${a.model}`;
    if (!targets.includes(t)) targets.push(t);
  }
  const served = entry.provider ? (entry.model_served ? `${entry.provider}/${entry.model_served}` : entry.provider) : "";
  const first = targets[0] || served;
  return {
    retries: tried.length - targets.length + (served && targets.includes(served) ? 1 : 0),
    fellBack: Boolean(served && first && served !== first),
    skipped: attempts.filter((a) => a.error_type === "fallback_skipped" || a.error_type === "circuit_open"),
    served,
  };
}

function messageText(content) {
  if (content === null || content === undefined) return "";
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map((part) => (part && typeof part.text === "string" ? part.text : JSON.stringify(part))).join("\n");
  return JSON.stringify(content, null, 2);
}

export async function render(main, { id }) {
  const [entry, cfg] = await Promise.all([api.get(`logs/${encodeURIComponent(id)}`), config()]);
  const attempts = parse(entry.attempts_json, []);
  const path = journey(entry, Array.isArray(attempts) ? attempts : []);
  const content = entry.content_json ? parse(entry.content_json, null) : null;
  const cache = { exact: "exact hit", semantic: "semantic hit", miss: "miss (answer stored)" }[entry.cache_hit_type] || "";

  const outcome = entry.status < 400 ? (path.fellBack ? "served by a fallback" : "served") : entry.error_type || "failed";
  replace(
    main,
    h("p", { class: "crumbs" }, h("a", { href: "#/logs" }, "Request logs"), " / ", entry.request_id || entry.id),
    pageHeader(`Request ${entry.request_id || entry.id}`, `${fmt.when(entry.ts)} · ${entry.request_type}`),
    h(
      "div",
      { class: "grid-2" },
      card(
        "Outcome",
        definitionList([
          ["Status", h("span", {}, badge(String(entry.status), fmt.statusKind(entry.status)), " ", outcome)],
          entry.error_type ? ["Error type", entry.error_type] : null,
          ["Model requested", entry.model_requested || "—"],
          entry.status < 400 ? ["Served by", path.served || "nobody"] : ["Last tried", path.served || "nobody"],
          ["Retries", fmt.count(Math.max(0, path.retries))],
          ["Fallback", path.fellBack ? "yes: the primary failed" : "no"],
          ["Cache", cache ? h("span", {}, cache, entry.cache_id ? h("div", { class: "muted small mono" }, entry.cache_id) : null) : "not used"],
          ["Key", entry.key_id ? h("a", { href: `#/keys/${encodeURIComponent(entry.key_id)}` }, entry.key_id) : "— (admin or open mode)"],
          ["Team", entry.team_id ? h("a", { href: `#/teams/${encodeURIComponent(entry.team_id)}` }, entry.team_id) : "—"],
        ]),
      ),
      card(
        "Cost and time",
        definitionList([
          ["Latency", fmt.ms(entry.latency_ms)],
          ["Prompt tokens", fmt.count(entry.prompt_tokens)],
          ["Completion tokens", fmt.count(entry.completion_tokens)],
          ["Total tokens", fmt.count(entry.total_tokens)],
          ["Cost", entry.cost === undefined ? "— (the model has no price)" : fmt.usd(entry.cost)],
          ["Request id", h("span", { class: "mono" }, entry.request_id || "—")],
          ["Log entry", h("span", { class: "mono" }, entry.id)],
        ]),
      ),
    ),
    card(
      "Attempts",
      Array.isArray(attempts) && attempts.length
        ? table(
            [
              ["#", (_a) => String(attempts.indexOf(_a) + 1), "num"],
              ["Provider", (a) => a.provider || "—"],
              ["Model", (a) => a.model || "—"],
              ["Status", (a) => (a.status_code ? badge(String(a.status_code), fmt.statusKind(a.status_code)) : "—")],
              ["What happened", (a) => a.error_type || ""],
              // A stream broken mid-answer (then continued elsewhere) still spent tokens.
              ["Billed", (a) => (a.total_tokens ? `${fmt.count(a.total_tokens)} tokens${a.usage_estimated ? " (estimated)" : ""}${typeof a.cost === "number" ? `, ${fmt.usd(a.cost)}` : ""}` : "")],
            ],
            attempts,
            { caption: "Attempts besides the answer: failed, skipped, continued or hedged" },
          )
        : empty(
            !path.served
              ? "No upstream attempt (refused before routing)."
              : entry.status < 400
                ? `One attempt: ${path.served} answered first time.`
                : `One attempt: ${path.served} failed (${entry.error_type || entry.status}).`,
          ),
      path.served && attempts.length && entry.status < 400 ? h("p", { class: "muted small" }, `Then ${path.served} answered.`) : null,
    ),
    card(
      "Prompt and completion",
      content
        ? h(
            "div",
            { class: "transcript" },
            (content.messages || []).map((m) => h("div", { class: "message" }, h("div", { class: "role" }, String(m.role || "?")), h("pre", { class: "message-text" }, messageText(m.content)))),
            h("div", { class: "message completion" }, h("div", { class: "role" }, "completion"), h("pre", { class: "message-text" }, messageText(content.completion))),
          )
        : empty(cfg.request_logs_include_content ? "No content was kept for this request." : "Content is not kept: request_logs.include_content is off."),
    ),
  );
  main.dataset.ready = "log-detail";
}
