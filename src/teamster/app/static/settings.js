// The settings dialog: this page's API token (kept in localStorage) and the providers' API keys (stored on the
// server; the page only ever learns whether one is configured).

import { api, getToken, setToken } from "./api.js";
import { h } from "./dom.js";

const SOURCES = { env: "set by an environment variable", file: "saved on the server" };

export class Settings {
  /**
   * @param hooks `onToken()` after the token changed (the page reloads everything), `onKeys()` after a key
   *   changed (the model list is reloaded), `modelProviders()` the providers the catalog has models of
   */
  constructor(hooks) {
    this.hooks = hooks;
    this.message = h("p", { class: "settings-message", testid: "settings-message", role: "alert", hidden: true });
    this.token = h("input", {
      type: "password",
      id: "token",
      testid: "token-input",
      autocomplete: "off",
      placeholder: "TEAMSTER_TOKEN of the server",
    });
    this.tokenState = h("p", { class: "muted small" });
    this.keys = h("div", { class: "keys", testid: "credentials" });
    this.el = h(
      "dialog",
      { class: "settings", testid: "settings", "aria-labelledby": "settings-title" },
      h(
        "header",
        { class: "panel-head" },
        h("h2", { id: "settings-title", text: "Settings" }),
        h("button", {
          type: "button",
          class: "btn small",
          testid: "close-settings",
          text: "Close",
          onclick: () => this.el.close(),
        }),
      ),
      this.message,
      h(
        "form",
        { class: "settings-section", onsubmit: (event) => this.saveToken(event) },
        h("h3", { text: "API token" }),
        h("p", {
          class: "muted small",
          text: "Needed when the server was started with TEAMSTER_TOKEN. It is kept in this browser only.",
        }),
        h("label", { class: "field", for: "token" }, h("span", { class: "field-label", text: "Token" }), this.token),
        this.tokenState,
        h(
          "div",
          { class: "card-actions" },
          h("button", { type: "submit", class: "btn primary", testid: "token-save", text: "Save token" }),
          h("button", {
            type: "button",
            class: "btn",
            testid: "token-clear",
            text: "Clear",
            onclick: () => this.clearToken(),
          }),
        ),
      ),
      h(
        "section",
        { class: "settings-section" },
        h("h3", { text: "Provider API keys" }),
        h("p", {
          class: "muted small",
          text: "Keys are stored by the server and never shown again. Models of a provider with a key become available.",
        }),
        this.keys,
      ),
    );
  }

  /** Open the dialog, with a message at the top (e.g. why it opened). */
  async open(message = "") {
    this.message.textContent = message;
    this.message.hidden = !message;
    this.token.value = "";
    this.tokenState.textContent = getToken() ? "A token is saved in this browser." : "No token saved.";
    if (!this.el.open) this.el.showModal();
    await this.loadKeys();
  }

  /** The server answered 401: ask for the token (once; a dialog already open only shows why). */
  requireToken() {
    const why = getToken()
      ? "The server refused the saved API token. Paste the TEAMSTER_TOKEN it was started with, then save."
      : "This server needs an API token. Paste the TEAMSTER_TOKEN it was started with, then save.";
    if (this.el.open) {
      this.message.textContent = why;
      this.message.hidden = false;
    } else {
      this.open(why);
    }
  }

  async saveToken(event) {
    event.preventDefault();
    setToken(this.token.value.trim());
    this.token.value = "";
    this.message.hidden = true;
    this.tokenState.textContent = getToken() ? "Token saved." : "No token saved.";
    await this.hooks.onToken();
    await this.loadKeys();
  }

  clearToken() {
    setToken("");
    this.tokenState.textContent = "No token saved.";
    this.hooks.onToken();
  }

  /** List the providers: those with models in the catalog (or a key) first, the others folded. */
  async loadKeys(note = null) {
    let providers;
    try {
      ({ providers } = await api("/credentials"));
    } catch (error) {
      this.keys.replaceChildren(h("p", { class: "error-text", text: `Could not load the keys: ${error.message}` }));
      return;
    }
    const main = this.hooks.modelProviders();
    const first = providers.filter((p) => p.configured || main.has(p.provider) || !main.size);
    const rest = providers.filter((p) => !first.includes(p));
    const row = (p) => this.keyRow(p, note?.provider === p.provider ? note.text : "");
    this.keys.replaceChildren(
      ...first.map(row),
      rest.length
        ? h(
            "details",
            { class: "more-keys" },
            h("summary", { text: `Other providers (${rest.length})` }),
            rest.map(row),
          )
        : null,
    );
  }

  keyRow({ provider, configured, source }, noteText) {
    const input = h("input", {
      type: "password",
      autocomplete: "off",
      testid: `key-input-${provider}`,
      "aria-label": `${provider} API key`,
      placeholder: configured ? "replace the key" : "paste a key",
    });
    const note = h("span", {
      class: "muted small",
      testid: `key-note-${provider}`,
      "aria-live": "polite",
      text: noteText,
    });
    const run = async (button, request, done) => {
      button.disabled = true;
      try {
        await request();
        input.value = "";
        await Promise.all([this.hooks.onKeys(), this.loadKeys({ provider, text: done })]);
      } catch (error) {
        note.textContent = `Failed: ${error.message}`;
        button.disabled = false;
      }
    };
    const keyPath = `/credentials/${encodeURIComponent(provider)}`;
    const save = h("button", { type: "submit", class: "btn small", testid: `key-save-${provider}`, text: "Save" });
    const forget = h("button", {
      type: "button",
      class: "btn small",
      testid: `key-forget-${provider}`,
      text: "Forget",
      hidden: source !== "file",
      onclick: () => run(forget, () => api(keyPath, { method: "DELETE" }), "Key forgotten."),
    });
    return h(
      "form",
      {
        class: "key-row",
        dataset: { provider },
        onsubmit: (event) => {
          event.preventDefault();
          const token = input.value.trim();
          if (!token) return input.focus();
          run(save, () => api(keyPath, { method: "PUT", body: { token } }), "Key saved.");
        },
      },
      h(
        "div",
        { class: "key-head" },
        h("strong", { text: provider }),
        h("span", {
          class: `badge ${configured ? "good" : ""}`,
          testid: `key-state-${provider}`,
          text: configured ? `configured · ${SOURCES[source] ?? "yes"}` : "not set",
        }),
        note,
      ),
      h("div", { class: "key-controls" }, input, save, forget),
    );
  }
}
