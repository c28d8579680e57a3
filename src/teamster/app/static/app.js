// The playground page: conversations in the sidebar, the selected conversation's runs, the composer.
// The URL keeps `#session=…&run=…`, so a reload reopens the same conversation and resumes the run's stream.

import { api, getToken, onUnauthorized } from "./api.js";
import { Composer } from "./composer.js";
import { h, renderText } from "./dom.js";
import { FINISHED } from "./run-state.js";
import { PATTERN_LABELS, RunPanel } from "./run-panel.js";
import { SessionTreePanel, activePath, sessionListView, sessionTitle } from "./sessions.js";
import { Settings } from "./settings.js";

const LAST_VIEW_KEY = "teamster.view";
const $ = (id) => document.getElementById(id);

const page = {
  sessionId: null,
  sessions: [],
  runs: [], // RunViews of the open conversation, oldest first
  earlier: [], // messages before its first run (a forked conversation starts with them)
  panel: null, // the RunPanel of the focused run
};

const composer = new Composer(startRun);
const settings = new Settings({
  onToken: () => reloadAll(),
  onKeys: () => guarded(() => composer.loadModels()),
  modelProviders: () => new Set(composer.models.map((m) => m.provider)),
});
const tree = new SessionTreePanel({ onFork: (sessionId) => openConversation(sessionId), onError: showError });

onUnauthorized(() => settings.requireToken());

// ---- messages to the user ------------------------------------------------------------------------

function showError(message) {
  const banner = $("banner");
  banner.replaceChildren(
    h("span", { text: message }),
    h("button", { type: "button", class: "btn small", text: "Dismiss", onclick: () => (banner.hidden = true) }),
  );
  banner.hidden = false;
}

/** Run `task`; an API error becomes the banner (a 401 has already opened the settings). */
async function guarded(task) {
  try {
    return await task();
  } catch (error) {
    if (error.status !== 401) showError(error.message);
    return undefined;
  }
}

// ---- URL state -----------------------------------------------------------------------------------

/** The view to open: the URL's, else the one last open in this browser (`remembered`). */
function readView() {
  const remembered = !location.hash.slice(1);
  const params = new URLSearchParams(remembered ? localStorage.getItem(LAST_VIEW_KEY) || "" : location.hash.slice(1));
  return { sessionId: params.get("session"), runId: params.get("run"), remembered };
}

function writeView() {
  const params = new URLSearchParams();
  if (page.sessionId) params.set("session", page.sessionId);
  if (page.panel) params.set("run", page.panel.runId);
  const hash = params.toString();
  localStorage.setItem(LAST_VIEW_KEY, hash);
  history.replaceState(null, "", hash ? `#${hash}` : location.pathname + location.search);
}

// ---- conversations -------------------------------------------------------------------------------

async function refreshSessions() {
  const { sessions } = await api("/sessions?limit=100");
  page.sessions = sessions;
  renderSessions();
}

function renderSessions() {
  $("session-list").replaceChildren(
    ...[sessionListView(page.sessions, page.sessionId, (id) => openConversation(id))].flat(),
  );
  const meta = page.sessions.find((s) => s.session_id === page.sessionId);
  $("conv-title").textContent = page.sessionId ? (meta ? sessionTitle(meta) : "Conversation") : "New conversation";
  $("open-tree").disabled = !page.sessionId;
  $("export").disabled = !page.sessionId;
}

/** Open a conversation: its runs as message/answer pairs; the given run (or the newest) is followed live. */
async function openConversation(sessionId, runId = null) {
  closeDrawer();
  tree.close();
  focusPanel(null);
  page.sessionId = sessionId;
  page.runs = [];
  page.earlier = [];
  renderSessions();
  renderThread();
  const loaded = await guarded(() =>
    Promise.all([
      api(`/runs?session_id=${encodeURIComponent(sessionId)}&limit=500`),
      api(`/sessions/${encodeURIComponent(sessionId)}/tree`),
    ]),
  );
  if (!loaded || page.sessionId !== sessionId) return;
  const [{ runs }, { tree: root }] = loaded;
  page.runs = runs.reverse();
  page.earlier = earlierMessages(root, page.runs);
  const focus = page.runs.find((run) => run.run_id === runId) ?? page.runs[page.runs.length - 1];
  if (focus) focusPanel(new RunPanel(focus, panelHooks));
  renderThread();
  writeView();
  if (!page.sessions.some((s) => s.session_id === sessionId)) guarded(refreshSessions);
}

/** The messages of the conversation's path that came before its first run (what a fork copied). */
function earlierMessages(root, runs) {
  const path = root ? activePath(root) : [];
  if (!runs.length) return path;
  const first = path.findIndex((m) => m.role === "user" && m.text.trim() === runs[0].message.trim());
  return first < 0 ? [] : path.slice(0, first);
}

/** An empty thread; the next message starts a new conversation. */
function newConversation({ focus = true } = {}) {
  closeDrawer();
  focusPanel(null);
  tree.close();
  page.sessionId = null;
  page.runs = [];
  page.earlier = [];
  renderSessions();
  renderThread();
  writeView();
  if (focus) composer.focus();
}

// ---- runs ----------------------------------------------------------------------------------------

const panelHooks = {
  onError: showError,
  onStatus(panel) {
    if (panel !== page.panel) return;
    composer.setBusy(panel.status === "running");
    const run = page.runs.find((r) => r.run_id === panel.runId);
    if (run && FINISHED.has(panel.status) && run.status !== panel.status) {
      Object.assign(run, {
        status: panel.status,
        result: panel.state.complete?.result ?? null,
        error: panel.state.terminal?.error ?? null,
      });
      guarded(refreshSessions);
    }
  },
};

/** Make `panel` the followed run (stopping the previous one), or follow none. */
function focusPanel(panel) {
  page.panel?.stop();
  page.panel = panel;
  composer.setBusy(panel?.status === "running");
  if (panel) {
    panel.start();
    writeView();
  }
}

async function startRun(request) {
  const body = page.sessionId ? { ...request, session_id: page.sessionId } : request;
  const reply = await guarded(() => api("/runs", { method: "POST", body }));
  if (!reply) return false;
  page.sessionId = reply.session_id;
  const run = {
    run_id: reply.run_id,
    session_id: reply.session_id,
    status: "running",
    budget: null,
    policy: "full",
    ...request,
  };
  page.runs.push(run);
  focusPanel(new RunPanel(run, panelHooks));
  renderThread();
  page.panel.el.scrollIntoView({ block: "start", behavior: "smooth" });
  guarded(refreshSessions);
  return true;
}

function renderThread() {
  const thread = $("thread");
  const turns = page.runs.map((run) =>
    h(
      "div",
      { class: "turn", dataset: { runId: run.run_id } },
      h("div", { class: "bubble user", testid: "user-message" }, renderText(run.message)),
      page.panel?.runId === run.run_id ? page.panel.el : briefView(run),
    ),
  );
  const earlier = page.earlier.length
    ? h(
        "section",
        { class: "earlier", testid: "earlier-messages", "aria-label": "Earlier in this conversation" },
        h("p", { class: "muted small", text: "Earlier in this conversation" }),
        page.earlier.map((m) => h("div", { class: `bubble ${m.role}` }, renderText(m.text))),
      )
    : null;
  thread.replaceChildren(...[earlier, ...turns].filter(Boolean));
  if (!turns.length && !earlier) thread.append(welcome());
}

/** A run that is not followed: its answer (or error) and a way to open its details. */
function briefView(run) {
  return h(
    "article",
    { class: "answer-brief", testid: "answer-brief" },
    h(
      "header",
      { class: "run-head" },
      h("span", {
        class: "run-meta",
        text: [PATTERN_LABELS[run.pattern] ?? run.pattern, run.model, run.backend].join(" · "),
      }),
      h("span", { class: `status-pill is-${run.status}`, text: run.status }),
      h("button", {
        type: "button",
        class: "btn small",
        testid: "run-details",
        text: "Details",
        onclick: () => showRun(run),
      }),
    ),
    run.result ? renderText(run.result) : run.error ? h("p", { class: "error-text", text: run.error }) : null,
  );
}

function showRun(run) {
  focusPanel(new RunPanel(run, panelHooks));
  renderThread();
  page.panel.el.scrollIntoView({ block: "start" });
}

function welcome() {
  return h(
    "section",
    { class: "welcome" },
    h("h2", { text: "Ask a team of agents" }),
    h("p", {
      text: "Pick a pattern — how the agents work together — and a model, then send a message. You can watch every agent live, approve tool calls, and fork the conversation from any point.",
    }),
    h("p", {
      class: "muted",
      text: "No API key? The scripted test model runs every pattern offline, so you can see how each one works.",
    }),
  );
}

// ---- page chrome ---------------------------------------------------------------------------------

function openDrawer() {
  document.body.classList.add("drawer-open");
  $("menu").setAttribute("aria-expanded", "true");
}

function closeDrawer() {
  document.body.classList.remove("drawer-open");
  $("menu").setAttribute("aria-expanded", "false");
}

async function exportConversation() {
  const response = await fetch(`/sessions/${encodeURIComponent(page.sessionId)}/export`, {
    headers: getToken() ? { Authorization: `Bearer ${getToken()}` } : {},
  });
  if (!response.ok) return showError(`Export failed: ${response.status}`);
  const url = URL.createObjectURL(await response.blob());
  h("a", { href: url, download: `conversation-${page.sessionId}.html` }).click();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

async function reloadAll() {
  $("banner").hidden = true;
  const health = await fetch("/health")
    .then((r) => (r.ok ? r.json() : null))
    .catch(() => null);
  if (health) {
    $("server").textContent = `v${health.version}`;
    if (health.features?.backends) composer.setBackends(health.features.backends);
  }
  await guarded(() => Promise.all([composer.loadModels(), refreshSessions()]));
  const { sessionId, runId, remembered } = readView();
  if (runId) {
    try {
      const run = await api(`/runs/${encodeURIComponent(runId)}`);
      return openConversation(run.session_id, runId);
    } catch (error) {
      // A remembered run may be gone (a server without durable storage restarted): start fresh, quietly.
      if (!remembered && error.status !== 401) showError(error.message);
    }
  }
  if (sessionId && (!remembered || page.sessions.some((s) => s.session_id === sessionId)))
    return openConversation(sessionId);
  return newConversation({ focus: false }); // focusing on load would pop up a phone's keyboard
}

function mount() {
  $("composer-slot").replaceWith(composer.el);
  document.querySelector(".main").append(tree.el);
  document.body.append(settings.el);
  $("menu").addEventListener("click", () =>
    document.body.classList.contains("drawer-open") ? closeDrawer() : openDrawer(),
  );
  $("backdrop").addEventListener("click", closeDrawer);
  $("new-conversation").addEventListener("click", () => newConversation());
  $("open-settings").addEventListener("click", () => settings.open());
  $("open-tree").addEventListener("click", () => (tree.isOpen ? tree.close() : tree.open(page.sessionId)));
  $("export").addEventListener("click", () => guarded(exportConversation));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") closeDrawer();
  });
  window.addEventListener("hashchange", () => {
    const { sessionId, runId } = readView();
    if (sessionId && (sessionId !== page.sessionId || (runId && runId !== page.panel?.runId)))
      openConversation(sessionId, runId);
  });
  renderSessions();
  renderThread();
}

mount();
reloadAll();
