// Today's availability, drawn by the page itself (SVG, no library): the department comparison
// above the board, and one agent's day in a dialog opened from the tile's Chart button.
//
// Both read `GET /api/analytics/time-in-state` for today (local midnight to now); the
// comparison also reads `GET /api/departments` (the counts right now, the longest idle agent).
// The comparison refreshes every 30 s (`?analytics=MS`, at least 1000), not while the tab is
// hidden or the section is closed. A failed request is said in place, with what failed and
// why; the figures shown before stay, marked as not current.
//
// Every bar has its numbers as text beside it (exact hh:mm:ss and the share of the time) and an
// accessible label; each segment carries `data-key` and its share of the bar in `data-share`.

import { getJson, LoadError } from "./request.js";
import { DEVICE_LOOK, CATEGORIES, duration, epoch } from "./format.js";

/** @typedef {import("./live.js").AskToken} AskToken */
/** @typedef {import("./types").Extension} Extension */
/** @typedef {import("./types").DeviceState} DeviceState */

/**
 * The times of one extension or department in `GET /api/analytics/time-in-state`.
 * @typedef {object} Times
 * @property {Record<string, number>} status_seconds
 * @property {Record<string, number>} device_state_seconds
 * @property {number} paused_seconds
 * @property {Array<{reason: string | null, seconds: number}>} paused_by_reason
 * @property {number} on_call_seconds
 * @property {Record<string, number>} availability_seconds
 */

/**
 * @typedef {Times & {extension: string, department: string}} ExtensionTimes
 * @typedef {Times & {department: string, extensions: number}} DepartmentTimes
 * @typedef {{from: string, to: string, window_seconds: number, department: string | null,
 *   extensions: ExtensionTimes[], departments: DepartmentTimes[]}} TimeInState
 * @typedef {{department: string, extensions: number, status: Record<string, number>, paused: number,
 *   on_call: number, longest_idle: {extension: string, agent_name: string, since: string} | null}} DepartmentNow
 */

/** Where the time went, in the order of the bars; the class gives the tiles' colors. */
export const AVAILABILITY = Object.freeze([
  { key: "available", label: "Available" },
  { key: "on_call", label: "On calls" },
  { key: "paused", label: "Paused" },
  { key: "unavailable", label: "Unavailable" },
  { key: "unknown", label: "Unknown" },
]);

const SVG = "http://www.w3.org/2000/svg";
/** The width of a bar in SVG units; segments are laid out in it, the CSS scales it. */
const BAR_W = 1000;

/**
 * Seconds as `h:mm:ss` (hours not capped at 24: department sums are agent-hours).
 * @param {number} s
 */
export function hms(s) {
  const whole = Math.max(0, Math.floor(s + 1e-6));
  const h = Math.floor(whole / 3600);
  const m = Math.floor((whole % 3600) / 60);
  const sec = whole % 60;
  return `${String(h).padStart(2, "0")}:${String(m).padStart(2, "0")}:${String(sec).padStart(2, "0")}`;
}

/**
 * A share as the page prints it: `42.5 %`.
 * @param {number} part
 * @param {number} total
 */
function percent(part, total) {
  return total > 0 ? `${((100 * part) / total).toFixed(1)} %` : "0.0 %";
}

/** Today's window, local midnight to now, as query parameters. */
export function todayRange() {
  const now = new Date();
  const midnight = new Date(now);
  midnight.setHours(0, 0, 0, 0);
  return { from: midnight, to: now, query: `from=${midnight.toISOString()}&to=${now.toISOString()}` };
}

/**
 * @param {string} tag
 * @param {Record<string, string>} attrs
 */
function svgEl(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

/**
 * One stacked horizontal bar with a legend of exact numbers: `rows` are `{key, label, seconds}`
 * in order; the segments' widths are their shares of the rows' sum.
 * @param {string} what the bar's subject, for its accessible label
 * @param {Array<{key: string, label: string, seconds: number}>} rows
 * @param {string} cls the class prefix of the segments' colors (`av` or `cat`)
 * @returns {HTMLElement}
 */
export function stackedBar(what, rows, cls) {
  const total = rows.reduce((sum, r) => sum + r.seconds, 0);
  const wrap = document.createElement("div");
  wrap.className = "chart-box";
  const label = `${what}: ${rows.map((r) => `${r.label} ${hms(r.seconds)} (${percent(r.seconds, total)})`).join(", ")}`;
  const svg = svgEl("svg", { class: "bar", viewBox: `0 0 ${BAR_W} 20`, preserveAspectRatio: "none", role: "img", "aria-label": label });
  let x = 0;
  for (const r of rows) {
    if (r.seconds <= 0) continue;
    const share = r.seconds / total;
    const w = share * BAR_W;
    const rect = svgEl("rect", {
      class: `seg ${cls}-${r.key}`,
      x: x.toFixed(3),
      y: "0",
      width: w.toFixed(3),
      height: "20",
      "data-key": r.key,
      "data-share": share.toFixed(6),
    });
    const title = svgEl("title", {});
    title.textContent = `${r.label}: ${hms(r.seconds)} (${percent(r.seconds, total)})`;
    rect.append(title);
    svg.append(rect);
    x += w;
  }
  if (total <= 0) svg.append(svgEl("rect", { class: "seg empty-bar", x: "0", y: "0", width: String(BAR_W), height: "20" }));
  const legend = document.createElement("ul");
  legend.className = "legend";
  for (const r of rows) {
    const li = document.createElement("li");
    li.dataset.key = r.key;
    const sw = document.createElement("span");
    sw.className = `swatch ${cls}-${r.key}`;
    sw.setAttribute("aria-hidden", "true");
    const name = document.createElement("span");
    name.className = "lname";
    name.textContent = r.label;
    const dur = document.createElement("span");
    dur.className = "ldur";
    dur.textContent = hms(r.seconds);
    const pct = document.createElement("span");
    pct.className = "lpct";
    pct.textContent = percent(r.seconds, total);
    li.append(sw, name, " ", dur, " ", pct);
    legend.append(li);
  }
  wrap.append(svg, legend);
  return wrap;
}

/**
 * The availability rows of one extension's or department's times.
 * @param {Times} t
 */
export function availabilityRows(t) {
  const a = t.availability_seconds ?? {};
  return AVAILABILITY.map((c) => ({ key: c.key, label: c.label, seconds: Number(a[c.key]) || 0 }));
}

/**
 * The device-state rows, by the tiles' categories (several states share one color).
 * @param {Times} t
 */
export function categoryRows(t) {
  /** @type {Map<string, number>} */
  const by = new Map();
  for (const [state, seconds] of Object.entries(t.device_state_seconds ?? {})) {
    const cat = DEVICE_LOOK[/** @type {DeviceState} */ (state)]?.category ?? "unknown";
    by.set(cat, (by.get(cat) ?? 0) + (Number(seconds) || 0));
  }
  return CATEGORIES.map((c) => ({ key: c.key, label: c.label, seconds: by.get(c.key) ?? 0 }));
}

/**
 * A line saying where a request failed, shown in place of (or above) the figures.
 * @param {HTMLElement} el
 * @param {unknown} err
 */
function showError(el, err) {
  el.textContent = err instanceof LoadError ? err.message : `Could not show the figures: ${String(err)}`;
  el.hidden = false;
}

// ---- The department comparison ------------------------------------------------------------

export class DepartmentComparison {
  /**
   * @param {HTMLDetailsElement} root the section (a `<details>`: closed means not polled)
   * @param {HTMLElement} rows where the departments go
   * @param {HTMLElement} note where a failure is said
   * @param {HTMLElement} asOf the line saying which window the figures cover
   * @param {AskToken} askToken
   */
  constructor(root, rows, note, asOf, askToken) {
    this.root = root;
    this.rows = rows;
    this.note = note;
    this.asOf = asOf;
    this.askToken = askToken;
    this.pollMs = 30_000;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.timer = null;
    this.busy = false;
    /** A token was declined; polling waits for `start()`. */
    this.waitingToken = false;
    this.stats = { loads: 0, failures: 0 };
    /** Resolvers waiting for the next finished load (tests). @type {Array<() => void>} */
    this.afterLoad = [];
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && !this.waitingToken) this.soon(0);
    });
    root.addEventListener("toggle", () => {
      if (root.open && !this.waitingToken) this.soon(0);
    });
  }

  /** Starts polling, or resumes it after a token was declined. */
  start() {
    this.waitingToken = false;
    this.soon(0);
  }

  /** @param {number} ms */
  soon(ms) {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.load();
    }, ms);
  }

  /** Resolves after the next load finished (well or not). */
  loaded() {
    return new Promise((resolve) => this.afterLoad.push(() => resolve(undefined)));
  }

  async load() {
    // Hidden or closed: nothing is polled; showing or opening it loads at once.
    if (document.hidden || !this.root.open || this.busy) return;
    this.busy = true;
    try {
      const range = todayRange();
      const [now, times] = await Promise.all([
        getJson(this.askToken, "/api/departments", "department figures"),
        getJson(this.askToken, `/api/analytics/time-in-state?${range.query}`, "time in state for today"),
      ]);
      if (!Array.isArray(now)) throw new LoadError("Could not load the department figures: the answer was not a list.");
      this.render(/** @type {DepartmentNow[]} */ (now), /** @type {TimeInState} */ (times));
      this.note.hidden = true;
      this.root.classList.remove("stale");
      this.stats.loads += 1;
    } catch (err) {
      this.stats.failures += 1;
      showError(this.note, err);
      this.root.classList.add("stale");
      // No asking for a token again on every refresh: `start()` resumes once the board has one.
      if (err instanceof LoadError && err.needsToken) this.waitingToken = true;
    } finally {
      this.busy = false;
      if (!this.waitingToken) this.soon(this.pollMs);
      for (const done of this.afterLoad.splice(0)) done();
    }
  }

  /**
   * @param {DepartmentNow[]} now
   * @param {TimeInState} times
   */
  render(now, times) {
    const from = epoch(times.from);
    const to = epoch(times.to);
    const fmt = (/** @type {number | null} */ t) =>
      t === null ? "?" : new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    this.asOf.textContent = `Today ${fmt(from)} to ${fmt(to)}, agent time summed per department`;
    /** @type {Map<string, DepartmentTimes>} */
    const byName = new Map((times.departments ?? []).map((d) => [d.department, d]));
    const names = [...new Set([...now.map((d) => d.department), ...byName.keys()])].sort((a, b) => a.localeCompare(b));
    const nowByName = new Map(now.map((d) => [d.department, d]));
    const wallNow = Date.now();
    const out = names.map((name) => {
      const d = nowByName.get(name);
      const t = byName.get(name);
      const li = document.createElement("li");
      li.className = "dept-row";
      li.dataset.department = name;
      const head = document.createElement("h3");
      head.className = "dept-name";
      head.textContent = name;
      const counts = document.createElement("p");
      counts.className = "dept-now";
      if (d) {
        const s = d.status ?? {};
        /** @type {Array<[string, string, number]>} */
        const parts = [
          ["extensions", "extensions", d.extensions],
          ["online", "online", s.online ?? 0],
          ["offline", "offline", s.offline ?? 0],
          ["unknown", "unknown", s.unknown ?? 0],
          ["on_call", "on a call", d.on_call],
          ["paused", "paused", d.paused],
        ];
        for (const [key, label, n] of parts) {
          const span = document.createElement("span");
          span.className = "count-now";
          span.dataset.key = key;
          const b = document.createElement("b");
          b.textContent = String(n);
          span.append(b, ` ${label}`);
          counts.append(span, " ");
        }
        const idle = document.createElement("span");
        idle.className = "idle-now";
        if (d.longest_idle) {
          const since = epoch(d.longest_idle.since);
          idle.textContent = `Longest idle: ${d.longest_idle.agent_name} (${d.longest_idle.extension})${since === null ? "" : `, ${duration(wallNow - since)}`}`;
          idle.dataset.extension = d.longest_idle.extension;
        } else {
          idle.textContent = "Nobody idle";
        }
        counts.append(idle);
      } else {
        counts.textContent = "No extension now";
      }
      li.append(head, counts);
      if (t) {
        li.append(stackedBar(`${name} today`, availabilityRows(t), "av"));
      } else {
        const none = document.createElement("p");
        none.className = "hint";
        none.textContent = "No time today.";
        li.append(none);
      }
      return li;
    });
    this.rows.replaceChildren(...out);
  }
}

// ---- One agent's day ----------------------------------------------------------------------

export class AgentChart {
  /**
   * @param {HTMLDialogElement} dialog
   * @param {AskToken} askToken
   */
  constructor(dialog, askToken) {
    this.dialog = dialog;
    this.askToken = askToken;
    this.title = /** @type {HTMLElement} */ (dialog.querySelector("#chart-title"));
    this.window = /** @type {HTMLElement} */ (dialog.querySelector("#chart-window"));
    this.body = /** @type {HTMLElement} */ (dialog.querySelector("#chart-body"));
    this.error = /** @type {HTMLElement} */ (dialog.querySelector("#chart-error"));
    this.refresh = /** @type {HTMLButtonElement} */ (dialog.querySelector("#chart-refresh"));
    /** @type {Extension | null} */
    this.rec = null;
    /** Counts loads, so that an old answer never overwrites a newer one. */
    this.generation = 0;
    /** Resolves when the current load finished (tests). @type {Promise<void>} */
    this.ready = Promise.resolve();
    this.refresh.addEventListener("click", () => {
      if (this.rec) this.ready = this.load(this.rec);
    });
    dialog.querySelector("#chart-close")?.addEventListener("click", () => dialog.close());
  }

  /** @param {Extension} rec */
  open(rec) {
    this.rec = rec;
    this.title.textContent = `Today: ${rec.agent_name} (${rec.extension})`;
    this.window.textContent = "Loading…";
    this.body.replaceChildren();
    this.error.hidden = true;
    if (!this.dialog.open) this.dialog.showModal();
    this.ready = this.load(rec);
  }

  /** @param {Extension} rec */
  async load(rec) {
    const generation = ++this.generation;
    const range = todayRange();
    const path = `/api/analytics/time-in-state?${range.query}&department=${encodeURIComponent(rec.department)}`;
    try {
      const answer = /** @type {TimeInState} */ (await getJson(this.askToken, path, `time in state of ${rec.extension}`));
      if (generation !== this.generation) return;
      const t = (answer.extensions ?? []).find((e) => e.extension === rec.extension);
      if (!t) throw new LoadError(`Extension ${rec.extension} is not in today's figures (deleted, or moved to another department?).`);
      this.render(rec, answer, t);
      this.error.hidden = true;
    } catch (err) {
      if (generation !== this.generation) return;
      showError(this.error, err);
      if (!this.body.hasChildNodes()) this.window.textContent = "";
    }
  }

  /**
   * @param {Extension} rec
   * @param {TimeInState} answer
   * @param {ExtensionTimes} t
   */
  render(rec, answer, t) {
    const from = epoch(answer.from);
    const to = epoch(answer.to);
    const fmt = (/** @type {number | null} */ x) => (x === null ? "?" : new Date(x).toLocaleTimeString());
    this.window.textContent = `From ${fmt(from)} to ${fmt(to)} (${hms(answer.window_seconds)})`;
    const parts = [];
    const h1 = document.createElement("h3");
    h1.textContent = "Availability";
    parts.push(h1, stackedBar(`${rec.agent_name} today, availability`, availabilityRows(t), "av"));
    const h2 = document.createElement("h3");
    h2.textContent = "Phone state";
    parts.push(h2, stackedBar(`${rec.agent_name} today, phone state`, categoryRows(t), "cat"));
    const extra = document.createElement("dl");
    extra.className = "chart-extra";
    /** @param {string} key @param {string} label @param {number} seconds */
    const row = (key, label, seconds) => {
      const dt = document.createElement("dt");
      dt.textContent = label;
      const dd = document.createElement("dd");
      dd.dataset.key = key;
      dd.textContent = hms(seconds);
      extra.append(dt, dd);
    };
    row("on_call_total", "On calls, in total (paused or not)", t.on_call_seconds);
    row("paused_total", "Paused, in total (on a call or not)", t.paused_seconds);
    for (const r of t.paused_by_reason ?? []) {
      row(`reason:${r.reason ?? ""}`, `Paused: ${r.reason ?? "no reason given"}`, r.seconds);
    }
    parts.push(extra);
    this.body.replaceChildren(...parts);
  }
}
