// Small DOM and formatting helpers: elements are built, never parsed from strings (no markup injection).

/** h("tag.class#id", {attributes, onclick: fn}, ...children): an element; null and false children are skipped. */
export function h(selector, attributes = {}, ...children) {
  const [, tag, rest = ""] = selector.match(/^([a-z0-9-]+)(.*)$/);
  const svg = ["svg", "g", "rect", "line", "text", "title", "path", "circle"].includes(tag);
  const element = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [, mark, name] of rest.matchAll(/([.#])([\w-]+)/g)) {
    if (mark === ".") element.classList.add(name); else element.id = name;
  }
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === false || value == null) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : value);
  }
  element.append(...children.flat().filter((c) => c !== null && c !== false && c !== undefined));
  return element;
}

export const $ = (selector, root = document) => root.querySelector(selector);

const dateTime = new Intl.DateTimeFormat("en-GB", { dateStyle: "medium", timeStyle: "short" });
export const when = (iso) => (iso ? dateTime.format(new Date(iso)) : "—");

/** "in 23 h 59 min", "in 4 min 2 s", "expired". */
export function countdown(iso, now = Date.now()) {
  let seconds = Math.floor((new Date(iso) - now) / 1000);
  if (seconds <= 0) return "expired";
  const days = Math.floor(seconds / 86400), hours = Math.floor((seconds % 86400) / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  seconds %= 60;
  if (days) return `in ${days} d ${hours} h`;
  if (hours) return `in ${hours} h ${minutes} min`;
  return `in ${minutes} min ${seconds} s`;
}

export const STATUS = {
  pending: "Pending", approved: "Approved", denied: "Denied", revoked: "Revoked", expired: "Expired",
  completed: "Completed",
};
export const statusBadge = (status) => h(`span.badge.status-${status}`, {}, STATUS[status] || status);

export const VERDICT = { malicious: "Malicious", suspicious: "Suspicious", unknown: "Unknown", clean: "Clean" };
const VERDICT_ICON = { malicious: "✖", suspicious: "⚠", unknown: "?", clean: "✓" };
export const verdictBadge = (verdict) => verdict
  ? h(`span.badge.verdict-${verdict}`, {}, h("span", { "aria-hidden": "true" }, VERDICT_ICON[verdict] || ""),
    ` ${VERDICT[verdict] || verdict}`)
  : h("span.muted", {}, "—");

export const fileName = (path) => String(path || "").split(/[\\/]/).pop();
export const daysAgo = (days) => new Date(Date.now() - days * 86400000).toISOString().replace(/\.\d+Z$/, "Z");
