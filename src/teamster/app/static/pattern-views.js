// The live view of each pattern, drawn from the run's events so far (and its summary once it completed).
// Every function takes a RunState and returns a DOM node; nothing here talks to the server.

import { clip, h, money, renderText } from "./dom.js";
import { CHOREOGRAPHED_PEERS } from "./roster.js";

/** A call's latest words: its output when it ended, else its newest non-empty step. */
function latestText(call) {
  if (call.end) return call.end.output_preview;
  const step = [...call.steps].reverse().find((s) => s.text?.trim());
  return step ? step.text : "";
}

/** "working…" while the run goes on; "stopped" once it ended (an aborted or failed run leaves calls open). */
function working(state, label = "working…") {
  return state.terminal ? h("span", { class: "muted", text: "stopped" }) : h("span", { class: "pulse", text: label });
}

function empty(text) {
  return h("p", { class: "muted empty", text });
}

/** A chip per agent: name, state (or that it waits for a person), cost. */
function agentStrip(state) {
  const agents = state.agents;
  const asking = new Set(
    [...state.approvals, ...state.inputs].filter((x) => !x.resolution && !state.terminal).map((x) => x.request.agent),
  );
  if (!agents.length) return empty(state.terminal ? "No agent ran." : "Waiting for the first agent…");
  return h(
    "ul",
    { class: "agent-strip", "aria-label": "Agents" },
    agents.map((agent) =>
      h(
        "li",
        { class: `chip is-${agent.state}`, title: `${agent.calls} call(s), ${money(agent.cost)}` },
        h("span", { class: "dot", "aria-hidden": "true" }),
        agent.name,
        h("span", { class: "chip-note", text: asking.has(agent.name) ? "waiting for you" : agent.state }),
      ),
    ),
  );
}

/** A bordered card; `testid` names it for tests. */
function card(cls, testid, title, ...body) {
  return h(
    "article",
    { class: `card ${cls}`, testid },
    title ? h("header", { class: "card-title" }, title) : null,
    ...body,
  );
}

function bar(fraction, label, cls = "") {
  const pct = Math.max(0, Math.min(1, Number(fraction) || 0)) * 100;
  return h(
    "div",
    {
      class: `bar ${cls}`,
      role: "meter",
      "aria-valuemin": "0",
      "aria-valuemax": "100",
      "aria-valuenow": pct.toFixed(0),
      "aria-label": label,
    },
    h("span", { class: "bar-fill", style: { width: `${pct}%` } }),
  );
}

// ---- evaluator–optimizer --------------------------------------------------------------------------

function evaluatorView(state) {
  const calls = state.calls;
  const summary = state.complete?.summary?.kind === "evaluator" ? state.complete.summary : null;
  const critiques = state.ofType("critique");
  const drafts = calls.filter((c) => c.agent === "generator");
  const rounds = Math.max(drafts.length, critiques.length);
  const rows = [];
  for (let r = 1; r <= rounds; r++) {
    const critique = critiques.find((c) => c.round === r);
    const draftCall = drafts[r - 1];
    const critic = calls.find((c) => c.agent === "critic" && c.iteration === 2 * r);
    const draft =
      summary?.rounds.find((x) => x.round === r)?.draft ?? (draftCall?.end ? draftCall.end.output_preview : "");
    let verdict;
    if (critique) {
      verdict = [
        h("span", { class: "score", text: `${critique.score}/10` }),
        bar(critique.score / 10, `score of round ${r}`, critique.passed ? "good" : "warn"),
        h("span", { class: `badge ${critique.passed ? "good" : "warn"}`, text: critique.passed ? "passed" : "revise" }),
      ];
    } else {
      verdict = working(state, critic ? "critic reviewing…" : "generator drafting…");
    }
    rows.push(
      h(
        "li",
        { class: "ladder-row", testid: "critique-round", dataset: { round: r } },
        h("div", { class: "ladder-head" }, h("strong", { text: `Round ${r}` }), verdict),
        critique?.issues.length
          ? h(
              "ul",
              { class: "issues" },
              critique.issues.map((issue) => h("li", { text: issue })),
            )
          : null,
        draft
          ? h(
              "details",
              { class: "draft", "data-key": `draft-${r}` },
              h("summary", { text: `Draft: ${clip(draft, 90)}` }),
              renderText(draft),
            )
          : null,
      ),
    );
  }
  return h(
    "div",
    { class: "pattern-evaluator" },
    h("h3", { text: "Score ladder" }),
    rows.length ? h("ol", { class: "ladder" }, rows) : empty("The generator is writing the first draft…"),
  );
}

// ---- debate ---------------------------------------------------------------------------------------

const STANCES = [
  { agent: "Affirmative", stance: "pro", label: "Affirmative · pro" },
  { agent: "Opposing", stance: "con", label: "Opposing · con" },
];

function debateView(state) {
  const summary = state.complete?.summary?.kind === "debate" ? state.complete.summary : null;
  const calls = state.calls;
  const columns = STANCES.map(({ agent, stance, label }) => {
    const spoken = summary
      ? summary.turns.filter((t) => t.stance === agent).map((t) => t.argument)
      : state
          .ofType("bus_message")
          .filter((m) => m.from === agent)
          .map((m) => m.content);
    const turns = calls.filter((c) => c.agent === agent);
    const cards = turns.map((call, i) => {
      const round = Math.ceil((call.iteration ?? 2 * i + 1) / 2);
      const argument = spoken[i];
      return card(
        `turn ${stance}`,
        "debate-turn",
        `Round ${round}`,
        argument !== undefined
          ? renderText(argument)
          : h("p", {}, working(state, "arguing…"), " ", clip(latestText(call), 160)),
      );
    });
    return h(
      "section",
      { class: `debate-col ${stance}`, testid: `debate-column-${stance}`, "aria-label": label },
      h("h3", { text: label }),
      cards.length ? cards : empty("Has not spoken yet."),
    );
  });
  const judge = calls.find((c) => c.agent === "Judge");
  let verdict = null;
  if (summary) {
    verdict = card(
      "verdict",
      "verdict",
      "Verdict",
      h("p", {}, h("strong", { text: "Winner: " }), summary.verdict.winner),
      summary.verdict.reasoning ? renderText(summary.verdict.reasoning) : null,
      summary.verdict.synthesis ? [h("h4", { text: "Recommendation" }), renderText(summary.verdict.synthesis)] : null,
    );
  } else if (judge) {
    verdict = card(
      "verdict",
      "verdict",
      "Verdict",
      judge.end ? renderText(judge.end.output_preview) : working(state, "the judge is weighing both sides…"),
    );
  }
  return h("div", { class: "pattern-debate" }, h("div", { class: "debate-columns" }, columns), verdict);
}

// ---- blackboard -----------------------------------------------------------------------------------

function blackboardView(state) {
  const summary = state.complete?.summary?.kind === "blackboard" ? state.complete.summary : null;
  const sections = new Map();
  let round = 0;
  for (const event of state.events) {
    if (event.type === "iteration_start") round = event.iteration;
    if (event.type === "blackboard_update") {
      sections.set(event.section, {
        section: event.section,
        author: event.author,
        text: event.preview,
        round,
        seq: event.seq,
      });
    }
  }
  for (const full of summary?.sections ?? []) {
    const known = sections.get(full.section);
    sections.set(full.section, { ...known, section: full.section, author: full.author, text: full.content });
  }
  const newest = Math.max(0, ...[...sections.values()].map((s) => s.seq ?? 0));
  const writer = state.calls.find((c) => !c.end && !state.terminal);
  return h(
    "div",
    { class: "pattern-blackboard" },
    h(
      "h3",
      {},
      "Blackboard",
      writer
        ? h("span", { class: "aside" }, " · ", working(state, `${writer.agent} is writing (round ${writer.iteration})`))
        : null,
    ),
    sections.size
      ? h(
          "div",
          { class: "board" },
          [...sections.values()].map((s) =>
            card(
              `board-section${s.seq === newest && !summary ? " is-new" : ""}`,
              "board-section",
              [h("span", { text: s.section }), h("span", { class: "badge", text: s.author })],
              renderText(s.text),
              s.round ? h("p", { class: "muted small", text: `last written in round ${s.round}` }) : null,
            ),
          ),
        )
      : empty("The board is empty so far."),
  );
}

// ---- market ---------------------------------------------------------------------------------------

function marketView(state) {
  const summary = state.complete?.summary?.kind === "market" ? state.complete.summary : null;
  const tasks = state.ofType("task_posted");
  const bids = state.ofType("bid");
  const awards = new Map(state.ofType("task_awarded").map((a) => [a.task_id, a]));
  const awardSeq = state.first("task_awarded")?.seq ?? Infinity;
  const executions = state.calls.filter((c) => c.startSeq > awardSeq && c.agent !== "dispatcher");
  const firstExec = Math.min(...executions.map((c) => c.iteration));
  const outputs = new Map((summary?.awards ?? []).map((a) => [a.task_id, a.output]));
  const dispatcherCalls = state.calls.filter((c) => c.agent === "dispatcher");
  const phases = ["Post tasks", "Bid", "Award", "Deliver", "Merge"];
  let phase = 0;
  if (tasks.length) phase = 1;
  if (awards.size) phase = 3;
  if (dispatcherCalls.length > 1) phase = 4;
  return h(
    "div",
    { class: "pattern-market" },
    h(
      "ol",
      { class: "phases", "aria-label": "Market phases" },
      phases.map((name, i) =>
        h("li", { class: i < phase || state.complete ? "done" : i === phase ? "current" : "", text: name }),
      ),
    ),
    tasks.length
      ? h(
          "div",
          { class: "auction" },
          tasks.map((task, k) => {
            const award = awards.get(task.task_id);
            const exec = executions.find((c) => c.iteration - firstExec === k);
            const output = outputs.get(task.task_id) ?? exec?.end?.output_preview;
            const taskBids = bids.filter((b) => b.task_id === task.task_id).sort((a, b) => b.fit - a.fit);
            return card(
              "task",
              "market-task",
              [h("span", { text: task.title }), h("code", { class: "muted", text: task.task_id })],
              taskBids.length
                ? h(
                    "ul",
                    { class: "bids" },
                    taskBids.map((b) =>
                      h(
                        "li",
                        { class: award?.agent === b.agent ? "winner" : "" },
                        h("span", { class: "bid-agent", text: b.agent }),
                        bar(b.fit, `fit of ${b.agent}`),
                        h("span", {
                          class: "bid-nums",
                          text: `fit ${b.fit.toFixed(2)} · est ${money(b.est_cost_usd)}`,
                        }),
                      ),
                    ),
                  )
                : h(
                    "p",
                    { class: "muted" },
                    tasks.length && !awards.size ? working(state, "workers are bidding…") : "No bids.",
                  ),
              award ? h("p", {}, h("span", { class: "badge good", text: `awarded to ${award.agent}` })) : null,
              output ? renderText(output) : exec ? h("p", {}, working(state, `${exec.agent} is delivering…`)) : null,
            );
          }),
        )
      : empty(
          dispatcherCalls.length
            ? "The dispatcher is splitting the request into tasks…"
            : "Waiting for the dispatcher…",
        ),
  );
}

// ---- self-consistency -----------------------------------------------------------------------------

function judgeChoice(summary) {
  if (summary.method === "merge") return `Merged ${summary.samples.length} samples into one answer.`;
  const chosen = summary.samples.find((s) => s.chosen);
  return chosen ? `Selected sample ${chosen.index + 1} of ${summary.samples.length}.` : "Selected one sample.";
}

function selfConsistencyView(state) {
  const summary = state.complete?.summary?.kind === "self-consistency" ? state.complete.summary : null;
  const samples = new Map(state.ofType("sample").map((s) => [s.index, s.preview]));
  const samplers = state.calls.filter((c) => c.agent.startsWith("sample "));
  const judge = state.calls.find((c) => c.agent === "judge");
  return h(
    "div",
    { class: "pattern-samples" },
    h(
      "div",
      { class: "samples" },
      samplers.length
        ? samplers.map((call) => {
            const index = Number(call.agent.slice("sample ".length)) - 1;
            const record = summary?.samples.find((s) => s.index === index);
            const text = record?.text ?? samples.get(index);
            return card(
              `sample${record?.chosen ? " chosen" : ""}`,
              "sample",
              [
                h("span", { text: `Sample ${index + 1}` }),
                record?.chosen ? h("span", { class: "badge good", text: "chosen" }) : null,
              ],
              text !== undefined ? renderText(text) : h("p", {}, working(state, "answering…")),
            );
          })
        : empty("The samplers are starting…"),
    ),
    judge
      ? card(
          "verdict",
          "verdict",
          "Judge",
          summary
            ? [
                h("p", {}, h("strong", { text: judgeChoice(summary) })),
                summary.rationale ? renderText(summary.rationale) : null,
              ]
            : judge.end
              ? renderText(judge.end.output_preview)
              : working(state, "comparing the answers…"),
        )
      : null,
  );
}

// ---- swarm ----------------------------------------------------------------------------------------

function swarmView(state) {
  const traces = state.ofType("trace");
  const rounds = new Map();
  for (const call of state.calls.filter((c) => c.agent.startsWith("agent "))) {
    if (!rounds.has(call.iteration)) rounds.set(call.iteration, []);
    const trace = traces.find((t) => t.round === call.iteration && t.agent === call.agent);
    rounds.get(call.iteration).push({ agent: call.agent, trace, running: !call.end });
  }
  const distiller = state.calls.find((c) => c.agent === "distiller");
  return h(
    "div",
    { class: "pattern-swarm" },
    rounds.size
      ? [...rounds.entries()].map(([round, entries]) =>
          h(
            "section",
            { class: "swarm-round" },
            h("h3", { text: `Round ${round}` }),
            h(
              "ul",
              { class: "traces" },
              entries.map((e) =>
                h(
                  "li",
                  { testid: "swarm-trace" },
                  h("span", { class: "badge", text: e.agent }),
                  " ",
                  e.trace
                    ? e.trace.preview
                      ? e.trace.preview
                      : h("span", { class: "muted", text: "(no trace)" })
                    : working(state),
                ),
              ),
            ),
          ),
        )
      : empty("The swarm is gathering…"),
    distiller
      ? card(
          "verdict",
          "verdict",
          "Distiller",
          distiller.end ? renderText(distiller.end.output_preview) : working(state, "condensing the notes…"),
        )
      : null,
  );
}

// ---- hierarchical ---------------------------------------------------------------------------------

function hierarchicalView(state) {
  const nodes = new Map();
  for (const spawn of state.ofType("agent_spawn")) nodes.set(spawn.id, { ...spawn, children: [] });
  const roots = [];
  for (const node of nodes.values()) {
    const parent = node.parent_id ? nodes.get(node.parent_id) : null;
    (parent ? parent.children : roots).push(node);
  }
  const calls = state.calls;
  const describe = (node) => {
    const mine = calls.filter((c) => c.agent === node.id);
    const last = mine[mine.length - 1];
    let status;
    if (!last) status = "waiting";
    else if (!last.end) status = mine.length > 1 && node.children.length ? "synthesising" : "working";
    else if (node.children.length && !last.end.output_preview.startsWith("[synthesis]")) status = "delegated";
    else status = "done";
    if (state.terminal && status !== "done") status = "stopped";
    return { status, output: last?.end?.output_preview.replace(/^\[synthesis\]\s*/, "") ?? "" };
  };
  const render = (node) => {
    const { status, output } = describe(node);
    return h(
      "li",
      { class: `tree-node status-${status}`, testid: "tree-node", dataset: { node: node.id } },
      h(
        "div",
        { class: "node-head" },
        h("strong", { text: node.role }),
        h("code", { class: "muted", text: node.id }),
        h("span", { class: `badge ${status === "done" ? "good" : ""}`, text: status }),
      ),
      h("p", { class: "node-task", text: clip(node.task, 200) }),
      output
        ? h("details", { "data-key": `node-${node.id}` }, h("summary", { text: clip(output, 100) }), renderText(output))
        : null,
      node.children.length ? h("ul", { class: "tree" }, node.children.map(render)) : null,
    );
  };
  return h(
    "div",
    { class: "pattern-hierarchical" },
    roots.length ? h("ul", { class: "tree root" }, roots.map(render)) : empty("The lead is reading the task…"),
  );
}

// ---- orchestrated and choreographed: the message bus ----------------------------------------------

function messageFlow(state, { skipActivations = false } = {}) {
  const items = state
    .ofType("bus_message", "handoff")
    .filter((m) => !(skipActivations && /^Activating /.test(m.content ?? "")));
  if (!items.length) return empty("No messages yet.");
  return h(
    "ol",
    { class: "flow" },
    items.map((m) =>
      h(
        "li",
        {
          class: `flow-item ${m.type === "handoff" ? "handoff" : m.message_type}`,
          testid: "flow-item",
          dataset: { seq: m.seq },
        },
        h("span", { class: "flow-route" }, h("strong", { text: m.from }), " → ", h("strong", { text: m.to })),
        m.type === "handoff"
          ? h("span", { class: "badge", text: "handoff" })
          : m.content?.length > 160
            ? h(
                "details",
                { "data-key": `msg-${m.seq}` },
                h("summary", { text: clip(m.content, 160) }),
                renderText(m.content),
              )
            : h("span", { class: "flow-text", text: m.content || "(empty)" }),
      ),
    ),
  );
}

function orchestratedView(state) {
  const plan = state.ofType("agent_plan").pop();
  return h(
    "div",
    { class: "pattern-orchestrated" },
    plan
      ? card(
          "plan",
          "agent-plan",
          `Plan by ${plan.agent}`,
          h("p", { text: plan.intent }),
          h(
            "ol",
            {},
            plan.steps.map((step) => h("li", {}, h("strong", { text: step.agent }), `: ${step.task}`)),
          ),
        )
      : null,
    h("h3", { text: "Hand-offs and messages" }),
    messageFlow(state, { skipActivations: true }),
  );
}

function choreographedView(state) {
  const calls = state.calls;
  return h(
    "div",
    { class: "pattern-choreographed" },
    h(
      "div",
      { class: "lanes" },
      CHOREOGRAPHED_PEERS.map((peer) => {
        const mine = calls.filter((c) => c.agent === peer);
        const last = mine[mine.length - 1];
        const completed = mine.some((c) => c.end?.completed);
        let status = completed
          ? "completed"
          : last && !last.end
            ? "working"
            : last
              ? "waiting for peers"
              : "not started";
        if (state.terminal && !completed && last) status = "stopped";
        return card(
          `lane${completed ? " chosen" : ""}`,
          "peer-lane",
          [h("span", { text: peer }), h("span", { class: `badge ${completed ? "good" : ""}`, text: status })],
          last
            ? last.end
              ? h("p", { text: clip(last.end.output_preview, 240) })
              : h("p", {}, working(state), " ", clip(latestText(last), 160))
            : null,
        );
      }),
    ),
    h("h3", { text: "Messages between peers" }),
    messageFlow(state),
  );
}

const VIEWS = {
  evaluator_optimizer: evaluatorView,
  debate: debateView,
  blackboard: blackboardView,
  market: marketView,
  self_consistency: selfConsistencyView,
  swarm: swarmView,
  hierarchical: hierarchicalView,
  orchestrated: orchestratedView,
  choreographed: choreographedView,
};

/** The live view of a run: the agents strip, then the pattern's own view. */
export function patternView(state) {
  const view = VIEWS[state.pattern];
  return [agentStrip(state), view ? view(state) : null];
}
