// DOM helpers: elements are built with textContent only, so model and user text is never parsed as HTML.

/**
 * Create an element. `attrs` keys: `class`, `text`, `on<event>` (listener), `dataset` and `style` (objects; styles
 * are set through the CSSOM, which a strict CSP allows), any other attribute (`testid` is shorthand for
 * `data-testid`); `false`/`null`/`undefined` values are skipped.
 * Children may be nodes, strings (become text nodes), arrays, or falsy (skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = String(value);
    else if (key === "testid") el.dataset.testid = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "style") for (const [prop, v] of Object.entries(value)) el.style.setProperty(prop, String(v));
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "value") el.value = value;
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false || child === "") continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace an element's children, keeping which keyed `<details>` were open (a re-render must not fold them). */
export function replaceKeepingOpen(el, ...children) {
  const open = new Set([...el.querySelectorAll("details[data-key]")].filter((d) => d.open).map((d) => d.dataset.key));
  el.replaceChildren();
  append(el, children);
  for (const d of el.querySelectorAll("details[data-key]")) if (open.has(d.dataset.key)) d.open = true;
}

// ---- text rendering: a small, safe subset of markdown --------------------------------------------

const INLINE = /(\*\*[^*\n]+\*\*|`[^`\n]+`|_[^_\n]+_)/g;

/** Inline spans: **bold**, `code`, _emphasis_; everything else is plain text. */
function inline(text) {
  const out = [];
  let last = 0;
  for (const match of text.matchAll(INLINE)) {
    if (match.index > last) out.push(text.slice(last, match.index));
    const token = match[0];
    if (token.startsWith("**")) out.push(h("strong", { text: token.slice(2, -2) }));
    else if (token.startsWith("`")) out.push(h("code", { text: token.slice(1, -1) }));
    else out.push(h("em", { text: token.slice(1, -1) }));
    last = match.index + token.length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

function withBreaks(lines) {
  return lines.flatMap((line, i) => (i ? [h("br"), ...inline(line)] : inline(line)));
}

/**
 * Render model text as readable blocks: paragraphs, line breaks, `#` headings, `-`/`1.` lists and ``` fences.
 * Returns a `<div class="prose">`.
 */
export function renderText(text) {
  const root = h("div", { class: "prose" });
  const lines = String(text ?? "")
    .replace(/\r\n?/g, "\n")
    .split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) {
      i++;
    } else if (line.startsWith("```")) {
      const body = [];
      for (i++; i < lines.length && !lines[i].startsWith("```"); i++) body.push(lines[i]);
      i++;
      root.append(h("pre", {}, h("code", { text: body.join("\n") })));
    } else if (/^#{1,6}\s/.test(line)) {
      const level = Math.min(line.match(/^#+/)[0].length + 2, 6); // page headings stay above answer headings
      root.append(h(`h${level}`, {}, inline(line.replace(/^#+\s*/, ""))));
      i++;
    } else if (/^\s*([-*]|\d+\.)\s/.test(line)) {
      const ordered = /^\s*\d+\./.test(line);
      const list = h(ordered ? "ol" : "ul");
      for (; i < lines.length && /^\s*([-*]|\d+\.)\s/.test(lines[i]); i++) {
        list.append(h("li", {}, inline(lines[i].replace(/^\s*([-*]|\d+\.)\s+/, ""))));
      }
      root.append(list);
    } else {
      const para = [];
      for (; i < lines.length && lines[i].trim() && !/^(```|#{1,6}\s|\s*([-*]|\d+\.)\s)/.test(lines[i]); i++) {
        para.push(lines[i]);
      }
      root.append(h("p", {}, withBreaks(para)));
    }
  }
  return root;
}

// ---- formatting ------------------------------------------------------------------------------

export function money(usd) {
  const value = Number(usd) || 0;
  if (value === 0) return "$0.00";
  return value < 0.01 ? `$${value.toFixed(4)}` : `$${value.toFixed(2)}`;
}

export function duration(ms) {
  const value = Number(ms) || 0;
  if (value < 1) return `${value.toFixed(2)} ms`;
  if (value < 1000) return `${Math.round(value)} ms`;
  return `${(value / 1000).toFixed(value < 10000 ? 2 : 1)} s`;
}

export function tokens(n) {
  const value = Number(n) || 0;
  return value >= 10000 ? `${(value / 1000).toFixed(1)}k` : String(value);
}

/** "just now", "5 min ago", or a date, for an epoch-ms time. */
export function ago(epochMs) {
  if (!epochMs) return "";
  const seconds = (Date.now() - epochMs) / 1000;
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return new Date(epochMs).toLocaleDateString();
}

/** First `limit` characters of a single-line rendering of `text`. */
export function clip(text, limit = 120) {
  const flat = String(text ?? "")
    .replace(/\s+/g, " ")
    .trim();
  return flat.length > limit ? `${flat.slice(0, limit - 1)}…` : flat;
}
