// The HTTP client: the bearer token, JSON errors, and a run's event stream (SSE read with fetch, so it can
// send `Authorization` and `Last-Event-ID`, which EventSource cannot).

const TOKEN_KEY = "teamster.token";
const TERMINAL = new Set(["workflow_complete", "workflow_error"]);
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 15000;

export function getToken() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

/** An error reply of the API: `{error, code}` with its HTTP status. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let unauthorizedHandler = () => {};

/** Called with the ApiError whenever the server answers 401 (the page opens its settings then). */
export function onUnauthorized(handler) {
  unauthorizedHandler = handler;
}

function authHeaders(extra = {}) {
  const token = getToken();
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

async function errorOf(response) {
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    // not JSON (a proxy's page, say): the status line has to do
  }
  const error = new ApiError(
    response.status,
    payload?.code ?? `http_${response.status}`,
    payload?.error ?? `${response.status} ${response.statusText || "error"}`,
  );
  if (response.status === 401) unauthorizedHandler(error);
  return error;
}

/** Call the API: JSON in, JSON out; a non-2xx reply throws ApiError. */
export async function api(path, { method = "GET", body, signal } = {}) {
  const init = {
    method,
    signal,
    headers: authHeaders(body === undefined ? {} : { "Content-Type": "application/json" }),
  };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await fetch(path, init);
  if (!response.ok) throw await errorOf(response);
  return response.status === 204 ? null : response.json();
}

export const runPath = (runId, rest = "") => `/runs/${encodeURIComponent(runId)}${rest}`;

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** One SSE frame (`id: N` / `data: …` lines) → the parsed data, or null for comments and empty frames. */
function parseFrame(frame) {
  const data = [];
  for (const raw of frame.split("\n")) {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (!line || line.startsWith(":")) continue; // `: keepalive`
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    if (field === "data") data.push(line.slice(colon + 1).replace(/^ /, ""));
  }
  return data.length ? JSON.parse(data.join("\n")) : null;
}

/**
 * Follows one run's events: first the stored events as JSON pages from `after`, then the live SSE stream
 * from the last seq seen. A dropped connection is retried with backoff and resumed with `Last-Event-ID`;
 * events are handed on once each, in seq order.
 *
 * handlers: `onEvents(events)`, `onConnection(state, detail)` with state connecting | live | retrying | closed,
 * `onError(error)` for a reply that retrying cannot fix (401, 404).
 */
export class RunFollower {
  constructor(runId, handlers, after = 0) {
    this.runId = runId;
    this.handlers = handlers;
    this.lastSeq = after;
    this.done = false;
    this.controller = new AbortController();
  }

  stop() {
    this.controller.abort();
  }

  get stopped() {
    return this.controller.signal.aborted;
  }

  async start() {
    const { signal } = this.controller;
    let delay = 0;
    let failures = 0;
    let caughtUp = false;
    while (!this.stopped && !this.done) {
      const before = this.lastSeq;
      try {
        this.handlers.onConnection?.("connecting");
        if (!caughtUp) {
          await this.catchUp();
          caughtUp = true;
        }
        if (!this.done) await this.stream();
        failures = 0;
      } catch (error) {
        if (this.stopped) break;
        if (error instanceof ApiError && error.status < 500) {
          this.handlers.onError?.(error);
          break;
        }
        failures += 1;
      }
      if (this.done || this.stopped) break;
      // A connection that brought events resets the backoff; repeated failures double it.
      if (this.lastSeq > before) failures = Math.min(failures, 1);
      delay = failures ? Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** (failures - 1)) : RETRY_MIN_MS;
      this.handlers.onConnection?.("retrying", delay);
      await sleep(delay, signal);
    }
    this.handlers.onConnection?.("closed");
  }

  deliver(events) {
    const fresh = events.filter((event) => event.seq > this.lastSeq).sort((a, b) => a.seq - b.seq);
    if (!fresh.length) return;
    this.lastSeq = fresh[fresh.length - 1].seq;
    if (fresh.some((event) => TERMINAL.has(event.type))) this.done = true;
    this.handlers.onEvents(fresh);
  }

  /** The stored events, page by page (`?after=`), until a page says done or brings nothing new. */
  async catchUp() {
    for (;;) {
      const page = await api(runPath(this.runId, `/events?after=${this.lastSeq}`), { signal: this.controller.signal });
      const before = this.lastSeq;
      this.deliver(page.events);
      if (page.done) this.done = true;
      if (this.done || this.lastSeq === before) return;
    }
  }

  /** The live stream from the last seq; returns when the server closes it. */
  async stream() {
    const headers = authHeaders({ Accept: "text/event-stream" });
    if (this.lastSeq > 0) headers["Last-Event-ID"] = String(this.lastSeq);
    const response = await fetch(runPath(this.runId, "/events"), { headers, signal: this.controller.signal });
    if (!response.ok) throw await errorOf(response);
    this.handlers.onConnection?.("live");
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += value;
        const frames = buffer.split(/\r?\n\r?\n/);
        buffer = frames.pop();
        this.deliver(frames.map(parseFrame).filter(Boolean));
        if (this.done) return;
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }
}
