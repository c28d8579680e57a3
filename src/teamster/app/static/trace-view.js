// The trace waterfall: one row per span, indented by depth, with a bar from its start to its end.

import { duration, h } from "./dom.js";

/** The spans of `GET /runs/{id}/trace` depth-first, children in start order: [{span, depth}]. */
function flatten(roots) {
  const rows = [];
  const byStart = (a, b) => a.start_time_unix_nano - b.start_time_unix_nano;
  const stack = [...roots]
    .sort(byStart)
    .reverse()
    .map((span) => ({ span, depth: 0 }));
  while (stack.length) {
    const row = stack.pop();
    rows.push(row);
    const children = [...(row.span.children ?? [])].sort(byStart).reverse();
    for (const child of children) stack.push({ span: child, depth: row.depth + 1 });
  }
  return rows;
}

export function traceView(trace) {
  const rows = flatten(trace.roots ?? []);
  if (!rows.length) return h("p", { class: "muted empty", text: "No spans recorded for this run (yet)." });
  const endOf = (span) => Math.max(span.end_time_unix_nano || 0, span.start_time_unix_nano);
  const start = Math.min(...rows.map((r) => r.span.start_time_unix_nano));
  const end = Math.max(...rows.map((r) => endOf(r.span)));
  const total = Math.max(end - start, 1);
  const errors = rows.filter((r) => r.span.status === "error").length;
  return h(
    "div",
    { class: "waterfall" },
    h(
      "p",
      { class: "muted small" },
      `${rows.length} span(s) over ${duration(total / 1e6)}`,
      errors ? h("span", { class: "badge bad", text: `${errors} error(s)` }) : null,
      trace.trace_id ? h("code", { class: "trace-id", text: ` trace ${trace.trace_id}` }) : null,
    ),
    h(
      "ol",
      { class: "spans" },
      rows.map(({ span, depth }) => {
        const left = Math.min(((span.start_time_unix_nano - start) / total) * 100, 99.5);
        const width = Math.max(Math.min(((endOf(span) - span.start_time_unix_nano) / total) * 100, 100 - left), 0.5);
        const failed = span.status === "error";
        const title = [
          span.name,
          span.service_name,
          span.kind,
          failed ? `error: ${span.status_description ?? ""}` : span.status,
        ]
          .filter(Boolean)
          .join(" · ");
        return h(
          "li",
          {
            class: `span${failed ? " is-error" : ""}`,
            testid: "trace-span",
            title,
            style: { "--depth": Math.min(depth, 12) },
          },
          h(
            "span",
            { class: "span-label" },
            failed ? h("span", { class: "badge bad", text: "error" }) : null,
            h("span", { class: "span-name", text: span.name }),
            h("span", { class: "span-ms", text: duration(span.duration_ms) }),
          ),
          h(
            "span",
            { class: "span-track" },
            h("span", { class: "span-bar", style: { left: `${left}%`, width: `${width}%` } }),
          ),
        );
      }),
    ),
  );
}
