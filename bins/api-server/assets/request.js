// The page's shared request helpers: one way to run a request from a dialog (buttons disabled,
// a declined token or an unreachable server said in the form), to show an error answer next to
// the fields it names, and to read a JSON answer that a view shows in place (its failure as a
// sentence naming the request). The token itself is asked for by `api` in live.js.

import { api, apiError, NeedsToken } from "./live.js";

/** @typedef {import("./live.js").AskToken} AskToken */
/** @typedef {import("./live.js").ApiAnswer} ApiAnswer */
/** @typedef {import("./types").Extension} Extension */

/**
 * @param {string} id
 * @returns {HTMLElement}
 */
export function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing #${id}`);
  return el;
}

/**
 * What a dialog's form shows its errors with.
 * @typedef {object} FormParts
 * @property {HTMLElement} formError the general error line on top
 * @property {() => void} clearErrors hides every error of the form
 */

/**
 * Runs one request from a dialog with `buttons` disabled. A declined token or a network
 * failure is written into the form's general error line, and the answer is null.
 * @param {AskToken} askToken
 * @param {FormParts} form
 * @param {HTMLButtonElement[]} buttons
 * @param {string} tokenText what to say when the person declined to give a token
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 * @returns {Promise<ApiAnswer | null>}
 */
export async function dialogCall(askToken, form, buttons, tokenText, method, path, body) {
  for (const b of buttons) b.disabled = true;
  try {
    return await api(askToken, method, path, body);
  } catch (err) {
    form.clearErrors();
    form.formError.textContent =
      err instanceof NeedsToken ? tokenText : "The server could not be reached; nothing was changed.";
    form.formError.hidden = false;
    return null;
  } finally {
    for (const b of buttons) b.disabled = false;
  }
}

/**
 * Shows an error answer in a form: `place(name, message)` puts a field's message next to its
 * input and returns the input, or null for a name the form has no field for; those and a
 * message without fields go to the general line on top. Focuses the first field in error, or
 * `fallback`.
 * @param {FormParts} form
 * @param {unknown} body
 * @param {number} status
 * @param {Record<string, string>} fields the messages by field (from the answer, maybe amended)
 * @param {(name: string, message: string) => HTMLElement | null} place
 * @param {HTMLElement} fallback
 */
export function showFormErrors(form, body, status, fields, place, fallback) {
  form.clearErrors();
  const e = apiError(body);
  /** @type {HTMLElement | null} */
  let first = null;
  /** @type {string[]} */
  const elsewhere = [];
  for (const [name, message] of Object.entries(fields)) {
    const input = place(name, message);
    if (!input) {
      elsewhere.push(`${name} ${message}`);
      continue;
    }
    input.setAttribute("aria-invalid", "true");
    first ??= input;
  }
  const general = elsewhere.length ? elsewhere.join("; ") : first ? "" : (e?.message ?? `The server answered ${status}.`);
  if (general) {
    form.formError.textContent = general;
    form.formError.hidden = false;
  }
  (first ?? fallback).focus();
}

/**
 * What a dialog that saves a record has: its error display, where the saved record goes, the
 * dialog itself and the toast.
 * @typedef {object} SavingDialog
 * @property {(body: unknown, status: number) => void} showErrors
 * @property {(rec: Extension) => void} onSaved
 * @property {HTMLDialogElement} dialog
 * @property {(text: string) => void} toast
 */

/**
 * Finishes a dialog's request: nothing when there was no answer (`dialogCall` said why), an
 * error answer in the form, or the record the server answered handed on, the dialog closed and
 * `say(rec)` toasted. Returns that record, or null.
 * @param {SavingDialog} d
 * @param {ApiAnswer | null} res
 * @param {(rec: Extension) => string} say
 * @returns {Extension | null}
 */
export function finishSave(d, res, say) {
  if (!res) return null;
  if (!res.ok) {
    d.showErrors(res.body, res.status);
    return null;
  }
  const rec = /** @type {Extension} */ (res.body);
  d.onSaved(rec);
  d.dialog.close();
  d.toast(say(rec));
  return rec;
}

/** A request of a view failed; the message is a sentence for the person, naming the request. */
export class LoadError extends Error {
  /**
   * @param {string} message
   * @param {boolean} [needsToken] the person declined to give the token the server wants
   */
  constructor(message, needsToken = false) {
    super(message);
    this.needsToken = needsToken;
  }
}

/**
 * GETs `path` and returns its JSON body, or throws a `LoadError` that says what went wrong:
 * the server's own error message and status, a declined token, or no answer at all.
 * @param {AskToken} askToken
 * @param {string} path
 * @param {string} what the thing being loaded, for the message (e.g. "department figures")
 * @returns {Promise<unknown>}
 */
export async function getJson(askToken, path, what) {
  /** @type {ApiAnswer} */
  let res;
  try {
    res = await api(askToken, "GET", path);
  } catch (err) {
    if (err instanceof NeedsToken) throw new LoadError(`Could not load the ${what}: a viewer or admin token is needed.`, true);
    throw new LoadError(`Could not load the ${what}: the server could not be reached.`);
  }
  if (!res.ok) {
    const e = apiError(res.body);
    throw new LoadError(`Could not load the ${what}: the server answered ${res.status}${e ? ` (${e.message})` : ""}.`);
  }
  if (!res.body || typeof res.body !== "object") {
    throw new LoadError(`Could not load the ${what}: the answer was not JSON.`);
  }
  return res.body;
}
