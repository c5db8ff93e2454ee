// Adding, editing, deactivating and deleting extensions from the page. The server is the one
// judge of what is valid: its `error.fields` messages are shown next to the fields they name.

import { apiError } from "./live.js";
import { byId, dialogCall, finishSave, showFormErrors } from "./request.js";

/** @typedef {import("./types").Extension} Extension */
/** @typedef {import("./live.js").AskToken} AskToken */

const FIELDS = /** @type {const} */ (["extension", "agent_name", "department", "is_active"]);

export class Manage {
  /**
   * @param {AskToken} askToken
   * @param {(rec: Extension) => void} onSaved a record the server just stored
   * @param {(id: string) => void} onDeleted
   * @param {(text: string) => void} toast
   */
  constructor(askToken, onSaved, onDeleted, toast) {
    this.askToken = askToken;
    this.onSaved = onSaved;
    this.onDeleted = onDeleted;
    this.toast = toast;
    this.dialog = /** @type {HTMLDialogElement} */ (byId("edit"));
    this.form = /** @type {HTMLFormElement} */ (byId("edit-form"));
    this.title = byId("edit-title");
    this.formError = byId("edit-error");
    this.inputs = {
      extension: /** @type {HTMLInputElement} */ (byId("f-extension")),
      agent_name: /** @type {HTMLInputElement} */ (byId("f-agent_name")),
      department: /** @type {HTMLInputElement} */ (byId("f-department")),
      is_active: /** @type {HTMLInputElement} */ (byId("f-is_active")),
    };
    this.save = /** @type {HTMLButtonElement} */ (byId("edit-save"));
    this.deactivate = /** @type {HTMLButtonElement} */ (byId("edit-deactivate"));
    this.del = /** @type {HTMLButtonElement} */ (byId("edit-delete"));
    /** The record being edited, or null when adding. @type {Extension | null} */
    this.editing = null;
    this.busy = false;

    this.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      void this.submit();
    });
    byId("edit-cancel").addEventListener("click", () => this.dialog.close());
    this.deactivate.addEventListener("click", () => void this.toggleActive());
    this.del.addEventListener("click", () => void this.remove());
  }

  /** Opens the dialog to add an extension. */
  openNew() {
    this.editing = null;
    this.title.textContent = "Add extension";
    this.form.reset();
    this.inputs.extension.readOnly = false;
    this.inputs.is_active.checked = true;
    this.deactivate.hidden = true;
    this.del.hidden = true;
    this.clearErrors();
    this.dialog.showModal();
    this.inputs.extension.focus();
  }

  /**
   * Opens the dialog to edit a record.
   * @param {Extension} rec
   */
  openEdit(rec) {
    this.editing = rec;
    this.title.textContent = `Edit extension ${rec.extension}`;
    this.inputs.extension.value = rec.extension;
    this.inputs.extension.readOnly = true;
    this.inputs.agent_name.value = rec.agent_name;
    this.inputs.department.value = rec.department;
    this.inputs.is_active.checked = rec.is_active;
    this.deactivate.hidden = false;
    this.deactivate.textContent = rec.is_active ? "Deactivate" : "Reactivate";
    this.del.hidden = false;
    this.clearErrors();
    this.dialog.showModal();
    this.inputs.agent_name.focus();
  }

  clearErrors() {
    this.formError.hidden = true;
    this.formError.textContent = "";
    for (const name of FIELDS) {
      const input = this.inputs[name];
      input.removeAttribute("aria-invalid");
      const p = byId(`f-${name}-error`);
      p.hidden = true;
      p.textContent = "";
    }
  }

  /**
   * Shows an error answer: each named field gets its message, the rest goes to the top.
   * @param {unknown} body
   * @param {number} status
   */
  showErrors(body, status) {
    const e = apiError(body);
    const fields = { ...(e?.fields ?? {}) };
    if (status === 409 && Object.keys(fields).length === 0) {
      fields.extension = e?.message ?? "is already taken";
    }
    showFormErrors(this, body, status, fields, (name, message) => {
      const input = /** @type {Record<string, HTMLInputElement | undefined>} */ (this.inputs)[name];
      if (!input) return null;
      const p = byId(`f-${name}-error`);
      p.textContent = message;
      p.hidden = false;
      return input;
    }, this.inputs.extension);
  }

  /**
   * Runs one request with the buttons disabled, and reports a network failure at the top.
   * @param {string} method
   * @param {string} path
   * @param {unknown} [body]
   */
  async call(method, path, body) {
    this.busy = true;
    try {
      return await dialogCall(this.askToken, this, [this.save, this.deactivate, this.del], "Changes need an admin token.", method, path, body);
    } finally {
      this.busy = false;
    }
  }

  async submit() {
    if (this.busy) return;
    const v = this.inputs;
    let res;
    if (this.editing) {
      /** @type {Record<string, unknown>} */
      const patch = {};
      if (v.agent_name.value !== this.editing.agent_name) patch.agent_name = v.agent_name.value;
      if (v.department.value !== this.editing.department) patch.department = v.department.value;
      if (v.is_active.checked !== this.editing.is_active) patch.is_active = v.is_active.checked;
      if (Object.keys(patch).length === 0) {
        this.dialog.close();
        return;
      }
      res = await this.call("PUT", `/api/extensions/${encodeURIComponent(this.editing._id)}`, patch);
    } else {
      res = await this.call("POST", "/api/extensions", {
        extension: v.extension.value,
        agent_name: v.agent_name.value,
        department: v.department.value,
        is_active: v.is_active.checked,
      });
    }
    const editing = this.editing !== null;
    finishSave(this, res, (rec) =>
      editing ? `Saved extension ${rec.extension}.` : `Added extension ${rec.extension} (${rec.agent_name}).`,
    );
  }

  async toggleActive() {
    if (!this.editing || this.busy) return;
    const active = !this.editing.is_active;
    const res = await this.call("PUT", `/api/extensions/${encodeURIComponent(this.editing._id)}`, { is_active: active });
    finishSave(this, res, (rec) => `Extension ${rec.extension} ${active ? "reactivated" : "deactivated"}.`);
  }

  async remove() {
    const rec = this.editing;
    if (!rec || this.busy) return;
    if (!confirm(`Delete extension ${rec.extension} (${rec.agent_name})? Deactivating keeps its record.`)) return;
    const res = await this.call("DELETE", `/api/extensions/${encodeURIComponent(rec._id)}`);
    if (!res) return;
    if (!res.ok && res.status !== 404) {
      this.showErrors(res.body, res.status);
      return;
    }
    this.onDeleted(rec._id);
    this.dialog.close();
    this.toast(`Deleted extension ${rec.extension}.`);
  }
}
