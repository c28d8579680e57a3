// One run on screen: its status, budget meter, approval and input cards, live pattern view, timeline,
// trace and final answer. It follows the run's events until the run ends or the panel is closed.

import { ApiError, RunFollower, api, runPath } from "./api.js";
import { clip, h, money, renderText, replaceKeepingOpen, tokens } from "./dom.js";
import { patternView } from "./pattern-views.js";
import { FINISHED, RunState } from "./run-state.js";
import { timelineView } from "./timeline.js";
import { traceView } from "./trace-view.js";

export const PATTERN_LABELS = {
  orchestrated: "Orchestrated",
  choreographed: "Choreographed",
  hierarchical: "Hierarchical",
  evaluator_optimizer: "Evaluator–optimizer",
  debate: "Debate",
  blackboard: "Blackboard",
  market: "Market",
  self_consistency: "Self-consistency",
  swarm: "Swarm",
};

const TABS = [
  { id: "live", label: "Live view" },
  { id: "timeline", label: "Timeline" },
  { id: "trace", label: "Trace" },
];

const CONNECTION_NOTES = { connecting: "connecting…", live: "live", closed: "" };

export class RunPanel {
  /**
   * @param run a RunView (or the fields known at start: run_id, pattern, model, backend, policy, budget)
   * @param hooks `onStatus(panel)` when the status changes, `onError(message)` for a failed request
   */
  constructor(run, hooks) {
    this.state = new RunState(run);
    this.hooks = hooks;
    this.tab = "live";
    this.cards = new Map();
    this.lastStatus = null;
    this.traceLoaded = false;
    this.frame = 0;
    this.el = this.build();
    this.render();
  }

  get runId() {
    return this.state.run.run_id;
  }

  get status() {
    return this.state.status;
  }

  /** Follow the run's events: stored ones first, then live. */
  start() {
    this.follower = new RunFollower(this.runId, {
      onEvents: (events) => {
        if (this.state.add(events)) this.schedule();
      },
      onConnection: (state, delay) => {
        this.connection.textContent =
          state === "retrying" ? `connection lost, retrying in ${Math.ceil(delay / 1000)} s…` : CONNECTION_NOTES[state];
        this.connection.dataset.state = state;
      },
      onError: (error) => this.hooks.onError(`Could not follow run ${this.runId}: ${error.message}`),
    });
    this.follower.start();
  }

  stop() {
    this.follower?.stop();
    cancelAnimationFrame(this.frame);
  }

  schedule() {
    if (!this.frame) {
      this.frame = requestAnimationFrame(() => {
        this.frame = 0;
        this.render();
      });
    }
  }

  build() {
    const run = this.state.run;
    this.statusEl = h("span", { class: "status-pill", testid: "run-status", role: "status" });
    this.connection = h("span", { class: "connection muted small", "aria-live": "polite" });
    this.abortButton = h("button", {
      type: "button",
      class: "btn danger small",
      testid: "abort",
      onclick: () => this.abort(),
      text: "Abort",
    });
    this.meter = h("div", { class: "budget-meter", testid: "budget-meter" });
    this.cardsEl = h("div", { class: "run-cards", "aria-live": "polite" });
    this.decidedCount = h("span");
    this.decidedEl = h(
      "details",
      { class: "decided", testid: "decided-cards", hidden: true },
      h("summary", {}, this.decidedCount),
    );
    this.tabButtons = TABS.map((tab) =>
      h("button", {
        type: "button",
        role: "tab",
        class: "tab",
        testid: `tab-${tab.id}`,
        id: `tab-${tab.id}-${this.runId}`,
        "aria-controls": `pane-${tab.id}-${this.runId}`,
        text: tab.label,
        onclick: () => this.selectTab(tab.id),
      }),
    );
    this.panes = {
      live: h("div", {
        class: "pane pattern-view",
        id: `pane-live-${this.runId}`,
        testid: "pattern-view",
        role: "tabpanel",
      }),
      timeline: h("div", {
        class: "pane timeline",
        id: `pane-timeline-${this.runId}`,
        testid: "timeline",
        role: "tabpanel",
      }),
      trace: h("div", { class: "pane trace", id: `pane-trace-${this.runId}`, testid: "trace", role: "tabpanel" }),
    };
    this.answerEl = h("div", { class: "run-answer" });
    const settings = [
      PATTERN_LABELS[run.pattern] ?? run.pattern,
      run.model,
      run.backend,
      run.backend === "engine" ? `approvals: ${run.policy === "manual" ? "ask me" : (run.policy ?? "full")}` : null,
    ].filter(Boolean);
    return h(
      "section",
      { class: "run-panel", dataset: { runId: this.runId }, "aria-label": "Run" },
      h(
        "header",
        { class: "run-head" },
        h("div", { class: "run-meta", text: settings.join(" · ") }),
        this.statusEl,
        this.connection,
        this.abortButton,
      ),
      this.meter,
      this.cardsEl,
      this.decidedEl,
      h("div", { class: "tabs", role: "tablist" }, this.tabButtons),
      Object.values(this.panes),
      this.answerEl,
    );
  }

  selectTab(id) {
    this.tab = id;
    if (id === "trace" && !this.traceLoaded) this.loadTrace();
    this.render();
  }

  async loadTrace() {
    this.traceLoaded = true;
    const refresh = h("button", {
      type: "button",
      class: "btn small",
      text: "Refresh",
      onclick: () => this.loadTrace(),
    });
    this.panes.trace.replaceChildren(h("p", { class: "muted", text: "Loading the trace…" }));
    try {
      const trace = await api(runPath(this.runId, "/trace"));
      this.panes.trace.replaceChildren(refresh, traceView(trace));
    } catch (error) {
      this.panes.trace.replaceChildren(
        refresh,
        h("p", { class: "error-text", text: `The trace is not available: ${error.message}` }),
      );
    }
  }

  async abort() {
    this.abortButton.disabled = true;
    try {
      await api(runPath(this.runId, "/abort"), { method: "POST" });
    } catch (error) {
      if (!(error instanceof ApiError && error.code === "run_finished"))
        this.hooks.onError(`Abort failed: ${error.message}`);
      this.abortButton.disabled = false;
    }
  }

  render() {
    const state = this.state;
    const status = state.status;
    const finished = FINISHED.has(status);
    const waiting = [...state.approvals, ...state.inputs].some((x) => !x.resolution) && !finished;
    this.statusEl.dataset.runStatus = status;
    this.statusEl.className = `status-pill is-${status}`;
    this.statusEl.textContent = waiting ? "waiting for you" : status;
    this.abortButton.hidden = finished;
    if (finished) this.connection.textContent = "";
    this.renderMeter();
    this.syncCards(finished);
    for (const [i, tab] of TABS.entries()) {
      const selected = tab.id === this.tab;
      this.tabButtons[i].setAttribute("aria-selected", String(selected));
      this.panes[tab.id].hidden = !selected;
    }
    replaceKeepingOpen(this.panes.live, patternView(state));
    replaceKeepingOpen(this.panes.timeline, timelineView(state));
    this.renderAnswer();
    if (status !== this.lastStatus) {
      const wasRunning = this.lastStatus === "running";
      this.lastStatus = status;
      if (finished && wasRunning && this.tab === "trace") this.loadTrace();
      this.hooks.onStatus(this);
    }
  }

  renderMeter() {
    const { cost, input, output } = this.state.usage;
    const budget = this.state.run.budget;
    const parts = [
      h("span", {
        class: "meter-cost",
        text: budget ? `${money(cost)} of ${money(budget)} budget` : `${money(cost)} spent`,
      }),
    ];
    if (budget) {
      const fraction = Math.min(cost / budget, 1);
      parts.push(
        h(
          "span",
          {
            class: `bar ${fraction >= 0.9 ? "bad" : fraction >= 0.6 ? "warn" : "good"}`,
            role: "meter",
            "aria-label": "budget used",
            "aria-valuemin": "0",
            "aria-valuemax": String(budget),
            "aria-valuenow": String(cost),
          },
          h("span", { class: "bar-fill", style: { width: `${fraction * 100}%` } }),
        ),
      );
    }
    parts.push(h("span", { class: "muted small", text: `${tokens(input)} tokens in · ${tokens(output)} out` }));
    this.meter.dataset.cost = String(cost);
    this.meter.replaceChildren(...parts);
  }

  /**
   * Approval and input cards are kept (not redrawn), so a half-typed answer survives new events. Waiting
   * cards stay on top; decided ones move into a folded list.
   */
  syncCards(finished) {
    const entries = [
      ...this.state.approvals.map(({ request, resolution }) => ({
        key: `approval:${request.call_id}`,
        make: () => this.approvalCard(request),
        outcome: resolution && describeApproval(resolution),
      })),
      ...this.state.inputs.map(({ request, resolution }) => ({
        key: `input:${request.request_id}`,
        make: () => this.inputCard(request),
        outcome: resolution && describeAnswer(resolution),
      })),
    ];
    for (const { key, make, outcome } of entries) {
      if (!this.cards.has(key)) this.cards.set(key, this.cardsEl.appendChild(make()));
      const card = this.cards.get(key);
      if (settleCard(card, outcome, finished)) this.decidedEl.append(card);
    }
    const decided = this.decidedEl.querySelectorAll(".action-card").length;
    this.decidedEl.hidden = decided === 0;
    this.decidedCount.textContent = `${decided} decided request(s)`;
  }

  approvalCard(request) {
    const approve = h("button", { type: "button", class: "btn primary", testid: "approve", text: "Approve" });
    const deny = h("button", { type: "button", class: "btn danger", testid: "deny", text: "Deny" });
    const args = JSON.stringify(request.arguments ?? {}, null, 2);
    const card = h(
      "article",
      {
        class: "action-card approval-card",
        testid: "approval-card",
        dataset: { callId: request.call_id, state: "waiting" },
      },
      h(
        "header",
        { class: "card-title" },
        h("span", { text: "Tool call approval" }),
        h("span", { class: "badge", text: request.agent }),
      ),
      h("p", {}, h("strong", { text: request.agent }), " wants to call ", h("code", { text: request.function_id })),
      h("details", { open: args.length < 400 }, h("summary", { text: "Arguments" }), h("pre", { text: args })),
      h("div", { class: "card-actions" }, approve, deny),
      h("p", { class: "card-note", "aria-live": "polite" }),
    );
    const path = runPath(this.runId, `/approvals/${encodeURIComponent(request.call_id)}`);
    const decide = (decision) =>
      sendFromCard(
        card,
        [approve, deny],
        decision === "allow" ? "Approving…" : "Denying…",
        "This call is no longer waiting.",
        () => api(path, { method: "POST", body: { decision } }),
      );
    approve.onclick = () => decide("allow");
    deny.onclick = () => decide("deny");
    return card;
  }

  inputCard(request) {
    const answer = h("textarea", {
      rows: 2,
      maxlength: 8000,
      testid: "input-answer",
      "aria-label": "Your answer",
      placeholder: "Your answer",
    });
    const send = h("button", { type: "submit", class: "btn primary", testid: "input-submit", text: "Send answer" });
    const form = h("form", { class: "card-form" }, answer, h("div", { class: "card-actions" }, send));
    const card = h(
      "article",
      {
        class: "action-card input-card",
        testid: "input-card",
        dataset: { requestId: request.request_id, state: "waiting" },
      },
      h(
        "header",
        { class: "card-title" },
        h("span", { text: "Question for you" }),
        h("span", { class: "badge", text: request.agent }),
      ),
      renderText(request.question),
      form,
      h("p", { class: "card-note", "aria-live": "polite" }),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!answer.value.trim()) return answer.focus();
      const body = { request_id: request.request_id, answer: answer.value };
      return sendFromCard(card, [send], "Sending…", "This question is no longer open.", () =>
        api(runPath(this.runId, "/input"), { method: "POST", body }),
      );
    });
    return card;
  }

  renderAnswer() {
    const end = this.state.terminal;
    if (this.answerEl.dataset.seq === String(end?.seq ?? "")) return;
    this.answerEl.dataset.seq = String(end?.seq ?? "");
    if (!end) return this.answerEl.replaceChildren();
    if (end.type === "workflow_complete") {
      const copy = h("button", {
        type: "button",
        class: "btn small",
        text: "Copy",
        onclick: () => navigator.clipboard?.writeText(end.result ?? ""),
      });
      this.answerEl.replaceChildren(
        h(
          "article",
          { class: "final-answer", testid: "final-answer" },
          h("header", { class: "card-title" }, h("span", { text: "Answer" }), copy),
          end.result ? renderText(end.result) : h("p", { class: "muted", text: "The run finished without an answer." }),
        ),
      );
    } else {
      const aborted = end.error === "run aborted";
      this.answerEl.replaceChildren(
        h(
          "article",
          { class: `run-error ${aborted ? "is-aborted" : ""}`, testid: "run-error" },
          h("header", { class: "card-title", text: aborted ? "Stopped" : "The run failed" }),
          h("p", { text: aborted ? "You aborted this run." : end.error }),
        ),
      );
    }
  }
}

function describeApproval(resolution) {
  const verb = resolution.decision === "allow" ? "Approved" : "Denied";
  return resolution.reason ? `${verb}: ${resolution.reason}` : verb;
}

function describeAnswer(resolution) {
  if (resolution.timed_out) return "No answer in time; the agent went on with defaults.";
  return `Answered: ${clip(resolution.answer, 300)}`;
}

/**
 * Send what the person decided. The card is settled by the run's resolution event (which may arrive before
 * this reply), so the reply only matters when it failed and the card still waits.
 */
async function sendFromCard(card, controls, pending, goneText, send) {
  const note = card.querySelector(".card-note");
  controls.forEach((control) => (control.disabled = true));
  note.textContent = pending;
  try {
    await send();
  } catch (error) {
    if (card.dataset.state !== "waiting") return;
    const gone = error.code === "approval_not_found" || error.code === "input_not_found";
    note.textContent = gone ? goneText : `Failed: ${error.message}`;
    if (!gone) controls.forEach((control) => (control.disabled = false));
  }
}

/** Mark a card decided (its controls go), or closed when the run ended while it waited; true once settled. */
function settleCard(card, outcome, finished) {
  const state = outcome ? "resolved" : finished ? "closed" : "waiting";
  if (card.dataset.state === state) return state !== "waiting";
  card.dataset.state = state;
  if (state === "waiting") return false;
  card.querySelector(".card-actions")?.remove();
  card.querySelector("form")?.remove();
  const args = card.querySelector("details");
  if (args) args.open = false;
  card.querySelector(".card-note").textContent = outcome || "The run ended before this was answered.";
  return true;
}
