// Conversations: the sidebar list, and a session's tree of entries with "Fork from here" and its agent sessions.

import { api } from "./api.js";
import { ago, clip, h } from "./dom.js";

const sessionPath = (sessionId, rest = "") => `/sessions/${encodeURIComponent(sessionId)}${rest}`;

const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;

export function sessionTitle(meta) {
  return meta.display_name || meta.last_message_summary || "Untitled conversation";
}

/** The sidebar list; the selected conversation is marked with aria-current. */
export function sessionListView(sessions, selectedId, onSelect) {
  if (!sessions.length)
    return h("li", { class: "muted empty", text: "No conversations yet. Send a message to start one." });
  return sessions.map((meta) =>
    h(
      "li",
      {},
      h(
        "button",
        {
          type: "button",
          class: "session-item",
          "aria-current": meta.session_id === selectedId ? "true" : false,
          dataset: { sessionId: meta.session_id },
          onclick: () => onSelect(meta.session_id),
        },
        h("span", { class: "session-title", text: clip(sessionTitle(meta), 60) }),
        h("span", {
          class: "session-sub muted small",
          text: [ago(meta.updated_at), plural(meta.entry_count, "entry", "entries")].filter(Boolean).join(" · "),
        }),
      ),
    ),
  );
}

/** The text of message content: a string, or the text blocks of a block list. */
function contentText(content) {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return content == null ? "" : JSON.stringify(content);
  return content
    .map((block) =>
      block.type === "text"
        ? block.text
        : block.type === "function_call"
          ? `→ ${block.function_id}`
          : block.type === "image"
            ? "[image]"
            : "",
    )
    .filter(Boolean)
    .join(" ");
}

/** {role, text} of a session entry, for one line of the tree. */
function describeEntry(entry) {
  switch (entry.type) {
    case "message": {
      const message = entry.message;
      if (message.role === "function_result")
        return { role: "tool result", text: `${message.function_id}: ${contentText(message.content)}` };
      if (message.role === "custom") return { role: message.custom_type, text: contentText(message.content) };
      return { role: message.role, text: contentText(message.content) };
    }
    case "branch_summary":
    case "compaction":
      return { role: entry.type.replace("_", " "), text: entry.summary };
    default:
      return { role: entry.custom_type ?? entry.type, text: contentText(entry.content) };
  }
}

/** The user and assistant messages on the newest branch of a tree (the path a new run continues from). */
export function activePath(tree) {
  const path = [];
  let node = tree;
  while (node) {
    const { role, text } = describeEntry(node.entry);
    if ((role === "user" || role === "assistant") && text.trim()) path.push({ role, text, entryId: node.entry.id });
    const children = node.children ?? [];
    node = children.reduce(
      (newest, child) => (!newest || child.entry.timestamp >= newest.entry.timestamp ? child : newest),
      null,
    );
  }
  return path;
}

/**
 * The tree panel: a session's entries (a chain stays flat, each fork point nests its branches), a
 * "Fork from here" button per entry, and its child sessions, opened on demand.
 */
export class SessionTreePanel {
  constructor({ onFork, onError }) {
    this.onFork = onFork;
    this.onError = onError;
    this.body = h("div", { class: "tree-body" });
    this.el = h(
      "aside",
      { class: "tree-panel", testid: "session-tree", hidden: true, "aria-label": "Session tree" },
      h(
        "header",
        { class: "panel-head" },
        h("h2", { text: "Conversation tree" }),
        h("button", {
          type: "button",
          class: "btn small",
          testid: "close-tree",
          text: "Close",
          onclick: () => this.close(),
        }),
      ),
      h("p", {
        class: "muted small",
        text: "Every message of this conversation. Fork from any entry to continue from that point in a new conversation.",
      }),
      this.body,
    );
  }

  get isOpen() {
    return !this.el.hidden;
  }

  close() {
    this.el.hidden = true;
  }

  async open(sessionId) {
    this.el.hidden = false;
    this.body.replaceChildren(h("p", { class: "muted", text: "Loading…" }));
    this.body.replaceChildren(await this.sessionView(sessionId));
  }

  async sessionView(sessionId) {
    let reply;
    try {
      reply = await api(sessionPath(sessionId, "/tree"));
    } catch (error) {
      return h("p", { class: "error-text", text: `Could not load the tree: ${error.message}` });
    }
    return h(
      "div",
      { class: "session-view", dataset: { sessionId } },
      reply.tree ? this.entriesView(sessionId, reply.tree) : h("p", { class: "muted", text: "No entries yet." }),
      reply.children?.length ? this.childrenView(reply.children) : null,
    );
  }

  entriesView(sessionId, root) {
    const top = h("ol", { class: "entries" });
    const pending = [[root, top]];
    while (pending.length) {
      let [node, list] = pending.pop();
      // Follow a chain in one list; only a fork point (several children) opens nested lists.
      while (node) {
        list.append(this.entryRow(sessionId, node.entry));
        const children = node.children ?? [];
        if (children.length > 1) {
          const branches = h("li", { class: "branches" });
          children.forEach((child, i) => {
            const sub = h("ol", { class: "entries" });
            branches.append(
              h(
                "div",
                { class: "branch" },
                h("p", { class: "branch-label muted small", text: `branch ${i + 1}` }),
                sub,
              ),
            );
            pending.push([child, sub]);
          });
          list.append(branches);
        }
        node = children.length === 1 ? children[0] : null;
      }
    }
    return top;
  }

  entryRow(sessionId, entry) {
    const { role, text } = describeEntry(entry);
    const fork = h("button", {
      type: "button",
      class: "btn small",
      testid: "fork",
      text: "Fork from here",
      onclick: async () => {
        fork.disabled = true;
        try {
          const { session_id } = await api(sessionPath(sessionId, "/fork"), {
            method: "POST",
            body: { from_entry_id: entry.id },
          });
          this.close();
          this.onFork(session_id);
        } catch (error) {
          fork.disabled = false;
          this.onError(`Fork failed: ${error.message}`);
        }
      },
    });
    return h(
      "li",
      { class: `entry role-${role.replace(/\s+/g, "-")}`, testid: "tree-entry", dataset: { entryId: entry.id } },
      h("span", { class: "badge", text: role }),
      h("span", { class: "entry-text", text: clip(text, 160) || "(empty)" }),
      fork,
    );
  }

  /** Child sessions (the agents of engine runs), each loaded when opened. */
  childrenView(children) {
    return h(
      "section",
      { class: "child-sessions" },
      h("h3", { text: `Agent sessions (${children.length})` }),
      children.map((meta) => {
        const details = h(
          "details",
          { class: "child-session", testid: "child-session", dataset: { sessionId: meta.session_id } },
          h(
            "summary",
            {},
            h("strong", { text: meta.display_name || meta.session_id }),
            h("span", { class: "muted small", text: ` · ${plural(meta.entry_count, "entry", "entries")}` }),
          ),
        );
        details.addEventListener("toggle", async () => {
          if (details.open && !details.dataset.loaded) {
            details.dataset.loaded = "1";
            details.append(await this.sessionView(meta.session_id));
          }
        });
        return details;
      }),
    );
  }
}
