// The dashboard's entry point: wires the link, the board, the filters, the dialogs and the
// connection indicator together.
//
// Query parameters, for drills and tests: `?poll=MS` sets the polling period while the
// WebSocket is down (default 3000, at least 250); `?debug` adds fault injection to
// `window.extstatus.debug`; `?queues=MS` sets how often the queue strip polls (default 3000,
// at least 250); `?analytics=MS` sets how often the department comparison refreshes (default
// 30000, at least 1000).

import { Board } from "./board.js";
import { Live, token, api } from "./live.js";
import { Manage } from "./manage.js";
import { CATEGORIES, localTime } from "./format.js";
import { QueueStrip } from "./queues.js";
import { PauseDialog } from "./pause.js";
import { DepartmentComparison, AgentChart } from "./charts.js";

/** @typedef {import("./types").Extension} Extension */
/** @typedef {import("./types").PbxLink} PbxLink */
/** @typedef {import("./types").ServerMessage} ServerMessage */
/** @typedef {import("./live.js").LinkState} LinkState */
/** @typedef {import("./board.js").View} View */
/** @typedef {import("./format.js").Category} Category */

/**
 * @template {HTMLElement} T
 * @param {string} id
 * @returns {T}
 */
function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing #${id}`);
  return /** @type {T} */ (el);
}

const params = new URLSearchParams(location.search);
const pollMs = Math.max(250, Number(params.get("poll")) || 3000);
const VIEW_KEY = "extstatus.view";

// ---- Toasts -------------------------------------------------------------------------------

const toasts = byId("toasts");
/** @param {string} text */
function toast(text) {
  const p = document.createElement("p");
  p.className = "toast";
  p.textContent = text;
  toasts.append(p);
  setTimeout(() => p.remove(), 5000);
}

// ---- Token dialog -------------------------------------------------------------------------

const tokenDialog = /** @type {HTMLDialogElement} */ (byId("token"));
const tokenInput = /** @type {HTMLInputElement} */ (byId("token-input"));
/** @type {Promise<boolean> | null} */
let tokenAsk = null;

/**
 * Asks for a token once, however many requests are waiting for it.
 * @param {"view" | "admin"} why
 * @returns {Promise<boolean>}
 */
function askToken(why) {
  if (tokenAsk) return tokenAsk;
  byId("token-why").textContent =
    why === "admin"
      ? token.get()
        ? "This change needs an admin token; the token given is not one."
        : "Changes on this server need an admin token."
      : token.get()
        ? "The token given was refused. Enter a viewer or admin token."
        : "This server needs a viewer or admin token to show the board.";
  tokenInput.value = "";
  tokenAsk = new Promise((resolve) => {
    /** @param {boolean} given */
    const done = (given) => {
      tokenDialog.removeEventListener("close", onClose);
      byId("token-form").removeEventListener("submit", onSubmit);
      tokenAsk = null;
      resolve(given);
    };
    const onClose = () => done(false);
    /** @param {Event} ev */
    const onSubmit = (ev) => {
      ev.preventDefault();
      const value = tokenInput.value.trim();
      if (!value) {
        tokenInput.focus();
        return;
      }
      token.set(value);
      tokenDialog.removeEventListener("close", onClose);
      tokenDialog.close();
      done(true);
    };
    tokenDialog.addEventListener("close", onClose);
    byId("token-form").addEventListener("submit", onSubmit);
    tokenDialog.showModal();
    tokenInput.focus();
  });
  return tokenAsk;
}
byId("token-cancel").addEventListener("click", () => tokenDialog.close());

// ---- Board and its filters ----------------------------------------------------------------

const boardEl = byId("board");
const manage = new Manage(
  askToken,
  (rec) => board.upsert(rec),
  (id) => board.remove(id),
  toast,
);
const board = new Board(boardEl, /** @type {HTMLTemplateElement} */ (byId("tile-template")), (rec) => manage.openEdit(rec));
board.minFrameMs = Math.max(0, Number(params.get("frame") ?? 250) || 0);
byId("add").addEventListener("click", () => manage.openNew());
const pauseDialog = new PauseDialog(askToken, (rec) => board.upsert(rec), toast);
board.onPause = (/** @type {Extension} */ rec) => pauseDialog.open(rec);

// ---- Today's charts: the department comparison and one agent's day ------------------------

const compare = new DepartmentComparison(
  /** @type {HTMLDetailsElement} */ (byId("compare")),
  byId("compare-rows"),
  byId("compare-note"),
  byId("compare-asof"),
  askToken,
);
compare.pollMs = Math.max(1000, Number(params.get("analytics")) || 30_000);
const agentChart = new AgentChart(/** @type {HTMLDialogElement} */ (byId("agent-chart")), askToken);
board.onChart = (/** @type {Extension} */ rec) => agentChart.open(rec);

// ---- Queue strip and the server's settings for the page -------------------------------------

const strip = new QueueStrip(
  byId("queue-strip"),
  /** @type {HTMLUListElement} */ (byId("queue-list")),
  byId("queue-note"),
  askToken,
);
strip.pollMs = Math.max(250, Number(params.get("queues")) || 3000);

/**
 * `GET /api/ui-config`: whether pause and resume are offered, the pause reasons and the
 * queue-wait thresholds. Until it answers, no Pause button shows (the safe side).
 * @type {{ami_actions: boolean, pause_reasons: string[], queue_wait_amber_s: number, queue_wait_red_s: number} | null}
 */
let uiConfig = null;
async function loadUiConfig() {
  try {
    const res = await api(askToken, "GET", "/api/ui-config");
    if (!res.ok || !res.body || typeof res.body !== "object") return;
    uiConfig = /** @type {NonNullable<typeof uiConfig>} */ (res.body);
    board.setActions(uiConfig.ami_actions === true);
    pauseDialog.setReasons(Array.isArray(uiConfig.pause_reasons) ? uiConfig.pause_reasons : []);
    strip.setThresholds(uiConfig.queue_wait_amber_s, uiConfig.queue_wait_red_s);
  } catch {
    // Declined token or no server: tried again when the link is live.
  }
}

const qInput = /** @type {HTMLInputElement} */ (byId("q"));
const deptSelect = /** @type {HTMLSelectElement} */ (byId("dept"));
const statusSelect = /** @type {HTMLSelectElement} */ (byId("status"));
const groupSelect = /** @type {HTMLSelectElement} */ (byId("group"));
const inactiveBox = /** @type {HTMLInputElement} */ (byId("inactive"));

/** Reads the controls into a view and remembers it for the next visit. */
function readView() {
  /** @type {Partial<View>} */
  const view = {
    query: qInput.value.trim().toLowerCase(),
    department: deptSelect.value,
    category: /** @type {Category | ""} */ (statusSelect.value),
    groupBy: /** @type {View["groupBy"]} */ (groupSelect.value),
    showInactive: inactiveBox.checked,
  };
  try {
    localStorage.setItem(
      VIEW_KEY,
      JSON.stringify({ department: deptSelect.value, category: statusSelect.value, groupBy: groupSelect.value, showInactive: inactiveBox.checked }),
    );
  } catch {
    // Without storage the view simply is not remembered.
  }
  board.setView(view);
}

/** Restores the remembered view (not the search text, which is a momentary thing). */
function restoreView() {
  try {
    const saved = JSON.parse(localStorage.getItem(VIEW_KEY) ?? "null");
    if (!saved || typeof saved !== "object") return;
    if (typeof saved.department === "string" && saved.department) {
      deptSelect.append(new Option(saved.department, saved.department));
      deptSelect.value = saved.department;
    }
    if (typeof saved.category === "string") statusSelect.value = saved.category;
    if (typeof saved.groupBy === "string") groupSelect.value = saved.groupBy;
    inactiveBox.checked = saved.showInactive === true;
  } catch {
    // A damaged entry is ignored.
  }
}
restoreView();
for (const el of [deptSelect, statusSelect, groupSelect, inactiveBox]) el.addEventListener("change", readView);
// `input` covers typing; `change` and `search` cover clearing the field by other means.
for (const type of ["input", "change", "search"]) qInput.addEventListener(type, readView);
byId("filters").addEventListener("submit", (ev) => ev.preventDefault());
readView();

document.addEventListener("keydown", (ev) => {
  const t = /** @type {HTMLElement} */ (ev.target);
  if (ev.key === "/" && !(t instanceof HTMLInputElement || t instanceof HTMLSelectElement || t instanceof HTMLTextAreaElement)) {
    ev.preventDefault();
    qInput.focus();
  }
});

const datalist = byId("departments");
/** @param {string[]} departments */
board.onDepartments = (departments) => {
  const chosen = deptSelect.value;
  const options = [new Option("All departments", "")];
  for (const d of departments) options.push(new Option(d, d));
  if (chosen && !departments.includes(chosen)) options.push(new Option(chosen, chosen));
  deptSelect.replaceChildren(...options);
  deptSelect.value = chosen;
  datalist.replaceChildren(...departments.map((d) => new Option(d, d)));
};

const summary = byId("summary");
let summaryText = "";
/**
 * @param {number} shown
 * @param {number} total
 * @param {Map<Category, number>} counts
 * @param {number} inactiveHidden
 * @param {number} paused
 */
board.onSummary = (shown, total, counts, inactiveHidden, paused) => {
  const parts = [shown === total ? `${total} extensions` : `${shown} of ${total} extensions shown`];
  for (const c of CATEGORIES) {
    const n = counts.get(c.key) ?? 0;
    if (n) parts.push(`${n} ${c.label.toLowerCase()}`);
  }
  if (paused) parts.push(`${paused} paused`);
  if (inactiveHidden) parts.push(`${inactiveHidden} inactive hidden`);
  const text = parts.join(" · ");
  if (text !== summaryText) {
    summaryText = text;
    summary.textContent = text;
  }
  byId("empty").hidden = shown !== 0 || total === 0;
};

// ---- Connection and PBX indicators --------------------------------------------------------

const conn = byId("conn");
const connText = byId("conn-text");
const pbxEl = byId("pbx");
/** @type {PbxLink} */
let pbx = { connected: true, since: null };
/** @type {LinkState} */
let link = { state: "connecting", since: Date.now(), lastData: null, nextRetry: null };

function renderIndicators() {
  const now = Date.now();
  let text;
  switch (link.state) {
    case "connecting":
      text = "Connecting…";
      break;
    case "live":
      text = "Live";
      break;
    case "polling":
      text = `Reconnecting · polling every ${Math.round(pollMs / 100) / 10} s${link.lastData ? ` · updated ${localTime(link.lastData, now)}` : ""}`;
      break;
    case "offline":
      text = `Server unreachable since ${localTime(link.since, now)} · showing last known data`;
      break;
    case "token":
      text = "Token needed";
      break;
  }
  conn.dataset.state = link.state;
  if (connText.textContent !== text) connText.textContent = text;
  if (!pbx.connected) {
    const since = pbx.since ? Date.parse(pbx.since) : NaN;
    pbxEl.textContent = Number.isNaN(since)
      ? "PBX not connected yet · statuses are the last known, not live"
      : `PBX link down since ${localTime(since, now)} · statuses are the last known, not live`;
    pbxEl.hidden = false;
  } else {
    pbxEl.hidden = true;
  }
  const stale = !pbx.connected || link.state === "offline" || (link.state === "token" && board.tiles.size > 0);
  board.setStale(stale);
  document.body.classList.toggle("pbx-down", !pbx.connected);
}
conn.addEventListener("click", () => live.retryToken());

// ---- The link -----------------------------------------------------------------------------

const firstRender = { snapshotAt: 0, domAt: 0, paintAt: 0, rows: 0 };

const live = new Live(
  {
    replaceAll(records, pbxLink) {
      if (pbxLink) pbx = pbxLink;
      board.replaceAll(records);
      if (!firstRender.snapshotAt) {
        firstRender.snapshotAt = performance.now();
        void board.flushed().then(() => {
          firstRender.domAt = performance.now();
          firstRender.rows = board.tiles.size;
          performance.mark("extstatus:first-render");
          // The frame after the one that built the tiles has painted them.
          requestAnimationFrame(() =>
            setTimeout(() => {
              firstRender.paintAt = performance.now();
              performance.mark("extstatus:first-paint");
            }, 0),
          );
        });
      }
      renderIndicators();
    },
    apply(messages) {
      for (const m of messages) {
        switch (m.type) {
          case "extension_status_updated":
          case "extension_created":
          case "extension_updated":
            board.upsert(m.extension);
            break;
          case "extension_deleted":
            board.remove(m._id);
            break;
          case "pbx_link":
            pbx = { connected: m.connected, since: m.since };
            renderIndicators();
            break;
          default:
            // A message type from a newer server is ignored, not fatal.
            break;
        }
      }
    },
    state(l) {
      link = l;
      if (l.state === "live") {
        if (!uiConfig) void loadUiConfig();
        if (strip.waitingToken) strip.start();
        if (compare.waitingToken) compare.start();
      }
      renderIndicators();
    },
  },
  { pollMs, askToken },
);

// The clocks tick on the second boundary, and nothing but their text changes.
function tick() {
  board.tick();
  strip.tick();
  renderIndicators();
  setTimeout(tick, 1000 - (Date.now() % 1000) + 5);
}
setTimeout(tick, 1000 - (Date.now() % 1000) + 5);

live.start();
void loadUiConfig();
strip.start();
compare.start();

// ---- Hooks for operators and tests --------------------------------------------------------

/** @type {Record<string, unknown>} */
const hooks = {
  board,
  live,
  strip,
  compare,
  agentChart,
  /** Counters for the performance measurements in docs/performance.md. */
  stats() {
    return {
      board: { ...board.stats, tiles: board.tiles.size },
      live: { ...live.stats },
      queues: { ...strip.stats, queues: strip.chips.size },
      compare: { ...compare.stats },
      firstRender: { ...firstRender },
      link: link.state,
    };
  },
  /** Resolves when the DOM shows everything received so far. */
  flushed: () => board.flushed(),
};
if (params.has("debug")) {
  hooks.debug = {
    /**
     * Drops the WebSocket as a network failure would and blocks reconnects for a while.
     * @param {number} blockMs
     */
    dropSocket(blockMs) {
      live.dropSocket(blockMs);
    },
    /**
     * Feeds one frame through the same path as the WebSocket (parse, seq check, apply).
     * @param {string} frame
     */
    injectFrame(frame) {
      live.onFrame(frame);
    },
  };
}
/** @type {Window & {extstatus?: Record<string, unknown>}} */ (window).extstatus = hooks;
