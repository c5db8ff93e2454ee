// The page's link to the server: the WebSocket with resume, the polling fallback while it is
// down, and the REST client with the token the server may ask for.

/** @typedef {import("./types").Extension} Extension */
/** @typedef {import("./types").ServerMessage} ServerMessage */
/** @typedef {import("./types").PbxLink} PbxLink */
/** @typedef {import("./types").ApiErrorBody} ApiErrorBody */

const TOKEN_KEY = "extstatus.token";

/** The token for this tab, if one was given. */
export const token = {
  /** @returns {string | null} */
  get() {
    try {
      return sessionStorage.getItem(TOKEN_KEY);
    } catch {
      return null;
    }
  },
  /** @param {string | null} value */
  set(value) {
    try {
      if (value) sessionStorage.setItem(TOKEN_KEY, value);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      // Storage can be disabled; the token then lasts until the page is reloaded.
    }
  },
};

/**
 * Asks the person for a token and resolves true when one was given, false when they declined.
 * @callback AskToken
 * @param {"view" | "admin"} why
 * @returns {Promise<boolean>}
 */

/**
 * The answer of an API call: the parsed body when there is one.
 * @typedef {{status: number, ok: boolean, body: unknown}} ApiAnswer
 */

/** Thrown when the person declined to give a token the server requires. */
export class NeedsToken extends Error {}

/**
 * Calls the REST API, adding the token, and asks for a token when the server answers 401.
 * @param {AskToken} askToken
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 * @returns {Promise<ApiAnswer>}
 */
export async function api(askToken, method, path, body) {
  for (;;) {
    /** @type {Record<string, string>} */
    const headers = { Accept: "application/json" };
    const t = token.get();
    if (t) headers.Authorization = `Bearer ${t}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
    if (res.status === 401) {
      const given = await askToken(method === "GET" ? "view" : "admin");
      if (!given) throw new NeedsToken("a token is required");
      continue;
    }
    const text = await res.text();
    let parsed = null;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = null;
      }
    }
    return { status: res.status, ok: res.ok, body: parsed };
  }
}

/**
 * The error object of an error answer, when it has the interface's shape.
 * @param {unknown} body
 * @returns {ApiErrorBody["error"] | null}
 */
export function apiError(body) {
  if (body && typeof body === "object" && "error" in body) {
    const e = /** @type {ApiErrorBody} */ (body).error;
    if (e && typeof e.message === "string") return e;
  }
  return null;
}

/**
 * Where the link stands, for the indicator.
 * - `connecting`: first attempt, nothing shown yet;
 * - `live`: the WebSocket delivers changes as they happen;
 * - `polling`: the WebSocket is down; the list is fetched every few seconds while it reconnects;
 * - `offline`: neither the WebSocket nor polling reaches the server; what is shown is stale;
 * - `token`: the server wants a token and none was given.
 * @typedef {{state: "connecting" | "live" | "polling" | "offline" | "token", since: number, lastData: number | null, nextRetry: number | null}} LinkState
 */

/**
 * What the link hands to the board.
 * @typedef {object} LiveSink
 * @property {(records: Extension[], pbx: PbxLink | null) => void} replaceAll a full list (snapshot or poll)
 * @property {(messages: ServerMessage[]) => void} apply deltas, in order
 * @property {(link: LinkState) => void} state
 */

/**
 * @typedef {object} LiveOptions
 * @property {number} pollMs polling period while the WebSocket is down
 * @property {AskToken} askToken
 */

const BACKOFF_MS = [250, 500, 1000, 2000, 4000, 8000, 15000];

export class Live {
  /**
   * @param {LiveSink} sink
   * @param {LiveOptions} options
   */
  constructor(sink, options) {
    this.sink = sink;
    this.options = options;
    /** The seq of the last change applied, the point to resume from. @type {number | null} */
    this.lastSeq = null;
    /** @type {WebSocket | null} */
    this.ws = null;
    this.attempt = 0;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.retryTimer = null;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.pollTimer = null;
    this.polling = false;
    /** Fault injection for tests and drills: no reconnect before this time. */
    this.blockedUntil = 0;
    this.waitingForToken = false;
    /** @type {LinkState} */
    this.link = { state: "connecting", since: Date.now(), lastData: null, nextRetry: null };
    this.stats = { frames: 0, messages: 0, duplicates: 0, gaps: 0, snapshots: 0, polls: 0, reconnects: 0, handleMs: 0 };
  }

  start() {
    window.addEventListener("online", () => this.reconnectNow());
    this.connect();
  }

  /**
   * @param {LinkState["state"]} state
   */
  setState(state) {
    if (this.link.state !== state) this.link = { ...this.link, state, since: Date.now() };
    this.sink.state(this.link);
  }

  connect() {
    this.retryTimer = null;
    if (this.waitingForToken) return;
    if (Date.now() < this.blockedUntil) {
      this.scheduleReconnect();
      return;
    }
    const params = new URLSearchParams();
    if (this.lastSeq !== null) params.set("resume", String(this.lastSeq));
    const t = token.get();
    if (t) params.set("token", t);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = params.toString();
    const url = `${scheme}//${location.host}/ws${query ? `?${query}` : ""}`;
    let ws;
    try {
      ws = new WebSocket(url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    let opened = false;
    const openTimeout = setTimeout(() => {
      if (!opened) ws.close();
    }, 10000);
    ws.addEventListener("open", () => {
      opened = true;
      clearTimeout(openTimeout);
      if (this.ws !== ws) return;
      // A resumed stream with nothing missed sends nothing at first, so the open socket itself
      // is what says the link is live again.
      this.attempt = 0;
      this.stopPolling();
      this.setState("live");
    });
    ws.addEventListener("message", (ev) => {
      if (this.ws !== ws) return;
      this.onFrame(ev.data);
    });
    ws.addEventListener("close", () => {
      clearTimeout(openTimeout);
      if (this.ws !== ws) return;
      this.ws = null;
      this.stats.reconnects += 1;
      // Polling keeps the board current meanwhile; when the socket never opened, the first
      // poll also tells whether the server wants a token.
      this.startPolling(opened ? this.options.pollMs : 0);
      this.scheduleReconnect();
    });
  }

  /** @param {unknown} data */
  onFrame(data) {
    const started = performance.now();
    if (typeof data !== "string") return;
    let parsed;
    try {
      parsed = JSON.parse(data);
    } catch {
      return;
    }
    /** @type {ServerMessage[]} */
    const messages = Array.isArray(parsed) ? parsed : [parsed];
    this.stats.frames += 1;
    this.handle(messages);
    this.stats.handleMs += performance.now() - started;
  }

  /**
   * Applies messages from the server (or injected by a test) in seq order.
   * @param {ServerMessage[]} messages
   */
  handle(messages) {
    /** @type {ServerMessage[]} */
    const deltas = [];
    for (const m of messages) {
      if (!m || typeof m !== "object" || typeof m.seq !== "number") continue;
      this.stats.messages += 1;
      if (m.type === "snapshot") {
        if (deltas.length) this.sink.apply(deltas.splice(0));
        this.stats.snapshots += 1;
        this.lastSeq = m.seq;
        this.sink.replaceAll(m.extensions, m.pbx_link);
        continue;
      }
      if (this.lastSeq !== null && m.seq <= this.lastSeq) {
        // Already applied: a resumed stream may overlap what polling or a snapshot showed.
        this.stats.duplicates += 1;
        continue;
      }
      if (this.lastSeq !== null && m.seq > this.lastSeq + 1) {
        // The server never skips a number on an unfiltered stream, so a gap means something
        // was lost on the way: keep what came before it, and reconnect resuming from there,
        // which fetches exactly the missing changes (or a fresh snapshot).
        this.stats.gaps += 1;
        if (deltas.length) this.sink.apply(deltas);
        this.link.lastData = Date.now();
        if (this.ws) this.ws.close();
        return;
      }
      this.lastSeq = m.seq;
      deltas.push(m);
    }
    if (deltas.length) this.sink.apply(deltas);
    this.link.lastData = Date.now();
  }

  scheduleReconnect() {
    if (this.retryTimer !== null || this.waitingForToken) return;
    const base = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    this.attempt += 1;
    // Jitter spreads a whole room of wallboards reconnecting after a server restart.
    let delay = base * (0.8 + Math.random() * 0.4);
    const now = Date.now();
    if (now + delay < this.blockedUntil) delay = this.blockedUntil - now;
    this.link = { ...this.link, nextRetry: now + delay };
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  reconnectNow() {
    if (this.ws) return;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.attempt = 0;
    this.connect();
  }

  /** @param {number} firstInMs */
  startPolling(firstInMs) {
    if (this.polling) return;
    this.polling = true;
    this.pollTimer = setTimeout(() => this.poll(), firstInMs);
    if (this.link.state === "live" || this.link.state === "connecting") this.setState("polling");
  }

  stopPolling() {
    this.polling = false;
    if (this.pollTimer !== null) clearTimeout(this.pollTimer);
    this.pollTimer = null;
  }

  async poll() {
    this.pollTimer = null;
    if (!this.polling) return;
    try {
      const res = await fetch("/api/extensions", { headers: this.authHeaders(), cache: "no-store" });
      if (!this.polling) return;
      if (res.status === 401) {
        await this.needToken();
        return;
      }
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      /** @type {Extension[]} */
      const list = await res.json();
      if (!this.polling) return;
      this.stats.polls += 1;
      this.link.lastData = Date.now();
      this.sink.replaceAll(list, null);
      this.setState("polling");
    } catch {
      if (this.polling) this.setState("offline");
    }
    if (this.polling) this.pollTimer = setTimeout(() => this.poll(), this.options.pollMs);
  }

  /** @returns {Record<string, string>} */
  authHeaders() {
    const t = token.get();
    return t ? { Accept: "application/json", Authorization: `Bearer ${t}` } : { Accept: "application/json" };
  }

  async needToken() {
    this.stopPolling();
    if (this.waitingForToken) return;
    this.waitingForToken = true;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.setState("token");
    const given = await this.options.askToken("view");
    this.waitingForToken = false;
    if (given) {
      this.attempt = 0;
      this.connect();
    } else {
      this.setState("token");
    }
  }

  /** Asks again for a token after the person declined once (the indicator's button). */
  retryToken() {
    if (this.link.state === "token") void this.needToken();
  }

  /**
   * Closes the WebSocket as a network failure would, and refuses to reconnect for `blockMs`,
   * so that polling takes over meanwhile. Used by the browser tests and for drills.
   * @param {number} blockMs
   */
  dropSocket(blockMs) {
    this.blockedUntil = Date.now() + blockMs;
    if (this.ws) this.ws.close(4000, "dropped on purpose");
  }
}
