// Generated from the Rust types by the test `dashboard::typescript` in bins/api-server; do not edit.
// Rewrite with: EXTSTATUS_BLESS=1 cargo test -p api-server dashboard::typescript

/**
 * A record id: 24 lower-case hexadecimal characters, the text form of a MongoDB ObjectId.
 */
export type RecordId = string;

/**
 * An extension number: 2 to 10 ASCII digits. Leading zeros are significant (`0101` is not
 * `101`), so it is text, never a number.
 *
 * It orders the way a supervisor reads a board: by the numeric value of its digits
 * (`99` < `100`, and `0101`, worth 101, sits between `100` and `102`), and numbers of equal
 * value by length, fewer leading zeros first (`101` < `0101` < `00101`).
 * This is the one definition of extension order: the store lists records in it and the
 * hub's snapshots use it.
 */
export type ExtensionNumber = string;

/**
 * An agent's display name: 1 to 100 characters after trimming, no control characters.
 */
export type AgentName = string;

/**
 * A department name: 1 to 50 characters after trimming, no control characters.
 */
export type Department = string;

/**
 * A device state as Asterisk writes it (`ast_devstate_str()`), also what records store in
 * `device_state`.
 */
export type DeviceState = "UNKNOWN" | "NOT_INUSE" | "INUSE" | "BUSY" | "INVALID" | "UNAVAILABLE" | "RINGING" | "RINGINUSE" | "ONHOLD";

/**
 * Whether an extension's phone is reachable, as far as the PBX says.
 */
export type Presence = "online" | "offline" | "unknown";

/**
 * One queue the agent is a member of.
 */
export type QueueMembership = { 
/**
 * The queue's name, e.g. `sales`.
 */
queue: string, 
/**
 * Whether the agent is paused in this queue.
 */
paused: boolean, 
/**
 * Why, as the PBX reports it (`PausedReason`); null when not paused or no reason given.
 */
paused_reason: string | null, 
/**
 * Since when the agent is paused in this queue: the PBX's `LastPause` (or, when the PBX
 * does not send it, when the pause was seen); null when not paused. Records written
 * before this field existed read as null.
 */
paused_since: string | null, 
/**
 * The member's penalty (lower is offered calls first).
 */
penalty: number, 
/**
 * Calls the agent took from this queue since it joined.
 */
calls_taken: number, 
/**
 * When the agent's last call from this queue ended; null when never.
 */
last_call: string | null, 
/**
 * Whether the agent is on a call from this queue now.
 */
in_call: boolean, };

/**
 * The agent's presence as a presence provider (`CustomPresence:...` in the hint) reports it.
 */
export type AgentPresence = { 
/**
 * Lower-case: `available`, `away`, `dnd`, `xa`, `chat`, `unavailable`, `not_set`, or
 * another word a newer Asterisk may send.
 */
state: string, 
/**
 * The subtype, e.g. `Lunch break`; null when none.
 */
subtype: string | null, 
/**
 * The message, e.g. `Back at 14:00`; null when none.
 */
message: string | null, };

/**
 * Where the agent's call is.
 */
export type CallState = "ringing" | "up";

/**
 * The call the agent is being rung for or is talking on.
 */
export type CallInfo = { 
/**
 * Ringing or up.
 */
state: CallState, 
/**
 * The other party's number; null when unknown.
 */
peer_number: string | null, 
/**
 * The other party's name; null when unknown.
 */
peer_name: string | null, 
/**
 * The queue the call came from; null for a call that did not come through a queue.
 */
queue: string | null, 
/**
 * When the call reached its current state.
 */
since: string, };

/**
 * A pause reason a user gives: free text, 1 to 64 characters after trimming, no control
 * characters. The PBX's own reports are not held to this (another client may set any text),
 * so [`QueueMembership::paused_reason`] is plain text.
 */
export type PauseReason = string;

/**
 * One extension: who sits at it (user fields) and what its phone is doing (AMI fields).
 */
export type Extension = { 
/**
 * The store's id.
 */
_id: RecordId, 
/**
 * The extension number; unique and immutable after creation.
 */
extension: ExtensionNumber, 
/**
 * The agent's display name.
 */
agent_name: AgentName, 
/**
 * The agent's department.
 */
department: Department, 
/**
 * The raw Asterisk extension state (see [`ExtensionState`]).
 */
status_code: number, 
/**
 * The device state derived from `status_code`.
 */
device_state: DeviceState, 
/**
 * Online, offline or unknown, derived from `status_code`.
 */
status: Presence, 
/**
 * When `status_code` last really changed.
 */
last_status_change: string | null, 
/**
 * When the PBX last reported on this extension.
 */
last_seen: string | null, 
/**
 * The queues the agent is a member of (`[]` when none), from the PBX only. Absent from
 * records written before call-center state existed, hence the default.
 */
queues: Array<QueueMembership>, 
/**
 * The agent's presence; null when no presence provider is hinted. From the PBX only.
 * Boxed, like `call`, so that a record without call-center state stays small.
 */
presence: AgentPresence | null, 
/**
 * The call the agent is being rung for or is talking on; null when none. From the PBX
 * only.
 */
call: CallInfo | null, 
/**
 * Whether the extension is in service; inactive ones stay listed but are not expected to
 * be staffed.
 */
is_active: boolean, 
/**
 * When the record was created.
 */
createdAt: string, 
/**
 * When a user last edited the record (status changes do not count).
 */
updatedAt: string, };

/**
 * The state of the link to the PBX, as snapshots and `pbx_link` messages carry it.
 */
export type PbxLink = { 
/**
 * Whether the AMI connection is up (after the grace period the caller applies).
 */
connected: boolean, 
/**
 * Since when it has been in that state; `None` when it never was (a server that has not
 * reached the PBX yet).
 */
since: string | null, };

/**
 * One message of the WebSocket stream, exactly as `docs/api.md` describes it.
 *
 * The hub sends pre-serialized text ([`SequencedChange::json`], [`Snapshot::to_json`]); this
 * type exists so that clients and tests can read the stream, and it serializes to the same
 * text.
 */
export type ServerMessage = { "type": "snapshot", 
/**
 * The sequence number of the last change the snapshot includes.
 */
seq: number, 
/**
 * The records, ordered by extension number.
 */
extensions: Array<Extension>, 
/**
 * The PBX link at `seq`.
 */
pbx_link: PbxLink, } | { "type": "extension_status_updated", 
/**
 * This change's sequence number.
 */
seq: number, 
/**
 * The record after the change.
 */
extension: Extension, } | { "type": "extension_created", 
/**
 * This change's sequence number.
 */
seq: number, 
/**
 * The new record.
 */
extension: Extension, } | { "type": "extension_updated", 
/**
 * This change's sequence number.
 */
seq: number, 
/**
 * The record after the edit.
 */
extension: Extension, } | { "type": "extension_deleted", 
/**
 * This change's sequence number.
 */
seq: number, 
/**
 * The deleted record's id.
 */
_id: RecordId, } | { "type": "pbx_link", 
/**
 * This change's sequence number.
 */
seq: number, 
/**
 * Whether the link is up.
 */
connected: boolean, 
/**
 * Since when.
 */
since: string | null, };

/** The `type` of each WebSocket message. */
export type ServerMessageType = ServerMessage["type"];

/**
 * The extension states Asterisk defines (`status_code`); any other number is kept as
 * sent and shown as unknown.
 */
export type KnownStatusCode = -2 | -1 | 0 | 1 | 2 | 4 | 8 | 9 | 16 | 17;

/** One row of `EXTENSION_STATES` in constants.js. */
export type ExtensionStateInfo = { code: KnownStatusCode, text: string, device_state: DeviceState, status: Presence, };

/** One row of `DEVICE_STATES` in constants.js. */
export type DeviceStateInfo = { name: DeviceState, number: number, cli: string, status: Presence, };

/** The body of every error answer of the HTTP API (`docs/api.md`). */
export type ApiErrorBody = { error: { code: string, message: string, fields?: Record<string, string>, }, };

/** The members of a creation request (`POST /api/extensions`). */
export type NewExtensionField = "extension" | "agent_name" | "department" | "is_active";
