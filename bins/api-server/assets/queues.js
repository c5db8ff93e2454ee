// The queue strip on top of the board: per queue, the callers waiting and the longest wait,
// which turns amber and then red past the server's thresholds (`--queue-wait-amber`,
// `--queue-wait-red`).
//
// Waiting callers are not part of any record, so the strip polls `GET /api/queues` (every
// 3 s by default, `?queues=MS`; not while the tab is hidden) and, between two polls, advances
// the longest wait itself once a second: a tick writes text only, and only when it changed.
// Each queue's chip is built once and patched in place.

import { api, NeedsToken } from "./live.js";
import { clock, waitLevel } from "./format.js";

/** @typedef {import("./live.js").AskToken} AskToken */

/**
 * One row of `GET /api/queues`.
 * @typedef {object} QueueRow
 * @property {string} queue
 * @property {number} calls_waiting
 * @property {number} longest_wait_s
 * @property {number} completed
 * @property {number} abandoned
 * @property {number | null} service_level_pct
 * @property {Array<{extension: string, paused: boolean, paused_reason: string | null, paused_since: string | null, in_call: boolean}>} members
 */

/**
 * A queue's chip and the nodes it patches.
 * @typedef {object} Chip
 * @property {HTMLLIElement} el
 * @property {HTMLElement} waiting
 * @property {HTMLElement} wait
 * @property {HTMLElement} level
 * @property {HTMLElement} agents
 * @property {QueueRow} row
 * @property {number} at performance.now() when the row was fetched
 * @property {string} waitText
 * @property {string} levelName
 * @property {string} agentsText
 */

const LEVEL_TEXT = { ok: "", amber: "long wait", red: "too long" };

export class QueueStrip {
  /**
   * @param {HTMLElement} root the strip section
   * @param {HTMLUListElement} list
   * @param {HTMLElement} note where a failure to fetch is said
   * @param {AskToken} askToken
   */
  constructor(root, list, note, askToken) {
    this.root = root;
    this.list = list;
    this.note = note;
    this.askToken = askToken;
    this.amberS = 30;
    this.redS = 90;
    this.pollMs = 3000;
    /** @type {Map<string, Chip>} */
    this.chips = new Map();
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.timer = null;
    this.stopped = false;
    /** A token was declined; polling waits for `start()`. */
    this.waitingToken = false;
    this.stats = { polls: 0, failures: 0 };
    /** Resolvers waiting for the next completed poll (tests). @type {Array<() => void>} */
    this.afterPoll = [];
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && !this.stopped) this.pollSoon(0);
    });
  }

  /**
   * @param {number} amberS
   * @param {number} redS
   */
  setThresholds(amberS, redS) {
    this.amberS = amberS;
    this.redS = redS;
    this.tick();
  }

  /** Starts polling, or resumes it after a token was declined. */
  start() {
    this.waitingToken = false;
    if (!this.stopped) this.pollSoon(0);
  }

  /** @param {number} ms */
  pollSoon(ms) {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.poll();
    }, ms);
  }

  async poll() {
    if (document.hidden) return; // visibilitychange polls again when the tab shows
    let next = this.pollMs;
    try {
      const res = await api(this.askToken, "GET", "/api/queues");
      if (res.status === 404) {
        // A server without queue statistics: no strip, and no more asking.
        this.root.hidden = true;
        this.stopped = true;
        return;
      }
      if (!res.ok || !Array.isArray(res.body)) throw new Error(`answered ${res.status}`);
      this.stats.polls += 1;
      this.apply(/** @type {QueueRow[]} */ (res.body));
      this.note.hidden = true;
    } catch (err) {
      this.stats.failures += 1;
      if (err instanceof NeedsToken) {
        // The person declined to give a token: no asking again on every poll; `start()`
        // resumes once the board has one.
        this.waitingToken = true;
        return;
      }
      this.note.textContent = "Queue figures could not be fetched; showing the last known.";
      this.note.hidden = this.chips.size === 0;
      next = Math.max(next, 5000);
    } finally {
      for (const resolve of this.afterPoll.splice(0)) resolve();
      if (!this.stopped && !this.waitingToken) this.pollSoon(next);
    }
  }

  /** Resolves after the next completed poll. @returns {Promise<void>} */
  polled() {
    return new Promise((resolve) => {
      this.afterPoll.push(resolve);
      this.pollSoon(0);
    });
  }

  /** @param {QueueRow[]} rows */
  apply(rows) {
    const at = performance.now();
    const seen = new Set();
    for (const row of rows) {
      seen.add(row.queue);
      let chip = this.chips.get(row.queue);
      if (!chip) {
        chip = this.build(row, at);
        this.chips.set(row.queue, chip);
        this.list.append(chip.el);
      }
      chip.row = row;
      chip.at = at;
      const waiting = `${row.calls_waiting} waiting`;
      if (chip.waiting.textContent !== waiting) chip.waiting.textContent = waiting;
      chip.el.dataset.waiting = String(row.calls_waiting);
      const paused = row.members.filter((m) => m.paused).length;
      const inCall = row.members.filter((m) => m.in_call).length;
      const agents = `${row.members.length} agents · ${inCall} on call · ${paused} paused`;
      if (agents !== chip.agentsText) {
        chip.agentsText = agents;
        chip.agents.textContent = agents;
        chip.el.title =
          `${row.queue}: ${row.completed} completed, ${row.abandoned} abandoned` +
          (row.service_level_pct === null ? "" : `, service level ${row.service_level_pct}%`);
      }
    }
    for (const [name, chip] of this.chips) {
      if (!seen.has(name)) {
        chip.el.remove();
        this.chips.delete(name);
      }
    }
    this.root.hidden = this.chips.size === 0;
    this.tick();
  }

  /**
   * @param {QueueRow} row
   * @param {number} at
   * @returns {Chip}
   */
  build(row, at) {
    const el = document.createElement("li");
    el.className = "queue";
    el.dataset.queue = row.queue;
    const name = document.createElement("span");
    name.className = "queue-name";
    name.textContent = row.queue;
    const waiting = document.createElement("span");
    waiting.className = "queue-waiting";
    const longest = document.createElement("span");
    longest.className = "queue-longest";
    const wait = document.createElement("span");
    wait.className = "queue-wait";
    const level = document.createElement("span");
    level.className = "queue-level";
    longest.append("longest ", wait, level);
    const agents = document.createElement("span");
    agents.className = "queue-agents";
    el.append(name, " ", waiting, " · ", longest, " · ", agents);
    return { el, waiting, wait, level, agents, row, at, waitText: "", levelName: "", agentsText: "" };
  }

  /** Advances the longest waits since the last poll; called once a second. */
  tick() {
    const now = performance.now();
    for (const chip of this.chips.values()) {
      const { row } = chip;
      // With nobody waiting there is no wait to advance.
      const waitS = row.calls_waiting > 0 ? row.longest_wait_s + (now - chip.at) / 1000 : 0;
      const text = row.calls_waiting > 0 ? clock(waitS * 1000) : "—";
      if (text !== chip.waitText) {
        chip.waitText = text;
        chip.wait.textContent = text;
      }
      const lvl = row.calls_waiting > 0 ? waitLevel(waitS, this.amberS, this.redS) : "ok";
      if (lvl !== chip.levelName) {
        chip.levelName = lvl;
        chip.el.dataset.level = lvl;
        // The level is said in words too, never by colour alone.
        chip.level.textContent = LEVEL_TEXT[lvl] ? ` (${LEVEL_TEXT[lvl]})` : "";
      }
    }
  }
}
