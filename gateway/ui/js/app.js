// The console's shell: sign-in, navigation, the open-mode banner and the hash router.
// Pages live in js/pages/, one module each; each exports `render(main, params)` and may
// return a cleanup function (timers, charts).

import * as api from "./api.js";
import { h, replace, describe } from "./dom.js";
import * as overview from "./pages/overview.js";
import * as keys from "./pages/keys.js";
import * as keyDetail from "./pages/key-detail.js";
import * as teams from "./pages/teams.js";
import * as teamDetail from "./pages/team-detail.js";
import * as logs from "./pages/logs.js";
import * as logDetail from "./pages/log-detail.js";
import * as providers from "./pages/providers.js";
import * as cache from "./pages/cache.js";

const PAGES = [
  { path: "overview", title: "Overview", page: overview },
  { path: "keys", title: "Virtual keys", page: keys, detail: keyDetail },
  { path: "teams", title: "Teams", page: teams, detail: teamDetail },
  { path: "logs", title: "Request logs", page: logs, detail: logDetail },
  { path: "providers", title: "Providers", page: providers },
  { path: "cache", title: "Cache", page: cache },
];

const root = document.getElementById("app");
let cleanup = null;
let signOutNotice = "";

function parseHash() {
  const raw = window.location.hash.replace(/^#\/?/, "");
  const [path, queryText = ""] = raw.split("?");
  const [section = "overview", ...rest] = path.split("/").map(decodeURIComponent);
  return { section, id: rest.join("/"), query: new URLSearchParams(queryText) };
}

export function navigate(hash) {
  if (window.location.hash === hash) route();
  else window.location.hash = hash;
}

function signInView(message) {
  const input = h("input", { type: "password", id: "credential", name: "credential", autocomplete: "off", required: true, spellcheck: "false" });
  const status = h("div", { class: "signin-status", role: "alert", id: "signin-status" }, message || "");
  const submit = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h(
    "form",
    { class: "signin-card", "aria-labelledby": "signin-title" },
    h("div", { class: "brand brand-large" }, h("span", { class: "brand-mark", "aria-hidden": "true" }, "⇄"), "Switchyard"),
    h("h1", { id: "signin-title" }, "Sign in to the console"),
    h("p", { class: "muted" }, "Use the gateway's admin token (SWITCHYARD_ADMIN_TOKEN) or an admin JWT: the same credentials as the Admin API. It is kept for this browser tab's session only."),
    h("div", { class: "field" }, h("label", { for: "credential" }, "Admin token or admin JWT"), input),
    status,
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (!token) return;
    submit.disabled = true;
    status.className = "signin-status";
    status.textContent = "Checking…";
    try {
      // An admin-only call: a virtual key (or a wrong token) is refused here.
      await api.call("GET", "config", { token });
      api.keepCredential(token);
      input.value = "";
      signOutNotice = "";
      start();
    } catch (err) {
      status.className = "signin-status alert alert-error";
      status.textContent = signInError(err);
      input.select();
    } finally {
      submit.disabled = false;
    }
  });
  replace(root, h("main", { id: "main", class: "signin" }, form));
  input.focus();
}

function signInError(err) {
  if (err.status === 403 && err.type === "admin_required") {
    return "That is a virtual key. Virtual keys call models; the console needs the admin token or an admin JWT.";
  }
  if (err.status === 401) return "That credential was not accepted: check the admin token (or that the JWT is an admin one and has not expired).";
  return `Could not sign in: ${describe(err)}`;
}

function signOut(message = "") {
  api.forgetCredential();
  api.resetCaches();
  if (cleanup) cleanup();
  cleanup = null;
  signOutNotice = message;
  history.replaceState(null, "", window.location.pathname);
  signInView(message);
}

let main = null;
let nav = null;
let banner = null;

function shell() {
  const links = PAGES.map(({ path, title }) => h("li", {}, h("a", { href: `#/${path}`, dataset: { section: path } }, title)));
  nav = h("nav", { class: "nav", "aria-label": "Console sections" }, h("ul", {}, links));
  banner = h("div", { class: "banners" });
  main = h("main", { id: "main", class: "content", tabindex: "-1" });
  const header = h(
    "header",
    { class: "topbar" },
    h("a", { class: "brand", href: "#/overview" }, h("span", { class: "brand-mark", "aria-hidden": "true" }, "⇄"), "Switchyard"),
    nav,
    h("button", { type: "button", class: "ghost signout", on: { click: () => signOut("You are signed out.") } }, "Sign out"),
  );
  replace(root, header, h("div", { class: "page" }, banner, main));
}

async function showBanners() {
  try {
    const cfg = await api.config();
    replace(
      banner,
      cfg.auth_required
        ? null
        : h(
            "div",
            { class: "alert alert-warn", role: "status", id: "open-mode" },
            h("strong", {}, "This gateway is open. "),
            "auth.required is false: calls without a credential are served with no limits, budgets or rate limits. Virtual keys still get their own rules.",
          ),
    );
  } catch {
    /* the page itself reports API errors */
  }
}

async function route() {
  if (!api.savedCredential()) return signInView(signOutNotice);
  if (!main) {
    shell();
    showBanners();
  }
  const { section, id, query } = parseHash();
  const entry = PAGES.find((p) => p.path === section) || PAGES[0];
  for (const a of nav.querySelectorAll("a")) {
    if (a.dataset.section === entry.path) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (cleanup) cleanup();
  cleanup = null;
  const page = id && entry.detail ? entry.detail : entry.page;
  document.title = `${entry.title} · Switchyard`;
  replace(main, h("p", { class: "loading" }, "Loading…"));
  try {
    cleanup = (await page.render(main, { id, query, navigate })) || null;
  } catch (err) {
    if (err.status === 401) return; // signOut already ran
    replace(main, h("div", { class: "alert alert-error", role: "alert" }, `This page could not load: ${describe(err)}`));
  }
}

function start() {
  main = null;
  if (!window.location.hash) history.replaceState(null, "", "#/overview");
  route();
}

api.whenUnauthorized(() => {
  if (api.savedCredential()) signOut("Your session ended (the credential is no longer accepted). Sign in again.");
});
window.addEventListener("hashchange", () => {
  route();
  if (main) main.focus({ preventScroll: true });
});
start();
