// The composer: the run settings (pattern, model, backend, approvals, budget) and the message box.
// Choices are remembered in localStorage so a reload keeps them.

import { api } from "./api.js";
import { h, money } from "./dom.js";
import { PATTERN_LABELS } from "./run-panel.js";

const CHOICES_KEY = "teamster.composer";
const MAX_MESSAGE = 8000;

const PATTERN_HINTS = {
  orchestrated: "A coordinator plans and hands the work to a researcher, a writer and an editor.",
  choreographed: "Backend, frontend and design peers message each other until each part is done.",
  hierarchical: "A lead splits the task among sub-agents, which may split it again; parents merge the results.",
  evaluator_optimizer: "A generator drafts and a critic scores; the draft is revised until it passes.",
  debate: "An affirmative and an opposing side argue for several rounds, then a judge decides.",
  blackboard: "An analyst, a planner and a critic each write sections of a shared board.",
  market: "A dispatcher posts tasks, workers bid, winners deliver, the dispatcher merges.",
  self_consistency: "Several samplers answer independently; a judge picks or merges the best answer.",
  swarm: "Identical agents add notes to a shared scratchpad; a distiller condenses them.",
};

/** The option label of a model (the server's label says what it is) and, when it cannot run, why. */
function modelLabel(model) {
  const label = model.label || model.id;
  if (model.available) return label;
  return model.local ? `${label} (not installed)` : `${label} — needs key`;
}

const modelValue = (model) => JSON.stringify([model.provider, model.id]);

function loadChoices() {
  try {
    return JSON.parse(localStorage.getItem(CHOICES_KEY)) ?? {};
  } catch {
    return {};
  }
}

export class Composer {
  /** `onSend(request)` gets the `POST /runs` body without `session_id`; it resolves to whether the run started. */
  constructor(onSend) {
    this.onSend = onSend;
    this.models = [];
    this.busy = false;
    this.el = this.build();
  }

  build() {
    const choices = loadChoices();
    this.pattern = h(
      "select",
      { id: "pattern", testid: "pattern-select", onchange: () => this.changed() },
      Object.entries(PATTERN_LABELS).map(([value, label]) => h("option", { value, text: label })),
    );
    this.pattern.value = PATTERN_LABELS[choices.pattern] ? choices.pattern : "debate";
    this.model = h("select", { id: "model", testid: "model-select", onchange: () => this.changed() });
    this.backend = h(
      "select",
      { id: "backend", testid: "backend-select", onchange: () => this.changed() },
      h("option", { value: "inproc", text: "inproc (fast)" }),
      h("option", { value: "engine", text: "engine (durable)" }),
    );
    this.backend.value = choices.backend === "engine" ? "engine" : "inproc";
    this.policy = h(
      "select",
      { id: "policy", testid: "policy-select", onchange: () => this.changed() },
      h("option", { value: "full", text: "full: don't ask" }),
      h("option", { value: "manual", text: "manual: ask me" }),
    );
    this.policy.value = choices.policy === "manual" ? "manual" : "full";
    this.budget = h("input", {
      id: "budget",
      testid: "budget-input",
      type: "number",
      min: "0",
      step: "0.01",
      inputmode: "decimal",
      placeholder: "no limit",
      onchange: () => this.changed(),
    });
    this.budget.value = choices.budget ?? "";
    this.savedModel = choices.model;
    this.hint = h("p", { class: "composer-hint muted small", testid: "composer-hint", "aria-live": "polite" });
    this.message = h("textarea", {
      testid: "message-input",
      rows: 2,
      maxlength: MAX_MESSAGE,
      placeholder: "Ask the team something…",
      "aria-label": "Message",
      onkeydown: (event) => {
        if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
          event.preventDefault();
          this.form.requestSubmit();
        }
      },
      oninput: () => this.changed(),
    });
    this.sendButton = h("button", { type: "submit", class: "btn primary", testid: "send", text: "Send" });
    const field = (label, control, cls = "") =>
      h("label", { class: `field ${cls}` }, h("span", { class: "field-label", text: label }), control);
    this.summary = h("summary", { class: "options-summary", testid: "run-options", title: "Run settings" });
    this.options = h(
      "details",
      { class: "run-options", open: !matchMedia("(max-width: 800px)").matches },
      this.summary,
      h(
        "div",
        { class: "option-grid" },
        field("Pattern", this.pattern),
        field("Model", this.model, "wide"),
        field("Backend", this.backend),
        field("Approvals", this.policy, "engine-only"),
        field("Budget (USD)", this.budget, "engine-only"),
      ),
      this.hint,
    );
    this.form = h(
      "form",
      { class: "composer", onsubmit: (event) => this.submit(event) },
      this.options,
      h("div", { class: "message-row" }, this.message, this.sendButton),
    );
    this.changed();
    return this.form;
  }

  /** Fill the model list from `GET /models`, keeping the current choice when it is still available. */
  async loadModels() {
    const { models } = await api("/models");
    this.models = models;
    const current = this.model.value || this.savedModel;
    const order = (m) => (m.provider === "scripted" ? 1 : m.local ? 0 : 2);
    const groups = new Map();
    for (const model of [...models].sort((a, b) => order(a) - order(b))) {
      const group = model.provider === "scripted" || model.local ? "On this machine" : model.provider;
      if (!groups.has(group)) groups.set(group, []);
      groups.get(group).push(model);
    }
    this.model.replaceChildren(
      ...[...groups.entries()].map(([label, list]) =>
        h(
          "optgroup",
          { label },
          list.map((m) => h("option", { value: modelValue(m), disabled: !m.available, text: modelLabel(m) })),
        ),
      ),
    );
    const available = models.filter((m) => m.available);
    const keep = available.find((m) => modelValue(m) === current);
    const fallback = available.find((m) => m.provider === "scripted") ?? available[0];
    if (keep ?? fallback) this.model.value = modelValue(keep ?? fallback);
    this.changed();
  }

  /** Which backends the server offers (`GET /health` features). */
  setBackends(backends) {
    for (const option of this.backend.options) option.disabled = !backends.includes(option.value);
    if (this.backend.selectedOptions[0]?.disabled) this.backend.value = backends[0];
    this.changed();
  }

  selectedModel() {
    const value = this.model.value;
    return this.models.find((m) => modelValue(m) === value) ?? null;
  }

  changed() {
    const engine = this.backend.value === "engine";
    this.policy.disabled = !engine;
    this.budget.disabled = !engine;
    const model = this.selectedModel();
    localStorage.setItem(
      CHOICES_KEY,
      JSON.stringify({
        pattern: this.pattern.value,
        model: this.model.value,
        backend: this.backend.value,
        policy: this.policy.value,
        budget: this.budget.value,
      }),
    );
    this.summary.textContent = [
      PATTERN_LABELS[this.pattern.value],
      model ? model.label || model.id : "no model",
      this.backend.value,
      engine ? (this.policy.value === "manual" ? "ask before tools" : "tools run freely") : null,
    ]
      .filter(Boolean)
      .join(" · ");
    const notes = [PATTERN_HINTS[this.pattern.value]];
    if (model?.provider === "scripted")
      notes.push("The scripted model answers with placeholder text; add an API key in Settings for real answers.");
    else if (model?.local) notes.push("The local model is tiny and slow: expect rough answers.");
    else if (model)
      notes.push(`${money(model.input_per_1m)} / ${money(model.output_per_1m)} per million tokens in / out.`);
    if (!engine) notes.push("Approvals and budgets apply on the engine backend only.");
    else if (this.policy.value === "manual") notes.push("You approve each tool call the agents make.");
    const length = this.message.value.length;
    if (length > MAX_MESSAGE * 0.9) notes.push(`${length} / ${MAX_MESSAGE} characters.`);
    this.hint.textContent = notes.join(" ");
    this.sendButton.disabled = this.busy || !model;
  }

  /** While a run of this conversation is going, sending waits (the next message builds on its answer). */
  setBusy(busy) {
    this.busy = busy;
    this.sendButton.title = busy ? "Wait for the run to finish, or abort it." : "";
    this.changed();
  }

  focus() {
    this.message.focus();
  }

  async submit(event) {
    event.preventDefault();
    const message = this.message.value.trim();
    const model = this.selectedModel();
    if (!message || !model || this.busy) return this.message.focus();
    const request = {
      pattern: this.pattern.value,
      message,
      backend: this.backend.value,
      provider: model.provider,
      model: model.id,
    };
    if (request.backend === "engine") {
      request.policy = this.policy.value;
      const budget = Number.parseFloat(this.budget.value);
      if (budget > 0) request.budget = budget;
    }
    this.sendButton.disabled = true;
    try {
      if (await this.onSend(request)) this.message.value = "";
    } finally {
      this.changed();
    }
  }
}
