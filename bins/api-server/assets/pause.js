// Pausing and resuming an agent in its queues from the page (only when the server runs with
// `--ami-actions`). The PBX is the truth: the server answers once the PBX confirmed, with the
// record as it now is, and its error messages are shown next to the field they name.

import { apiError } from "./live.js";
import { byId, dialogCall, finishSave, showFormErrors } from "./request.js";

/** @typedef {import("./types").Extension} Extension */
/** @typedef {import("./live.js").AskToken} AskToken */

/** The reason select's value for "type another reason": configured reasons are trimmed, so
 * none can have a leading space. */
const OTHER = " other";

export class PauseDialog {
  /**
   * @param {AskToken} askToken
   * @param {(rec: Extension) => void} onSaved the record the server answered with
   * @param {(text: string) => void} toast
   */
  constructor(askToken, onSaved, toast) {
    this.askToken = askToken;
    this.onSaved = onSaved;
    this.toast = toast;
    this.dialog = /** @type {HTMLDialogElement} */ (byId("pause"));
    this.form = /** @type {HTMLFormElement} */ (byId("pause-form"));
    this.title = byId("pause-title");
    this.stateText = byId("pause-state");
    this.formError = byId("pause-error");
    this.choice = /** @type {HTMLSelectElement} */ (byId("p-reason-choice"));
    this.otherField = byId("p-reason-other");
    this.reason = /** @type {HTMLInputElement} */ (byId("p-reason"));
    this.reasonError = byId("p-reason-error");
    this.queue = /** @type {HTMLSelectElement} */ (byId("p-queue"));
    this.queueError = byId("p-queue-error");
    this.save = /** @type {HTMLButtonElement} */ (byId("pause-save"));
    this.resume = /** @type {HTMLButtonElement} */ (byId("pause-resume"));
    /** @type {string[]} */
    this.reasons = [];
    /** @type {Extension | null} */
    this.editing = null;
    this.busy = false;
    this.setReasons([]);

    this.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      void this.pause();
    });
    this.choice.addEventListener("change", () => this.showOther());
    this.resume.addEventListener("click", () => void this.unpause());
    byId("pause-cancel").addEventListener("click", () => this.dialog.close());
  }

  /**
   * The reasons the server offers (`--pause-reasons`); free text is always possible too.
   * @param {string[]} reasons
   */
  setReasons(reasons) {
    this.reasons = reasons;
    const options = reasons.map((r) => new Option(r, r));
    options.push(new Option("Other…", OTHER));
    this.choice.replaceChildren(...options);
    this.showOther();
  }

  showOther() {
    this.otherField.hidden = this.choice.value !== OTHER;
  }

  /**
   * Opens the dialog for a record: the queue select lists its queues, Resume shows when it is
   * paused in any.
   * @param {Extension} rec
   */
  open(rec) {
    this.editing = rec;
    const queues = rec.queues ?? [];
    this.title.textContent = `Pause ${rec.agent_name} (${rec.extension})`;
    const paused = queues.filter((q) => q.paused);
    this.stateText.textContent = paused.length
      ? `Paused in ${paused.map((q) => (q.paused_reason ? `${q.queue} (${q.paused_reason})` : q.queue)).join(", ")}.`
      : `In ${queues.map((q) => q.queue).join(", ") || "no queue"}; not paused.`;
    const options = [new Option(queues.length > 1 ? "All queues" : "Its queue", "")];
    for (const q of queues) options.push(new Option(q.paused ? `${q.queue} (paused)` : q.queue, q.queue));
    this.queue.replaceChildren(...options);
    this.queue.value = "";
    this.choice.selectedIndex = 0;
    this.reason.value = "";
    this.showOther();
    this.resume.hidden = paused.length === 0;
    this.clearErrors();
    this.dialog.showModal();
    (paused.length ? this.resume : this.choice).focus();
  }

  clearErrors() {
    this.formError.hidden = true;
    this.formError.textContent = "";
    for (const [input, p] of /** @type {const} */ ([
      [this.reason, this.reasonError],
      [this.choice, this.reasonError],
      [this.queue, this.queueError],
    ])) {
      input.removeAttribute("aria-invalid");
      p.hidden = true;
      p.textContent = "";
    }
  }

  /**
   * Shows an error answer: `reason` and `queue` next to their fields, the rest on top.
   * @param {unknown} body
   * @param {number} status
   */
  showErrors(body, status) {
    const fields = { ...(apiError(body)?.fields ?? {}) };
    showFormErrors(this, body, status, fields, (name, message) => {
      if (name === "reason") {
        this.reasonError.textContent = `Reason ${message}`;
        this.reasonError.hidden = false;
        return this.choice.value === OTHER ? this.reason : this.choice;
      }
      if (name === "queue") {
        this.queueError.textContent = `Queue ${message}`;
        this.queueError.hidden = false;
        return this.queue;
      }
      return null;
    }, this.save);
  }

  /**
   * @param {string} method
   * @param {string} path
   * @param {unknown} [body]
   */
  async call(method, path, body) {
    this.busy = true;
    try {
      return await dialogCall(this.askToken, this, [this.save, this.resume], "Pausing needs an admin token.", method, path, body);
    } finally {
      this.busy = false;
    }
  }

  /**
   * @param {Awaited<ReturnType<PauseDialog["call"]>>} res
   * @param {string} what for the toast
   */
  done(res, what) {
    finishSave(this, res, (rec) => `${rec.agent_name} (${rec.extension}) ${what}.`);
  }

  async pause() {
    const rec = this.editing;
    if (!rec || this.busy) return;
    // The server is the one judge of the reason; the page sends what was chosen or typed.
    const reason = this.choice.value === OTHER ? this.reason.value : this.choice.value;
    /** @type {{reason: string, queue?: string}} */
    const body = { reason };
    if (this.queue.value) body.queue = this.queue.value;
    const res = await this.call("POST", `/api/extensions/${encodeURIComponent(rec._id)}/pause`, body);
    this.done(res, body.queue ? `paused in ${body.queue}` : "paused");
  }

  async unpause() {
    const rec = this.editing;
    if (!rec || this.busy) return;
    const q = this.queue.value;
    const path = `/api/extensions/${encodeURIComponent(rec._id)}/pause${q ? `?queue=${encodeURIComponent(q)}` : ""}`;
    const res = await this.call("DELETE", path);
    this.done(res, q ? `resumed in ${q}` : "resumed");
  }
}
