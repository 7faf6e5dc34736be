// The only door to the exchange: the public REST API under /api/v1, with the session token from the login.

// Served by the exchange itself the API is on the same origin. Hosted elsewhere, the page names the exchange in
// <meta name="hipper-api" content="https://pbx.example.com"> and the exchange allows that origin (cors_origins).
const EXCHANGE = document.querySelector('meta[name="hipper-api"]')?.getAttribute("content") || "";
export const BASE = `${EXCHANGE.replace(/\/+$/, "")}/api/v1`;
const TOKEN_KEY = "hipper.token";

export class ApiError extends Error {
  constructor(status, body) {
    const detail = body && body.detail;
    super(typeof detail === "string" ? detail : `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
    this.detail = detail;
  }

  // An endpoint or service that this exchange does not offer (yet): the screen shows "not available".
  get unavailable() {
    return this.status === 404 || this.status === 405 || this.code === "not_licensed";
  }

  // Field errors of a 422, keyed by the dotted field path ("targets.1.number"; "_" for the whole body):
  // { code, limits } as the exchange names them (docs/api.md), translated by ui.js fieldText().
  get fields() {
    const out = {};
    if (Array.isArray(this.detail)) {
      for (const item of this.detail) {
        const path = item.field ?? (item.loc || []).filter((part) => part !== "body" && part !== "query").join(".");
        out[path || "_"] = { code: item.code || "invalid", limits: item.limits || {} };
      }
    }
    return out;
  }
}

export class Cancelled extends Error {}

let stepUp = null;
let onUnauthorized = null;

export const session = {
  get token() {
    return localStorage.getItem(TOKEN_KEY);
  },
  set token(value) {
    if (value) localStorage.setItem(TOKEN_KEY, value);
    else localStorage.removeItem(TOKEN_KEY);
  },
};

// The step-up dialog registers itself here; a 403 step_up_required runs it and retries the request once.
export function setStepUpHandler(handler) {
  stepUp = handler;
}

export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

const REQUEST_TIMEOUT_MS = 30_000;

// `raw` sends the body as it is (a file, a FormData) with `contentType` (none for FormData: the browser sets it).
export async function request(method, path, body, { retryStepUp = true, blob = false, raw = false, contentType } = {}) {
  const headers = { Accept: blob ? "*/*" : "application/json" };
  const token = session.token;
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined && !raw) headers["Content-Type"] = "application/json";
  if (raw && contentType) headers["Content-Type"] = contentType;
  let response;
  try {
    response = await fetch(BASE + path, {
      method,
      headers,
      body: body === undefined ? undefined : raw ? body : JSON.stringify(body),
      // A request that hangs (a dead link the browser does not notice) ends as "offline", not never: the app's
      // saves go one after another (state.js), so one hung request would hold up every later one. Uploads and
      // downloads may take longer on a slow link.
      signal: raw || blob ? undefined : AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch {
    throw new ApiError(0, { detail: "offline", code: "offline" });
  }
  if (response.ok && blob) return response.blob();
  let data = null;
  if (response.status !== 204 && (response.headers.get("Content-Type") || "").includes("json")) {
    data = await response.json();
  }
  if (!response.ok) {
    const error = new ApiError(response.status, data);
    if (response.status === 403 && error.code === "step_up_required" && retryStepUp && stepUp) {
      await stepUp(); // throws Cancelled when the user gives up
      return request(method, path, body, { retryStepUp: false, blob, raw, contentType });
    }
    if (response.status === 401 && token && onUnauthorized) onUnauthorized();
    throw error;
  }
  return data;
}

export const api = {
  get: (path, options) => request("GET", path, undefined, options),
  post: (path, body) => request("POST", path, body),
  put: (path, body) => request("PUT", path, body),
  patch: (path, body) => request("PATCH", path, body),
  del: (path, body) => request("DELETE", path, body),
  upload: (path, body, contentType) => request("POST", path, body, { raw: true, contentType }),
};

// Lists may come bare or wrapped ({items: [...]}, {voicemails: [...]}): take the first array.
export function listOf(data) {
  if (Array.isArray(data)) return data;
  if (data && typeof data === "object") {
    for (const value of Object.values(data)) if (Array.isArray(value)) return value;
  }
  return [];
}

// Live events (SPEC D3, B1). EventSource cannot send the Authorization header, so the stream is read with
// fetch and parsed here (text/event-stream: "event:" and "data:" lines, a blank line ends an event).
// A reconnect sends the id of the last event seen (Last-Event-ID), so the exchange first sends what was missed
// meanwhile, or `events.reset` when that is no longer kept.
export function listenToEvents(onEvent, signal) {
  let delay = 2000;
  let lastId = null;
  const run = async () => {
    while (!signal.aborted) {
      try {
        const headers = { Authorization: `Bearer ${session.token}`, Accept: "text/event-stream" };
        if (lastId !== null) headers["Last-Event-ID"] = lastId;
        const response = await fetch(`${BASE}/events`, { headers, signal });
        if (response.status === 404 || response.status === 401) return; // not offered (yet), or logged out
        if (!response.ok || !response.body) throw new Error(String(response.status));
        delay = 2000;
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
            let type = "message";
            const data = [];
            for (const line of block.split(/\r?\n/)) {
              if (line.startsWith("event:")) type = line.slice(6).trim();
              else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
              else if (line.startsWith("id:")) lastId = line.slice(3).trim();
            }
            if (data.length === 0 && type === "message") continue;
            let payload = data.join("\n");
            try {
              payload = JSON.parse(payload);
            } catch {
              /* plain text event */
            }
            onEvent(type, payload);
          }
        }
      } catch {
        if (signal.aborted) return;
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 60000);
    }
  };
  run();
}
