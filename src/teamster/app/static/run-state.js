// One run's events, deduplicated by seq, and what the views derive from them.

/** The statuses `data-run-status` can take, besides `running`. */
export const FINISHED = new Set(["completed", "failed", "aborted", "interrupted"]);

export class RunState {
  /** `run` is the RunView of `GET /runs/{id}` (or the fields known when the run was started). */
  constructor(run) {
    this.run = run;
    this.bySeq = new Map();
    this.events = [];
  }

  /** Add events; an event whose seq is already known is ignored. Returns whether anything was new. */
  add(events) {
    let added = false;
    for (const event of events) {
      if (this.bySeq.has(event.seq)) continue;
      this.bySeq.set(event.seq, event);
      added = true;
    }
    if (added) this.events = [...this.bySeq.values()].sort((a, b) => a.seq - b.seq);
    return added;
  }

  get pattern() {
    return this.run.pattern ?? this.first("workflow_start")?.mode ?? "";
  }

  first(type) {
    return this.events.find((event) => event.type === type);
  }

  ofType(...types) {
    return this.events.filter((event) => types.includes(event.type));
  }

  get terminal() {
    return this.events.find((event) => event.type === "workflow_complete" || event.type === "workflow_error");
  }

  get complete() {
    return this.first("workflow_complete");
  }

  /** running | completed | failed | aborted | interrupted: the events decide once a terminal one arrived. */
  get status() {
    const end = this.terminal;
    if (end?.type === "workflow_complete") return "completed";
    if (end?.type === "workflow_error") return end.error === "run aborted" ? "aborted" : "failed";
    return this.run.status ?? "running";
  }

  /** Cost and tokens so far: the sum over `iteration_end`, replaced by the totals once the run completed. */
  get usage() {
    const done = this.complete;
    if (done) {
      return { cost: done.total_cost_usd, input: done.total_input_tokens, output: done.total_output_tokens };
    }
    const usage = { cost: 0, input: 0, output: 0 };
    for (const end of this.ofType("iteration_end")) {
      usage.cost += end.cost_usd || 0;
      usage.input += end.input_tokens || 0;
      usage.output += end.output_tokens || 0;
    }
    return usage;
  }

  /**
   * The agent calls, in start order: {agent, iteration, startSeq, steps, tools, end}. A call opens at
   * `iteration_start`, or at the first step of an agent with no open call (a hierarchical retry or synthesis
   * has no `iteration_start`), and closes at its `iteration_end`.
   */
  get calls() {
    const calls = [];
    const open = new Map();
    const callOf = (event) => {
      let call = open.get(event.agent);
      if (!call) {
        call = { agent: event.agent, iteration: event.iteration, startSeq: event.seq, steps: [], tools: [], end: null };
        open.set(event.agent, call);
        calls.push(call);
      }
      return call;
    };
    for (const event of this.events) {
      if (event.type === "iteration_start") {
        open.delete(event.agent);
        callOf(event);
      } else if (event.type === "agent_step") {
        callOf(event).steps.push(event);
      } else if (event.type === "tool_call") {
        callOf(event).tools.push(event);
      } else if (event.type === "iteration_end") {
        callOf(event).end = event;
        open.delete(event.agent);
      }
    }
    return calls;
  }

  /** Each agent with its calls, cost and state: running (a call is open), done, or stopped (the run ended mid-call). */
  get agents() {
    const agents = new Map();
    for (const call of this.calls) {
      const entry = agents.get(call.agent) ?? { name: call.agent, calls: 0, cost: 0, state: "done" };
      entry.calls += 1;
      entry.cost += call.end?.cost_usd || 0;
      entry.state = call.end ? "done" : this.terminal ? "stopped" : "running";
      agents.set(call.agent, entry);
    }
    return [...agents.values()];
  }

  /** Approval requests with their resolution (null while waiting). */
  get approvals() {
    const resolved = new Map(this.ofType("approval_resolved").map((event) => [event.call_id, event]));
    const seen = new Map();
    for (const request of this.ofType("approval_request")) seen.set(request.call_id, request);
    for (const pending of this.run.pending_approvals ?? [])
      if (!seen.has(pending.call_id)) seen.set(pending.call_id, pending);
    return [...seen.values()].map((request) => ({ request, resolution: resolved.get(request.call_id) ?? null }));
  }

  /** Human-input requests with their answer (null while open). */
  get inputs() {
    const resolved = new Map(this.ofType("input_resolved").map((event) => [event.request_id, event]));
    const seen = new Map();
    for (const request of this.ofType("input_request")) seen.set(request.request_id, request);
    for (const pending of this.run.pending_inputs ?? [])
      if (!seen.has(pending.request_id)) seen.set(pending.request_id, pending);
    return [...seen.values()].map((request) => ({ request, resolution: resolved.get(request.request_id) ?? null }));
  }
}
