// The elevation requests list: pending and the last 30 days, counts per status, filters, sorting, paging.

import { api, count, odata, quote, REQUESTS } from "./api.js";
import { $, daysAgo, fileName, h, STATUS, statusBadge, verdictBadge, when } from "./dom.js";

const PAGE = 15;
const TABS = ["all", "pending", "approved", "denied", "revoked", "expired", "completed"];
const COLUMNS = [  // [label, $orderby property or null]
  ["Status", "status"], ["File", "applicationDetail/fileName"], ["Verdict", null], ["Device", "deviceName"],
  ["Requested by", "requestedByUserPrincipalName"], ["Requested", "requestCreatedDateTime"],
  ["Expires", "requestExpiryDateTime"],
];

export class RequestList {
  constructor(root, { onOpen }) {
    this.root = root;
    this.onOpen = onOpen;
    this.state = { tab: "pending", sort: "requestCreatedDateTime", desc: true, device: "", user: "", file: "",
                   from: "", to: "" };
    this.pages = [];  // the links of the pages before this one
    this.rows = new Map();  // request id -> its <tr>
    this.selected = null;
  }

  /** The $filter of the current tab and filters. */
  filter(tab = this.state.tab) {
    const since = `requestLastModifiedDateTime ge ${daysAgo(30)}`;
    const parts = [tab === "all" ? `(status eq 'pending' or ${since})`
      : tab === "pending" ? "status eq 'pending'" : `status eq '${tab}' and ${since}`];
    const { device, user, file, from, to } = this.state;
    if (device) parts.push(`contains(deviceName,${quote(device)})`);
    if (user) parts.push(`contains(requestedByUserPrincipalName,${quote(user)})`);
    if (file) parts.push(`contains(applicationDetail/fileName,${quote(file)})`);
    if (from) parts.push(`requestCreatedDateTime ge ${new Date(`${from}T00:00:00`).toISOString()}`);
    if (to) parts.push(`requestCreatedDateTime lt ${new Date(new Date(`${to}T00:00:00`).getTime() + 86400000).toISOString()}`);
    return parts.join(" and ");
  }

  render() {
    const s = this.state;
    const field = (name, label, type = "search") => h("div.field", {},
      h("label", { for: `filter-${name}` }, label),
      h("input", { id: `filter-${name}`, name, type, value: s[name], placeholder: type === "search" ? "contains…" : null }));
    this.tabs = h("div.tabs", { role: "group", "aria-label": "Status" }, TABS.map((tab) => h("button.tab", {
      type: "button", "data-tab": tab, "aria-pressed": String(tab === s.tab), onclick: () => this.choose(tab),
    }, tab === "all" ? "All" : STATUS[tab], " ", h("span.count", { "data-count": tab }, "…"))));
    this.form = h("form.filters", { role: "search", "aria-label": "Filter requests", onsubmit: (e) => {
      e.preventDefault();
      for (const name of ["device", "user", "file", "from", "to"]) s[name] = this.form.elements[name].value.trim();
      this.reload();
    } }, field("device", "Device"), field("user", "User"), field("file", "File"), field("from", "From", "date"),
    field("to", "To", "date"), h("button.secondary", { type: "submit" }, "Apply"),
    h("button.link", { type: "reset", onclick: () => { Object.assign(s, { device: "", user: "", file: "", from: "", to: "" });
      queueMicrotask(() => this.reload()); } }, "Clear"));
    this.notice = h("div.notice", { role: "status", "aria-live": "polite" });
    this.table = h("table.requests", { "aria-describedby": "list-caption" },
      h("caption#list-caption.visually-hidden", {}, "Elevation requests"),
      h("thead", {}, h("tr", {}, COLUMNS.map(([label, property]) => h("th", {
        scope: "col", "aria-sort": property === s.sort ? (s.desc ? "descending" : "ascending") : (property ? "none" : null),
      }, property ? h("button.sort", { type: "button", onclick: () => this.sortBy(property) }, label,
        h("span.arrow", { "aria-hidden": "true" }, property === s.sort ? (s.desc ? " ▼" : " ▲") : " ↕")) : label)))),
      this.body = h("tbody"));
    this.pager = h("nav.pager", { "aria-label": "Pages" });
    this.root.replaceChildren(h("h1", {}, "Elevation requests"), this.tabs, this.form, this.notice,
      h("div.table-wrap", {}, this.table), this.pager);
  }

  choose(tab) { this.state.tab = tab; this.reload(); }

  sortBy(property) {
    const s = this.state;
    s.desc = s.sort === property ? !s.desc : property.endsWith("DateTime");
    s.sort = property;
    this.reload();
  }

  async reload() {
    this.pages = [];
    this.render();
    await Promise.all([this.load(this.firstLink()), this.counts()]);
  }

  firstLink() {
    const s = this.state;
    const order = `${s.sort} ${s.desc ? "desc" : "asc"}`;
    return odata(REQUESTS, { $filter: this.filter(), $orderby: s.sort === "requestCreatedDateTime" ? order : `${order},requestCreatedDateTime desc`,
                             $top: PAGE, $count: "true" });
  }

  async counts() {
    await Promise.all(TABS.map(async (tab) => {
      const n = await count(REQUESTS, this.filter(tab)).catch(() => "?");
      const cell = $(`[data-count="${tab}"]`, this.tabs);
      if (cell) cell.textContent = String(n);
    }));
  }

  async load(link) {
    this.link = link;
    this.body.replaceChildren(h("tr", {}, h("td.muted", { colspan: COLUMNS.length }, "Loading…")));
    let page;
    try {
      page = await api(link);
    } catch (error) {
      this.body.replaceChildren(h("tr", {}, h("td.error", { colspan: COLUMNS.length, role: "alert" }, error.message)));
      return;
    }
    this.rows.clear();
    this.body.replaceChildren(...page.value.map((request) => this.row(request)));
    if (!page.value.length) this.body.append(h("tr", {}, h("td.muted.empty", { colspan: COLUMNS.length }, "No requests match.")));
    const first = this.pages.length * PAGE;
    this.pager.replaceChildren(
      h("span", {}, page.value.length ? `${first + 1}–${first + page.value.length} of ${page["@odata.count"]}` : ""),
      h("button.secondary", { type: "button", disabled: !this.pages.length, onclick: () => this.load(this.pages.pop()) }, "‹ Previous"),
      h("button.secondary", { type: "button", disabled: !page["@odata.nextLink"], onclick: () => {
        this.pages.push(link);
        this.load(page["@odata.nextLink"]);
      } }, "Next ›"));
  }

  row(request) {
    const detail = request.applicationDetail || {};
    const tr = h("tr", { "data-id": request.id, "aria-selected": String(request.id === this.selected) },
      h("td", {}, statusBadge(request.status)),
      h("td", {}, h("a.open", { href: `#/requests/${request.id}`, onclick: (e) => { e.preventDefault(); this.onOpen(request.id); } },
        detail.fileName || fileName(detail.filePath) || "(unnamed)"), h("div.sub", {}, detail.publisherName || "unsigned")),
      h("td", {}, verdictBadge(request["@epm.reputation"]?.verdict)),
      h("td", {}, request.deviceName || request.requestedOnDeviceId),
      h("td", {}, request.requestedByUserPrincipalName),
      h("td", {}, when(request.requestCreatedDateTime)),
      h("td", {}, request.status === "pending" || request.status === "approved" ? when(request.requestExpiryDateTime) : "—"));
    this.rows.set(request.id, tr);
    return tr;
  }

  select(id) {
    this.selected = id;
    for (const [rowId, tr] of this.rows) tr.setAttribute("aria-selected", String(rowId === id));
  }

  /** Live: the requests these audit events changed. Rows on screen are refreshed in place, counts recounted. */
  async changed(ids, created) {
    await Promise.all([this.counts(), ...ids.filter((id) => this.rows.has(id)).map(async (id) => {
      const request = await api(`${REQUESTS}/${id}`).catch(() => null);
      const old = this.rows.get(id);
      if (!request || !old) return;
      const fresh = this.row(request);
      fresh.classList.add("flash");
      const focused = old.contains(document.activeElement);
      old.replaceWith(fresh);
      if (focused) fresh.querySelector("a").focus();
    })]);
    if (created) {
      this.notice.replaceChildren("New requests arrived. ",
        h("button.link", { type: "button", onclick: () => this.reload() }, "Show them"));
    }
  }
}
