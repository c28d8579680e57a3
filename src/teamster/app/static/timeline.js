// The per-agent timeline: each agent's calls with their steps, tool calls, tokens and cost.

import { clip, duration, h, money, renderText, tokens } from "./dom.js";

function stepItem(step) {
  const text = step.text?.trim() ?? "";
  return h(
    "li",
    { class: "step", testid: "timeline-step", dataset: { seq: step.seq } },
    h("span", { class: "step-index", text: `step ${step.step_index + 1}` }),
    step.tool_names.length ? step.tool_names.map((name) => h("span", { class: "badge tool", text: name })) : null,
    text.length > 200
      ? h("details", { "data-key": `step-${step.seq}` }, h("summary", { text: clip(text, 200) }), renderText(text))
      : text
        ? h("span", { class: "step-text", text })
        : null,
  );
}

function toolItem(tool) {
  return h(
    "li",
    { class: "step tool-call", testid: "timeline-tool", dataset: { seq: tool.seq } },
    h("span", { class: "step-index", text: "tool" }),
    h("span", { class: "badge tool", text: tool.tool_name }),
    tool.preview ? h("code", { class: "step-text", text: clip(tool.preview, 240) }) : null,
  );
}

function callItem(call, finished) {
  const end = call.end;
  const entries = [...call.steps.map(stepItem), ...call.tools.map(toolItem)].sort(
    (a, b) => a.dataset.seq - b.dataset.seq,
  );
  return h(
    "li",
    {
      class: `call ${end ? "is-done" : finished ? "is-stopped" : "is-running"}`,
      testid: "timeline-call",
      dataset: { seq: call.startSeq },
    },
    h(
      "div",
      { class: "call-head" },
      h("span", { class: "dot", "aria-hidden": "true" }),
      h("strong", { text: call.iteration != null ? `iteration ${call.iteration}` : "call" }),
      end
        ? h("span", {
            class: "call-usage",
            text: `${tokens(end.input_tokens)} in · ${tokens(end.output_tokens)} out · ${money(end.cost_usd)} · ${duration(end.duration_ms)}`,
          })
        : h("span", { class: finished ? "muted" : "pulse", text: finished ? "stopped" : "running…" }),
    ),
    entries.length ? h("ol", { class: "steps" }, entries) : null,
    end?.output_preview
      ? h("p", { class: "call-output" }, h("span", { class: "muted", text: "→ " }), clip(end.output_preview, 240))
      : null,
  );
}

/** The timeline of a run: one section per agent, in the order the agents first ran. */
export function timelineView(state) {
  const calls = state.calls;
  if (!calls.length) return h("p", { class: "muted empty", text: "No agent has started yet." });
  const finished = Boolean(state.terminal);
  const byAgent = new Map();
  for (const call of calls) {
    if (!byAgent.has(call.agent)) byAgent.set(call.agent, []);
    byAgent.get(call.agent).push(call);
  }
  return [...byAgent.entries()].map(([agent, agentCalls]) => {
    const open = agentCalls.some((c) => !c.end);
    const status = !open ? "done" : finished ? "stopped" : "running";
    const cost = agentCalls.reduce((sum, c) => sum + (c.end?.cost_usd || 0), 0);
    return h(
      "section",
      { class: "agent-lane", dataset: { agent } },
      h(
        "header",
        { class: "lane-head" },
        h("h4", { text: agent }),
        h("span", { class: `badge ${status === "done" ? "good" : ""}`, text: status }),
        h("span", { class: "muted small", text: `${agentCalls.length} call(s) · ${money(cost)}` }),
      ),
      h(
        "ol",
        { class: "calls" },
        agentCalls.map((call) => callItem(call, finished)),
      ),
    );
  });
}
