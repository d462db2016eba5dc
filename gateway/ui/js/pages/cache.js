// Cache: stats and clearing, once the response cache lands (branch `cache`). Until its admin
// routes exist this page says so; when they do, it is the one place to fill in.

import { h, replace } from "../dom.js";
import { pageHeader } from "../widgets.js";

export async function render(main) {
  replace(
    main,
    pageHeader("Cache", "Response-cache statistics and clearing."),
    h("section", { class: "card" }, h("h2", {}, "Not available yet"), h("p", {}, "This Switchyard has no response cache. When it does, its hit rate, size and a clear button appear here.")),
  );
}
