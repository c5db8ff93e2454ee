// The board: one tile per extension, grouped and filtered, patched in place.
//
// Built for a thousand extensions and a hundred changes a second: every tile is created once
// and kept in a Map by id; a change marks its id dirty and one requestAnimationFrame callback
// patches only the fields that differ; the ticking clocks write text nodes and nothing else.

import { CATEGORIES, look, statusCodeText, epoch, duration, ago, localTime, fullTime, compareNumbers, clock, presenceLook } from "./format.js";

/** @typedef {import("./types").Extension} Extension */
/** @typedef {import("./types").PbxLink} PbxLink */
/** @typedef {import("./types").QueueMembership} QueueMembership */
/** @typedef {import("./format.js").Category} Category */

/**
 * What the person chose to see.
 * @typedef {object} View
 * @property {string} query lower-cased search text (name or number)
 * @property {string} department exact department, or "" for all
 * @property {Category | ""} category
 * @property {"department" | "category" | "none"} groupBy
 * @property {boolean} showInactive
 */

/**
 * A tile and the nodes it patches, so that an update touches no selector engine.
 * @typedef {object} Tile
 * @property {HTMLLIElement} el
 * @property {Extension} rec
 * @property {number | null} changedAt epoch ms of last_status_change
 * @property {Category} category
 * @property {string} haystack lower-cased name and number, for the search
 * @property {Group | null} group
 * @property {boolean} visible whether the filters let it show (mirrors `el.hidden`, read without touching the DOM)
 * @property {number | null} seenAt epoch ms of last_seen
 * @property {string} durText the clock text last written
 * @property {string} seenText the "seen ... ago" text last written
 * @property {string} queuesKey what the queue chips were last written from
 * @property {boolean} paused whether the agent is paused in any queue
 * @property {boolean} pauseLabelPaused what the Pause / Resume button's label was written for
 * @property {Map<string, PauseClock>} pausedSince per paused queue, since when
 * @property {PauseClock[]} pauseClocks the ticking "for 12:34" of the paused chips
 * @property {number | null} callSince epoch ms the call reached its state, or null without a call
 * @property {string} callDurText the call clock text last written
 * @property {{icon: SVGUseElement, stateText: HTMLElement, presence: HTMLElement, name: HTMLElement, ext: HTMLElement, dept: HTMLElement, dur: HTMLElement, changed: HTMLTimeElement, seen: HTMLTimeElement, edit: HTMLButtonElement, pres: HTMLElement, call: HTMLElement, callText: HTMLElement, callDur: HTMLElement, queues: HTMLUListElement, pause: HTMLButtonElement, chart: HTMLButtonElement}} n
 */

/**
 * How long a queue membership has been paused: from the record's `paused_since` (the PBX's
 * `LastPause`), so a pause already there when the page loaded shows its real length. Only a
 * record without it (an older server) makes the page count from when it saw the pause, and a
 * pause already there when the page loaded is then shown as "at least" (`≥`).
 * @typedef {object} PauseClock
 * @property {number} since epoch ms
 * @property {boolean} atLeast the pause began before the page saw it
 * @property {HTMLElement | null} el the text node's element on the chip
 * @property {string} text the text last written
 */

/**
 * A group section with its list and its count badges.
 * @typedef {object} Group
 * @property {string} key
 * @property {HTMLElement} section
 * @property {HTMLUListElement} list
 * @property {HTMLElement} total
 * @property {Map<Category, HTMLElement>} countEls
 * @property {Set<Tile>} members the tiles in the group
 * @property {string} countsText the counts last written, to skip identical writes
 */

const NONE_GROUP = "All extensions";

/** How long a changed tile keeps its "just changed" mark. */
const RECENT_MS = 3000;

export class Board {
  /**
   * @param {HTMLElement} root the container of the group sections
   * @param {HTMLTemplateElement} template the tile template
   * @param {(rec: Extension) => void} onEdit
   */
  constructor(root, template, onEdit) {
    this.root = root;
    this.template = template;
    this.onEdit = onEdit;
    /** @type {Map<string, Tile>} */
    this.tiles = new Map();
    /** @type {Map<string, Group>} */
    this.groups = new Map();
    /** Changes waiting for the next frame: a record, or null for a deletion. @type {Map<string, Extension | null>} */
    this.pending = new Map();
    /** Whether the pending batch replaces everything (records not in it are gone). */
    this.pendingReset = false;
    this.frameRequested = false;
    /** When the last flush ran (performance.now()). */
    this.lastFlush = -Infinity;
    /** The shortest time between two flushes, in milliseconds. */
    this.minFrameMs = 0;
    /** The timer that holds a flush back for the frame spacing. @type {ReturnType<typeof setTimeout> | null} */
    this.spacingTimer = null;
    /**
     * Called when a tile's Pause or Resume button is pressed.
     * @type {(rec: Extension) => void}
     */
    this.onPause = () => {};
    /** Opens today's chart of a record. @type {(rec: Extension) => void} */
    this.onChart = () => {};
    /** @type {View} */
    this.view = { query: "", department: "", category: "", groupBy: "department", showInactive: false };
    this.viewDirty = false;
    /** The grouping the sections were built for. @type {View["groupBy"]} */
    this.currentGroupBy = this.view.groupBy;
    this.stale = false;
    /**
     * Called when the set of departments changed, with the sorted names.
     * @type {(departments: string[]) => void}
     */
    this.onDepartments = () => {};
    /**
     * Called after each frame with the totals for the summary line.
     * @type {(shown: number, total: number, counts: Map<Category, number>, inactiveHidden: number, paused: number) => void}
     */
    this.onSummary = () => {};
    /** @type {string} */
    this.departmentsKey = "";
    /** Whether a department may have appeared or gone since the list was last sent. */
    this.departmentsDirty = true;
    this.stats = { flushes: 0, flushMs: 0, maxFlushMs: 0, patched: 0, created: 0, removed: 0, tickMs: 0, ticks: 0 };
    /** Resolvers waiting for the next completed flush (used by tests and the first-render mark). @type {Array<() => void>} */
    this.afterFlush = [];
    /** Tiles that carry the "just changed" mark. @type {Set<Tile>} */
    this.recent = new Set();
    /** Tiles on or near the screen: the only ones whose clocks tick. @type {Set<Tile>} */
    this.onScreen = new Set();
    /** @type {WeakMap<Element, Tile>} */
    this.byElement = new WeakMap();
    this.observer = new IntersectionObserver(
      (entries) => {
        const now = Date.now();
        for (const e of entries) {
          const tile = this.byElement.get(e.target);
          if (!tile) continue;
          if (e.isIntersecting) {
            this.onScreen.add(tile);
            this.tickTile(tile, now);
          } else {
            this.onScreen.delete(tile);
          }
        }
      },
      { rootMargin: "200px 0px" },
    );
    // Tooltips with the full local times are written when a pointer or the focus reaches a
    // tile, not for every tile on every change.
    const explain = (/** @type {Event} */ ev) => {
      const li = /** @type {Element} */ (ev.target).closest?.("li.tile");
      const tile = li ? this.byElement.get(li) : undefined;
      if (tile) this.explain(tile);
    };
    root.addEventListener("pointerover", explain);
    root.addEventListener("focusin", explain);
    root.addEventListener("click", (ev) => {
      const target = /** @type {Element} */ (ev.target);
      const btn = target.closest("button.edit, button.pause, button.chart");
      const li = btn && btn.closest("li.tile");
      const tile = li instanceof HTMLElement && li.dataset.id ? this.tiles.get(li.dataset.id) : undefined;
      if (!tile || !btn) return;
      if (btn.classList.contains("pause")) this.onPause(tile.rec);
      else if (btn.classList.contains("chart")) this.onChart(tile.rec);
      else this.onEdit(tile.rec);
    });
  }

  /**
   * Replaces the whole list (a snapshot or a poll); records missing from it are removed.
   * @param {Extension[]} records
   */
  replaceAll(records) {
    this.pending.clear();
    this.pendingReset = true;
    for (const r of records) this.pending.set(r._id, r);
    this.schedule();
  }

  /** @param {Extension} rec */
  upsert(rec) {
    this.pending.set(rec._id, rec);
    this.schedule();
  }

  /** @param {string} id */
  remove(id) {
    this.pending.set(id, null);
    this.schedule();
  }

  /**
   * @param {Partial<View>} change
   */
  setView(change) {
    this.view = { ...this.view, ...change };
    this.viewDirty = true;
    this.schedule(true);
  }

  /**
   * Asks for a flush; `urgent` (a person changed the view) skips the frame spacing.
   * @param {boolean} [urgent]
   */
  schedule(urgent = false) {
    if (this.frameRequested) {
      if (urgent && this.spacingTimer !== null) {
        clearTimeout(this.spacingTimer);
        this.spacingTimer = null;
        requestAnimationFrame(() => this.flush());
      }
      return;
    }
    this.frameRequested = true;
    // Every rendered frame has a fixed cost (style, layout, paint and commit of the page)
    // that dwarfs patching a tile, so under a stream of changes frames are spaced at least
    // `minFrameMs` apart; a lone change after a quiet spell still shows in the next frame.
    // The first render is never held back.
    const wait = urgent || this.tiles.size === 0 ? 0 : this.lastFlush + this.minFrameMs - performance.now();
    if (wait > 0) {
      this.spacingTimer = setTimeout(() => {
        this.spacingTimer = null;
        requestAnimationFrame(() => this.flush());
      }, wait);
    } else {
      requestAnimationFrame(() => this.flush());
    }
  }

  /** Resolves after the next flush has reached the DOM. @returns {Promise<void>} */
  flushed() {
    return new Promise((resolve) => {
      this.afterFlush.push(resolve);
      this.schedule();
    });
  }

  flush() {
    if (!this.frameRequested) return;
    this.frameRequested = false;
    const started = performance.now();
    this.lastFlush = started;
    if (this.viewDirty && this.currentGroupBy !== this.view.groupBy) this.rebuildGroups();
    if (this.pendingReset) {
      for (const id of this.tiles.keys()) if (!this.pending.has(id)) this.pending.set(id, null);
      this.pendingReset = false;
    }
    /** @type {Set<Group>} */
    const touched = new Set();
    /** @type {Extension[]} */
    const created = [];
    for (const [id, rec] of this.pending) {
      const tile = this.tiles.get(id);
      if (rec === null) {
        if (tile) this.drop(tile, touched);
      } else if (tile) {
        this.patch(tile, rec, touched);
      } else {
        created.push(rec);
      }
    }
    this.pending.clear();
    if (created.length > 8) this.createMany(created, touched);
    else for (const rec of created) this.create(rec, touched);
    if (this.viewDirty) {
      this.viewDirty = false;
      for (const tile of this.tiles.values()) this.applyVisibility(tile);
      for (const g of this.groups.values()) touched.add(g);
    }
    for (const g of touched) this.updateGroup(g);
    this.updateSummary();
    const took = performance.now() - started;
    this.stats.flushes += 1;
    this.stats.flushMs += took;
    if (took > this.stats.maxFlushMs) this.stats.maxFlushMs = took;
    this.root.setAttribute("aria-busy", "false");
    for (const resolve of this.afterFlush.splice(0)) resolve();
  }

  /** @param {Extension} rec */
  groupKeyOf(rec) {
    switch (this.view.groupBy) {
      case "department":
        return rec.department;
      case "category":
        return look(rec).category;
      default:
        return NONE_GROUP;
    }
  }

  /** Moves every tile into the sections of the chosen grouping. */
  rebuildGroups() {
    this.currentGroupBy = this.view.groupBy;
    for (const g of this.groups.values()) g.section.remove();
    this.groups.clear();
    const sorted = [...this.tiles.values()].sort((a, b) => compareNumbers(a.rec.extension, b.rec.extension));
    for (const tile of sorted) {
      const g = this.groupFor(this.groupKeyOf(tile.rec));
      g.list.append(tile.el);
      g.members.add(tile);
      tile.group = g;
    }
  }

  /**
   * The group with this key, created in its sorted place when it is new.
   * @param {string} key
   * @returns {Group}
   */
  groupFor(key) {
    const existing = this.groups.get(key);
    if (existing) return existing;
    const section = document.createElement("section");
    section.className = "group";
    section.dataset.group = key;
    const head = document.createElement("div");
    head.className = "group-head";
    const h2 = document.createElement("h2");
    const label =
      this.view.groupBy === "category" ? (CATEGORIES.find((c) => c.key === key)?.label ?? key) : key;
    h2.textContent = label;
    const total = document.createElement("span");
    total.className = "group-total";
    h2.append(" ", total);
    const counts = document.createElement("ul");
    counts.className = "counts";
    counts.setAttribute("aria-label", `Counts for ${label}`);
    /** @type {Map<Category, HTMLElement>} */
    const countEls = new Map();
    for (const c of CATEGORIES) {
      const li = document.createElement("li");
      li.className = `count c-${c.key}`;
      li.hidden = true;
      countEls.set(c.key, li);
      counts.append(li);
    }
    head.append(h2, counts);
    const list = document.createElement("ul");
    list.className = "tiles";
    list.setAttribute("aria-label", label);
    section.append(head, list);
    /** @type {Group} */
    const g = { key, section, list, total, countEls, countsText: "", members: new Set() };
    this.groups.set(key, g);
    // Sections keep a stable order: categories in their natural order, the rest by name.
    const order =
      this.view.groupBy === "category"
        ? (/** @type {string} */ a, /** @type {string} */ b) =>
            CATEGORIES.findIndex((c) => c.key === a) - CATEGORIES.findIndex((c) => c.key === b)
        : (/** @type {string} */ a, /** @type {string} */ b) => a.localeCompare(b);
    const after = [...this.groups.values()].find((other) => other !== g && order(other.key, key) > 0);
    if (after) this.root.insertBefore(section, after.section);
    else this.root.append(section);
    return g;
  }

  /**
   * Puts a tile at its sorted place in a group (binary search over the list's children).
   * @param {Tile} tile
   * @param {Group} g
   */
  place(tile, g) {
    const items = g.list.children;
    let lo = 0;
    let hi = items.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const other = /** @type {HTMLElement} */ (items[mid]);
      if (other === tile.el || compareNumbers(other.dataset.ext ?? "", tile.rec.extension) < 0) lo = mid + 1;
      else hi = mid;
    }
    const before = items[lo] ?? null;
    if (before !== tile.el) g.list.insertBefore(tile.el, before);
    if (tile.group !== g) tile.group?.members.delete(tile);
    g.members.add(tile);
    tile.group = g;
  }

  /**
   * @param {Extension} rec
   * @param {Set<Group>} touched
   */
  create(rec, touched) {
    const tile = this.build(rec);
    const g = this.groupFor(this.groupKeyOf(rec));
    this.place(tile, g);
    this.applyVisibility(tile);
    touched.add(g);
  }

  /**
   * Makes a tile for a record, not yet in any group.
   * @param {Extension} rec
   * @returns {Tile}
   */
  build(rec) {
    const el = /** @type {HTMLLIElement} */ (
      /** @type {DocumentFragment} */ (this.template.content.cloneNode(true)).firstElementChild
    );
    // One query for all the nodes a tile patches, named by their `data-n`.
    /** @type {Record<string, Element>} */
    const found = {};
    for (const node of el.querySelectorAll("[data-n]")) found[/** @type {string} */ (node.getAttribute("data-n"))] = node;
    /** @type {Tile} */
    const tile = {
      el,
      rec,
      changedAt: null,
      seenAt: null,
      category: "unknown",
      haystack: "",
      group: null,
      visible: true,
      durText: "",
      seenText: "",
      queuesKey: "",
      paused: false,
      pauseLabelPaused: false,
      pausedSince: new Map(),
      pauseClocks: [],
      callSince: null,
      callDurText: "",
      n: /** @type {Tile["n"]} */ (/** @type {unknown} */ (found)),
    };
    el.dataset.id = rec._id;
    this.tiles.set(rec._id, tile);
    this.byElement.set(el, tile);
    this.observer.observe(el);
    this.write(tile, null, rec);
    this.departmentsDirty = true;
    this.stats.created += 1;
    return tile;
  }

  /**
   * Creates many tiles at once (a snapshot): sorted once, and appended per group in one
   * fragment when the group was empty, instead of a search and an insertion per tile.
   * @param {Extension[]} records
   * @param {Set<Group>} touched
   */
  createMany(records, touched) {
    records.sort((a, b) => compareNumbers(a.extension, b.extension));
    /** @type {Map<Group, DocumentFragment>} */
    const fresh = new Map();
    for (const rec of records) {
      const tile = this.build(rec);
      const g = this.groupFor(this.groupKeyOf(rec));
      touched.add(g);
      let frag = fresh.get(g);
      if (!frag && g.members.size === 0) {
        frag = document.createDocumentFragment();
        fresh.set(g, frag);
      }
      if (frag) {
        frag.append(tile.el);
        g.members.add(tile);
        tile.group = g;
      } else {
        this.place(tile, g);
      }
      this.applyVisibility(tile);
    }
    for (const [g, frag] of fresh) g.list.append(frag);
  }

  /**
   * @param {Tile} tile
   * @param {Extension} rec
   * @param {Set<Group>} touched
   */
  patch(tile, rec, touched) {
    const old = tile.rec;
    if (old === rec) return;
    tile.rec = rec;
    this.write(tile, old, rec);
    const key = this.groupKeyOf(rec);
    if (tile.group && tile.group.key !== key) {
      touched.add(tile.group);
      this.place(tile, this.groupFor(key));
    } else if (tile.group && old.extension !== rec.extension) {
      this.place(tile, tile.group);
    }
    this.applyVisibility(tile);
    if (tile.group) touched.add(tile.group);
    this.stats.patched += 1;
  }

  /**
   * @param {Tile} tile
   * @param {Set<Group>} touched
   */
  drop(tile, touched) {
    tile.el.remove();
    tile.group?.members.delete(tile);
    this.departmentsDirty = true;
    this.observer.unobserve(tile.el);
    this.onScreen.delete(tile);
    this.tiles.delete(tile.rec._id);
    if (tile.group) touched.add(tile.group);
    this.stats.removed += 1;
  }

  /**
   * Writes the fields of `rec` that differ from `old` (all of them for a new tile).
   * @param {Tile} tile
   * @param {Extension | null} old
   * @param {Extension} rec
   */
  write(tile, old, rec) {
    const { n, el } = tile;
    const now = Date.now();
    if (!old || old.device_state !== rec.device_state || old.status_code !== rec.status_code) {
      const lk = look(rec);
      tile.category = lk.category;
      el.dataset.state = lk.category;
      el.dataset.device = rec.device_state;
      n.icon.setAttribute("href", `#${lk.icon}`);
      n.stateText.textContent = lk.label;
      if (old) {
        // A marked border tells the eye what just changed. It is a static style, removed by
        // the clock a few seconds later: an animation would make the page render every frame
        // while changes stream in, which costs far more than the changes themselves.
        el.classList.add("recent");
        this.recent.add(tile);
      }
    }
    if (!old || old.status !== rec.status) {
      n.presence.textContent = rec.status;
      el.dataset.presence = rec.status;
    }
    if (!old || old.agent_name !== rec.agent_name) n.name.textContent = rec.agent_name;
    if (!old || old.extension !== rec.extension) {
      n.ext.textContent = rec.extension;
      el.dataset.ext = rec.extension;
    }
    if (!old || old.agent_name !== rec.agent_name || old.extension !== rec.extension) {
      tile.haystack = `${rec.agent_name.toLowerCase()}\n${rec.extension}`;
      n.edit.setAttribute("aria-label", `Edit extension ${rec.extension} (${rec.agent_name})`);
      n.chart.setAttribute("aria-label", `Today's chart of ${rec.agent_name} (extension ${rec.extension})`);
    }
    if (!old || old.department !== rec.department) {
      n.dept.textContent = rec.department;
      this.departmentsDirty = true;
    }
    if (!old || old.is_active !== rec.is_active) el.classList.toggle("inactive", !rec.is_active);
    if (!old || old.last_status_change !== rec.last_status_change) {
      tile.changedAt = epoch(rec.last_status_change);
      n.changed.dateTime = rec.last_status_change ?? "";
      n.changed.textContent = localTime(tile.changedAt, now);
      this.tickTile(tile, now);
    }
    if (!old || old.last_seen !== rec.last_seen) {
      tile.seenAt = epoch(rec.last_seen);
      n.seen.dateTime = rec.last_seen ?? "";
      this.tickTile(tile, now);
    }
    const queues = rec.queues ?? [];
    const queuesKey = queues
      .map((q) => `${q.queue}\u0001${q.paused ? 1 : 0}\u0001${q.paused_reason ?? ""}\u0001${q.paused_since ?? ""}\u0001${q.in_call ? 1 : 0}`)
      .join("\u0002");
    if (!old || queuesKey !== tile.queuesKey) {
      tile.queuesKey = queuesKey;
      this.writeQueues(tile, queues, old === null, now);
    }
    const p = rec.presence ?? null;
    const op = old ? (old.presence ?? null) : undefined;
    if (!old || op?.state !== p?.state || op?.subtype !== p?.subtype || op?.message !== p?.message) {
      this.writePresence(tile, p);
    }
    const c = rec.call ?? null;
    const oc = old ? (old.call ?? null) : undefined;
    if (
      !old ||
      oc?.state !== c?.state ||
      oc?.since !== c?.since ||
      oc?.peer_number !== c?.peer_number ||
      oc?.peer_name !== c?.peer_name ||
      oc?.queue !== c?.queue ||
      (oc === null) !== (c === null)
    ) {
      this.writeCall(tile, c, now);
    }
    if (!old || old.agent_name !== rec.agent_name || old.extension !== rec.extension || tile.pauseLabelPaused !== tile.paused) {
      tile.pauseLabelPaused = tile.paused;
      n.pause.setAttribute("aria-label", `${tile.paused ? "Resume" : "Pause"} ${rec.agent_name} (extension ${rec.extension})`);
    }
  }

  /**
   * Rewrites the queue chips of one tile (the chips only, never the tile). A paused chip says
   * so in words and with a pause sign, with the reason and how long.
   * @param {Tile} tile
   * @param {QueueMembership[]} queues
   * @param {boolean} firstSight the tile is new: a pause it shows began before the page saw it
   * @param {number} now
   */
  writeQueues(tile, queues, firstSight, now) {
    const { n, el } = tile;
    /** @type {Map<string, PauseClock>} */
    const since = new Map();
    /** @type {PauseClock[]} */
    const clocks = [];
    const chips = [];
    for (const q of queues) {
      const li = document.createElement("li");
      li.className = "qchip";
      li.dataset.queue = q.queue;
      if (q.paused) {
        const known = epoch(q.paused_since ?? null);
        const clockState =
          known !== null
            ? { since: known, atLeast: false, el: null, text: "" }
            : (tile.pausedSince.get(q.queue) ?? { since: now, atLeast: firstSight, el: null, text: "" });
        since.set(q.queue, clockState);
        li.dataset.paused = "true";
        // The pause bars of the "On hold" icon, drawn from the sprite (no font needed).
        const sign = document.createElementNS("http://www.w3.org/2000/svg", "svg");
        sign.setAttribute("class", "qsign");
        sign.setAttribute("aria-hidden", "true");
        const use = document.createElementNS("http://www.w3.org/2000/svg", "use");
        use.setAttribute("href", "#i-hold");
        sign.append(use);
        const name = document.createElement("span");
        name.className = "qname";
        name.textContent = q.queue;
        const word = document.createElement("span");
        word.className = "sr";
        word.textContent = " paused";
        const reason = document.createElement("span");
        reason.className = "qreason";
        reason.textContent = q.paused_reason ?? "no reason";
        const dur = document.createElement("span");
        dur.className = "qfor";
        clockState.el = dur;
        clockState.text = "";
        clocks.push(clockState);
        li.append(sign, name, word, " · ", reason, " · for ", dur);
        li.title = clockState.atLeast
          ? `Paused in ${q.queue}${q.paused_reason ? ` (${q.paused_reason})` : ""} since before this page loaded: at least this long`
          : `Paused in ${q.queue}${q.paused_reason ? ` (${q.paused_reason})` : ""}${
              known !== null ? ` since ${localTime(known, now)}` : ""
            }`;
      } else {
        li.textContent = q.queue;
        if (q.in_call) li.dataset.inCall = "true";
      }
      chips.push(li);
    }
    tile.pausedSince = since;
    tile.pauseClocks = clocks;
    tile.paused = clocks.length > 0;
    if (chips.length || n.queues.firstChild) n.queues.replaceChildren(...chips);
    if (n.queues.hidden !== (chips.length === 0)) n.queues.hidden = chips.length === 0;
    el.dataset.queues = String(queues.length);
    el.dataset.paused = tile.paused ? "true" : "false";
    n.pause.textContent = tile.paused ? "Resume" : "Pause";
    for (const c of clocks) this.tickPause(c, now);
  }

  /**
   * @param {Tile} tile
   * @param {import("./types").AgentPresence | null} p
   */
  writePresence(tile, p) {
    const pl = p ? presenceLook(p.state) : null;
    const badge = tile.n.pres;
    if (!p || !pl) {
      badge.hidden = true;
      badge.textContent = "";
      delete tile.el.dataset.agentPresence;
      return;
    }
    badge.hidden = false;
    badge.textContent = pl.label;
    badge.dataset.level = pl.level;
    badge.title = [p.subtype, p.message].filter(Boolean).join(" · ");
    tile.el.dataset.agentPresence = p.state;
  }

  /**
   * @param {Tile} tile
   * @param {import("./types").CallInfo | null} c
   * @param {number} now
   */
  writeCall(tile, c, now) {
    const { n, el } = tile;
    if (!c) {
      n.call.hidden = true;
      tile.callSince = null;
      delete el.dataset.call;
      return;
    }
    const who =
      c.peer_name && c.peer_number && c.peer_name !== c.peer_number
        ? `${c.peer_name} ${c.peer_number}`
        : (c.peer_name ?? c.peer_number ?? "unknown caller");
    const parts = [c.state === "ringing" ? `Ringing: ${who}` : who];
    if (c.queue) parts.push(`${c.queue} queue`);
    n.callText.textContent = parts.join(" · ");
    n.call.hidden = false;
    el.dataset.call = c.state;
    tile.callSince = epoch(c.since);
    tile.callDurText = "";
    this.tickTile(tile, now);
  }

  /**
   * @param {PauseClock} c
   * @param {number} now
   */
  tickPause(c, now) {
    const text = `${c.atLeast ? "≥" : ""}${clock(now - c.since)}`;
    if (text !== c.text && c.el) {
      c.text = text;
      c.el.textContent = text;
    }
  }

  /**
   * @param {Tile} tile
   * @param {number} now
   */
  tickTile(tile, now) {
    const text = tile.changedAt === null ? "—" : duration(now - tile.changedAt);
    if (text !== tile.durText) {
      tile.durText = text;
      tile.n.dur.textContent = text;
    }
    const seen = tile.seenAt === null ? "never" : ago(now - tile.seenAt);
    if (seen !== tile.seenText) {
      tile.seenText = seen;
      tile.n.seen.textContent = seen;
    }
    if (tile.callSince !== null) {
      const call = clock(now - tile.callSince);
      if (call !== tile.callDurText) {
        tile.callDurText = call;
        tile.n.callDur.textContent = call;
      }
    }
    for (const c of tile.pauseClocks) this.tickPause(c, now);
  }

  /**
   * Writes the tooltips of a tile: the exact states and the full local times.
   * @param {Tile} tile
   */
  explain(tile) {
    const { rec, n } = tile;
    n.stateText.title = `Device state ${rec.device_state}; Asterisk extension state ${statusCodeText(rec.status_code)}`;
    n.changed.title = fullTime(tile.changedAt);
    n.seen.title = fullTime(tile.seenAt);
  }

  /** Advances the clocks on screen; called once a second. */
  tick() {
    const started = performance.now();
    const now = Date.now();
    for (const tile of this.onScreen) if (tile.visible) this.tickTile(tile, now);
    for (const tile of this.recent) {
      if (tile.changedAt === null || now - tile.changedAt >= RECENT_MS || !this.tiles.has(tile.rec._id)) {
        tile.el.classList.remove("recent");
        this.recent.delete(tile);
      }
    }
    this.stats.ticks += 1;
    this.stats.tickMs += performance.now() - started;
  }

  /** @param {Tile} tile */
  matches(tile) {
    const v = this.view;
    if (!v.showInactive && !tile.rec.is_active) return false;
    if (v.department && tile.rec.department !== v.department) return false;
    if (v.category && tile.category !== v.category) return false;
    if (v.query && !tile.haystack.includes(v.query)) return false;
    return true;
  }

  /** @param {Tile} tile */
  applyVisibility(tile) {
    const visible = this.matches(tile);
    if (tile.visible !== visible || tile.el.hidden === visible) {
      tile.visible = visible;
      tile.el.hidden = !visible;
      // A clock that was hidden has not been ticking.
      if (visible) this.tickTile(tile, Date.now());
    }
  }

  /**
   * Rewrites a group's counts (only when they changed) and hides it when nothing in it shows.
   * @param {Group} g
   */
  updateGroup(g) {
    /** @type {Map<Category, number>} */
    const counts = new Map();
    let shown = 0;
    let total = 0;
    for (const tile of g.members) {
      total += 1;
      if (!tile.visible) continue;
      shown += 1;
      counts.set(tile.category, (counts.get(tile.category) ?? 0) + 1);
    }
    if (total === 0) {
      g.section.remove();
      this.groups.delete(g.key);
      return;
    }
    g.section.hidden = shown === 0;
    const text = `${shown}/${total}|${CATEGORIES.map((c) => counts.get(c.key) ?? 0).join(",")}`;
    if (text === g.countsText) return;
    g.countsText = text;
    g.total.textContent = shown === total ? `(${total})` : `(${shown} of ${total})`;
    for (const c of CATEGORIES) {
      const el = /** @type {HTMLElement} */ (g.countEls.get(c.key));
      const n = counts.get(c.key) ?? 0;
      el.hidden = n === 0;
      el.textContent = `${n} ${c.label.toLowerCase()}`;
    }
  }

  updateSummary() {
    /** @type {Map<Category, number>} */
    const counts = new Map();
    let shown = 0;
    let inactiveHidden = 0;
    let paused = 0;
    for (const tile of this.tiles.values()) {
      if (!tile.rec.is_active && !this.view.showInactive) inactiveHidden += 1;
      if (!tile.visible) continue;
      shown += 1;
      if (tile.paused) paused += 1;
      counts.set(tile.category, (counts.get(tile.category) ?? 0) + 1);
    }
    if (this.departmentsDirty) {
      this.departmentsDirty = false;
      /** @type {Set<string>} */
      const departments = new Set();
      for (const tile of this.tiles.values()) departments.add(tile.rec.department);
      const sorted = [...departments].sort((a, b) => a.localeCompare(b));
      const key = sorted.join("\n");
      if (key !== this.departmentsKey) {
        this.departmentsKey = key;
        this.onDepartments(sorted);
      }
    }
    this.onSummary(shown, this.tiles.size, counts, inactiveHidden, paused);
  }

  /**
   * Shows or hides every tile's Pause / Resume button (the server allows PBX actions or not).
   * @param {boolean} on
   */
  setActions(on) {
    this.root.classList.toggle("actions-on", on);
  }

  /**
   * Greys the board and says on every tile that the data is the last known, not live.
   * @param {boolean} stale
   */
  setStale(stale) {
    if (stale === this.stale) return;
    this.stale = stale;
    this.root.classList.toggle("stale", stale);
  }
}
