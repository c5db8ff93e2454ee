// What a record means to a person: state categories, labels, icons, and time formatting.
// Pure functions only, so that the board can call them for every tile without surprises.

import { EXTENSION_STATES } from "./constants.js";

/** @typedef {import("./types").Extension} Extension */
/** @typedef {import("./types").DeviceState} DeviceState */
/** @typedef {import("./types").Presence} Presence */

/**
 * The categories supervisors count and filter by. Several device states share one (BUSY counts
 * as on call, RINGINUSE as ringing), but the tile always shows the exact state as text.
 * @typedef {"idle" | "oncall" | "ringing" | "hold" | "offline" | "unknown"} Category
 */

/** @type {ReadonlyArray<{key: Category, label: string}>} */
export const CATEGORIES = Object.freeze([
  { key: "idle", label: "Idle" },
  { key: "oncall", label: "On call" },
  { key: "ringing", label: "Ringing" },
  { key: "hold", label: "On hold" },
  { key: "offline", label: "Offline" },
  { key: "unknown", label: "Unknown" },
]);

/**
 * How each device state looks. Typed as a record over every `DeviceState`, so the type check
 * fails when the Rust side adds a state this table does not cover.
 * @type {Readonly<Record<DeviceState, {category: Category, label: string, icon: string}>>}
 */
export const DEVICE_LOOK = Object.freeze({
  NOT_INUSE: { category: "idle", label: "Idle", icon: "i-idle" },
  INUSE: { category: "oncall", label: "On call", icon: "i-call" },
  BUSY: { category: "oncall", label: "Busy", icon: "i-busy" },
  RINGING: { category: "ringing", label: "Ringing", icon: "i-ringing" },
  RINGINUSE: { category: "ringing", label: "Ringing (in call)", icon: "i-ringing" },
  ONHOLD: { category: "hold", label: "On hold", icon: "i-hold" },
  UNAVAILABLE: { category: "offline", label: "Unavailable", icon: "i-offline" },
  INVALID: { category: "unknown", label: "Invalid device", icon: "i-invalid" },
  UNKNOWN: { category: "unknown", label: "Unknown", icon: "i-unknown" },
});

const UNKNOWN_LOOK = DEVICE_LOOK.UNKNOWN;

/** @type {Map<number, string>} */
const STATUS_TEXT = new Map(EXTENSION_STATES.map((s) => [s.code, s.text]));

/**
 * The look of a record's device state; an unexpected string from a newer server shows as
 * unknown rather than breaking the tile.
 * @param {Extension} rec
 */
export function look(rec) {
  return DEVICE_LOOK[rec.device_state] ?? UNKNOWN_LOOK;
}

/**
 * Asterisk's own name for a raw extension state, e.g. `17 (InUse&Hold)`.
 * @param {number} code
 */
export function statusCodeText(code) {
  return `${code} (${STATUS_TEXT.get(code) ?? "Unknown"})`;
}

/**
 * Parses an RFC 3339 time into epoch milliseconds, or null.
 * @param {string | null | undefined} iso
 */
export function epoch(iso) {
  if (!iso) return null;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? null : t;
}

/**
 * A duration as a wallboard shows it: `42s`, `3m 05s`, `2h 07m`, `3d 4h`.
 * @param {number} ms
 */
export function duration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h ${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

/**
 * How long ago, coarsely: `now`, `12s ago`, `4m ago`, `3h ago`, `2d ago`.
 * @param {number} ms
 */
export function ago(ms) {
  const s = Math.floor(ms / 1000);
  if (s < 2) return "now";
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit", second: "2-digit" });
const dateTimeFmt = new Intl.DateTimeFormat(undefined, {
  month: "short",
  day: "numeric",
  hour: "numeric",
  minute: "2-digit",
});
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "long" });

/**
 * A time in the viewer's zone: the clock time when it is today, else date and time.
 * @param {number | null} t epoch milliseconds
 * @param {number} now epoch milliseconds
 */
export function localTime(t, now) {
  if (t === null) return "never";
  const d = new Date(t);
  const today = new Date(now);
  const sameDay =
    d.getFullYear() === today.getFullYear() && d.getMonth() === today.getMonth() && d.getDate() === today.getDate();
  return sameDay ? timeFmt.format(d) : dateTimeFmt.format(d);
}

/**
 * The full local date and time, for tooltips.
 * @param {number | null} t
 */
export function fullTime(t) {
  return t === null ? "" : fullFmt.format(new Date(t));
}

/**
 * Compares extension numbers as a person reads them: shorter numbers first, then by digits, so
 * `99` sorts before `100` and `0101` keeps its place.
 * @param {string} a
 * @param {string} b
 */
export function compareNumbers(a, b) {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}

/**
 * A running time as a stopwatch shows it: `03:21`, `1:02:03`.
 * @param {number} ms
 */
export function clock(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const mm = String(Math.floor(s / 60) % 60).padStart(2, "0");
  const ss = String(s % 60).padStart(2, "0");
  return s >= 3600 ? `${Math.floor(s / 3600)}:${mm}:${ss}` : `${mm}:${ss}`;
}

/**
 * How a presence state stands out on a tile: a word, and a level for its colour (`dnd` red,
 * `away` amber, `on` neutral). `available` (the normal state), `not_set` and no provider show
 * nothing.
 * @param {string} state
 * @returns {{label: string, level: "dnd" | "away" | "on"} | null}
 */
export function presenceLook(state) {
  switch (state) {
    case "dnd":
      return { label: "DND", level: "dnd" };
    case "away":
      return { label: "Away", level: "away" };
    case "xa":
      return { label: "Extended away", level: "away" };
    case "unavailable":
      return { label: "Unavailable", level: "away" };
    case "available":
      // The normal state: a badge on every tile would drown the ones that matter.
      return null;
    case "chat":
      return { label: "Chat", level: "on" };
    case "not_set":
    case "":
      return null;
    default:
      // A word a newer Asterisk may send is shown as it is.
      return { label: state, level: "on" };
  }
}

/**
 * The level of a queue's longest wait against the configured thresholds.
 * @param {number} waitS seconds
 * @param {number} amberS
 * @param {number} redS
 * @returns {"ok" | "amber" | "red"}
 */
export function waitLevel(waitS, amberS, redS) {
  if (waitS >= redS) return "red";
  if (waitS >= amberS) return "amber";
  return "ok";
}
