// The Admin API client. The credential lives in sessionStorage (this tab's session only; gone
// when the browser closes) and in memory; never in localStorage, a cookie or a URL.

const STORAGE_KEY = "switchyard.console.credential";
let credential = null;

export class ApiError extends Error {
  constructor(status, type, message, body) {
    super(message);
    this.status = status;
    this.type = type;
    this.body = body;
  }
}

export function savedCredential() {
  if (credential === null) credential = sessionStorage.getItem(STORAGE_KEY);
  return credential;
}

export function keepCredential(value) {
  credential = value;
  sessionStorage.setItem(STORAGE_KEY, value);
}

export function forgetCredential() {
  credential = null;
  sessionStorage.removeItem(STORAGE_KEY);
}

// Called when a call answers 401: the session ended (token rotated, JWT expired).
let onUnauthorized = () => {};
export function whenUnauthorized(fn) {
  onUnauthorized = fn;
}

export async function call(method, path, { query, body, token } = {}) {
  const url = new URL(`/api/${path}`, window.location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, String(value));
  }
  const headers = { accept: "application/json" };
  const using = token ?? savedCredential();
  if (using) headers.authorization = `Bearer ${using}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
      referrerPolicy: "no-referrer",
    });
  } catch (err) {
    throw new ApiError(0, "network_error", `the gateway did not answer: ${err.message}`);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message = (data && data.error && data.error.message) || `HTTP ${response.status}`;
    const error = new ApiError(response.status, data && data.type, message, data);
    if (response.status === 401 && token === undefined) onUnauthorized(error);
    throw error;
  }
  return data ?? {};
}

export const api = {
  get: (path, query) => call("GET", path, { query }),
  post: (path, body) => call("POST", path, { body: body ?? {} }),
  patch: (path, body) => call("PATCH", path, { body }),
  put: (path, body) => call("PUT", path, { body }),
  del: (path) => call("DELETE", path),
};

// Every page of a paged list (keys): the console filters them client-side.
export async function allKeys() {
  const keys = [];
  let token = "";
  for (let page = 0; page < 50; page++) {
    const data = await api.get("keys", { page_size: 1000, page_token: token });
    keys.push(...(data.keys || []));
    token = data.next_page_token;
    if (!token) break;
  }
  return keys;
}

let configPromise = null;
export function config({ refresh = false } = {}) {
  if (refresh || configPromise === null) {
    configPromise = api.get("config").catch((err) => {
      configPromise = null;
      throw err;
    });
  }
  return configPromise;
}

export function resetCaches() {
  configPromise = null;
}
