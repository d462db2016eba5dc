// Cache: the response cache's figures (this replica's lookups, the store's entries) and clearing,
// by partition (a key's, a team's, or the shared one), by cache key, or one entry by id.

import { allKeys, api } from "../api.js";
import { h, replace, field, select, describe } from "../dom.js";
import * as fmt from "../format.js";
import { confirm } from "./key-detail.js";
import { card, pageHeader, stat } from "../widgets.js";

export async function render(main) {
  const [stats, keys, teamsData] = await Promise.all([api.get("cache/stats"), allKeys(), api.get("teams")]);
  if (!stats.enabled) {
    replace(
      main,
      pageHeader("Cache", "Response-cache statistics and clearing."),
      card("The response cache is off", h("p", {}, 'Turn it on with cache.enabled in the config (README, "Response cache"): repeated and similar requests are then answered from the cache, and its figures appear here.')),
    );
    main.dataset.ready = "cache";
    return null;
  }
  const hits = Number(stats.exact_hits || 0) + Number(stats.semantic_hits || 0);
  const lookups = hits + Number(stats.misses || 0);
  const figures = h(
    "div",
    { class: "stats" },
    stat("Hit rate", fmt.percent(hits, lookups), `${fmt.count(hits)} of ${fmt.count(lookups)} lookups (this replica)`),
    stat("Exact / semantic hits", `${fmt.short(stats.exact_hits)} / ${fmt.short(stats.semantic_hits)}`, `${fmt.count(stats.misses)} misses`),
    stat("Entries", fmt.count(stats.entries), `${fmt.short(stats.bytes)} bytes in ${stats.store}`),
    stat("Writes", fmt.count(stats.writes), `${fmt.count(stats.write_failures)} failed · ${fmt.count(stats.writes_dropped)} dropped`, Number(stats.write_failures) ? "warn" : ""),
  );
  const partition = select(
    [["shared", "Shared (calls without a virtual key)"], ...keys.map((k) => [`key:${k.id}`, `Key ${k.name || k.id}`]), ...(teamsData.teams || []).map((t) => [`team:${t.id}`, `Team ${t.name || t.id}`])],
    "shared",
    { id: "cache-partition" },
  );
  const cacheKey = h("input", { type: "text", id: "cache-key", autocomplete: "off", placeholder: "every entry of the partition" });
  const entryId = h("input", { type: "text", id: "cache-entry", autocomplete: "off", placeholder: "from a request's detail" });
  const result = h("p", { role: "status", class: "muted" });
  const clearPartition = h("button", { type: "button", class: "danger" }, "Clear partition");
  clearPartition.addEventListener("click", () =>
    confirm("Clear cached answers?", `Every entry of ${partition.selectedOptions[0].textContent}${cacheKey.value ? ` under cache key ${cacheKey.value}` : ""} is removed.`, "Clear", async () => {
      const body = { partition: partition.value };
      if (cacheKey.value.trim()) body.cache_key = cacheKey.value.trim();
      const done = await api.post("cache/clear", body);
      result.textContent = `${fmt.count(done.deleted)} entries removed.`;
    }),
  );
  const clearEntry = h("button", { type: "button", class: "danger" }, "Clear entry");
  clearEntry.addEventListener("click", async () => {
    if (!entryId.value.trim()) return;
    try {
      const done = await api.del(`cache/entries/${encodeURIComponent(entryId.value.trim())}`);
      result.textContent = `${fmt.count(done.deleted)} entry removed.`;
    } catch (err) {
      result.textContent = describe(err);
    }
  });
  replace(
    main,
    pageHeader("Cache", "Response-cache statistics and clearing. Hits and misses are this replica's since it started."),
    figures,
    card(
      "Clear",
      h("div", { class: "filters" }, field("Partition", partition), field("Cache key (x-bf-cache-key)", cacheKey), h("div", { class: "field actions-inline" }, clearPartition)),
      h("div", { class: "filters" }, field("Entry id", entryId), h("div", { class: "field actions-inline" }, clearEntry)),
      result,
    ),
  );
  main.dataset.ready = "cache";
  return null;
}
