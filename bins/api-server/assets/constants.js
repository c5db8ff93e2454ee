// Generated from the Rust types by the test `dashboard::typescript` in bins/api-server; do not edit.
// Rewrite with: EXTSTATUS_BLESS=1 cargo test -p api-server dashboard::typescript

/**
 * Every extension state Asterisk defines: its `status_code`, Asterisk's StatusText, and the
 * `device_state` and `status` the server stores with it.
 * @type {ReadonlyArray<import("./types").ExtensionStateInfo>}
 */
export const EXTENSION_STATES = Object.freeze([
  Object.freeze({ code: -2, text: "Unknown", device_state: "UNKNOWN", status: "unknown" }),
  Object.freeze({ code: -1, text: "Unknown", device_state: "UNKNOWN", status: "unknown" }),
  Object.freeze({ code: 0, text: "Idle", device_state: "NOT_INUSE", status: "online" }),
  Object.freeze({ code: 1, text: "InUse", device_state: "INUSE", status: "online" }),
  Object.freeze({ code: 2, text: "Busy", device_state: "BUSY", status: "online" }),
  Object.freeze({ code: 4, text: "Unavailable", device_state: "UNAVAILABLE", status: "offline" }),
  Object.freeze({ code: 8, text: "Ringing", device_state: "RINGING", status: "online" }),
  Object.freeze({ code: 9, text: "InUse&Ringing", device_state: "RINGINUSE", status: "online" }),
  Object.freeze({ code: 16, text: "Hold", device_state: "ONHOLD", status: "online" }),
  Object.freeze({ code: 17, text: "InUse&Hold", device_state: "INUSE", status: "online" }),
]);

/**
 * Every device state, in Asterisk's numeric order: the stored string, Asterisk's number, the
 * CLI's wording, and the presence it means.
 * @type {ReadonlyArray<import("./types").DeviceStateInfo>}
 */
export const DEVICE_STATES = Object.freeze([
  Object.freeze({ name: "UNKNOWN", number: 0, cli: "Unknown", status: "unknown" }),
  Object.freeze({ name: "NOT_INUSE", number: 1, cli: "Not in use", status: "online" }),
  Object.freeze({ name: "INUSE", number: 2, cli: "In use", status: "online" }),
  Object.freeze({ name: "BUSY", number: 3, cli: "Busy", status: "online" }),
  Object.freeze({ name: "INVALID", number: 4, cli: "Invalid", status: "unknown" }),
  Object.freeze({ name: "UNAVAILABLE", number: 5, cli: "Unavailable", status: "offline" }),
  Object.freeze({ name: "RINGING", number: 6, cli: "Ringing", status: "online" }),
  Object.freeze({ name: "RINGINUSE", number: 7, cli: "Ring+Inuse", status: "online" }),
  Object.freeze({ name: "ONHOLD", number: 8, cli: "On Hold", status: "online" }),
]);

/** @type {ReadonlyArray<import("./types").Presence>} */
export const PRESENCES = Object.freeze(["online", "offline", "unknown"]);

/** The `status_code` of a record the PBX has not reported on yet. */
export const INITIAL_STATUS_CODE = -1;

/** The lengths the server accepts, for hints; the server alone decides what is valid. */
export const LIMITS = Object.freeze({
  extension: Object.freeze({ min: 2, max: 10 }),
  agent_name: Object.freeze({ max: 100 }),
  department: Object.freeze({ max: 50 }),
  pause_reason: Object.freeze({ max: 64 }),
});
