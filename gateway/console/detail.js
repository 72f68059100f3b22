// One request: file, publisher, device, user, justification, the audit timeline, the approval countdown,
// the reputation analysis, and Approve / Deny / Revoke through the reason dialog.

import { api, AUDIT, DEVICES, odata, quote, REQUESTS } from "./api.js";
import { decide } from "./dialog.js";
import { countdown, h, statusBadge, verdictBadge, when } from "./dom.js";
import { cannotDecide } from "./me.js";

const ACTIONS = { pending: ["approve", "deny"], approved: ["revoke"] };
const LABEL = { approve: "Approve", deny: "Deny", revoke: "Revoke" };
const REPUTATION = { knownGood: "Known good", knownMalicious: "Known malicious", vulnerableDriver: "Vulnerable driver",
                     dualUse: "Dual-use binary", unknown: "Unknown" };
const analyses = new Map();  // request id -> its analysis, kept while the console is open

const list = (...pairs) => h("dl.facts", {}, pairs.filter(([, value]) => value !== null).flatMap(([term, value]) => [
  h("dt", {}, term), h("dd", {}, value === "" || value === undefined ? h("span.muted", {}, "—") : value)]));
const mono = (text) => (text ? h("code.mono", {}, text) : "");
const section = (title, ...body) => h("section.card", { "aria-labelledby": `h-${title.replace(/\W/g, "")}` },
  h("h3", { id: `h-${title.replace(/\W/g, "")}` }, title), ...body);

export class RequestDetail {
  constructor(root, { onChanged, onClose }) {
    this.root = root;
    this.onChanged = onChanged;
    this.onClose = onClose;
    this.timer = null;
  }

  /** Shows request `id`; again for the same id (a live change) it redraws in place, keeping the reviewer's focus. */
  async open(id) {
    const focused = this.root.contains(document.activeElement);
    if (this.id !== id) this.root.replaceChildren(h("p.muted", {}, "Loading…"));
    this.id = id;
    clearInterval(this.timer);
    this.root.hidden = false;
    let request;
    try {
      request = await api(`${REQUESTS}/${id}`);
    } catch (error) {
      this.root.replaceChildren(this.header(null), h("p.error", { role: "alert" }, error.message));
      return;
    }
    if (this.id !== id) return;
    this.request = request;
    const [device, timeline] = await Promise.all([this.device(request), this.timeline(id)]);
    if (this.id !== id) return;
    const detail = request.applicationDetail || {};
    const analysis = analyses.get(id);
    this.analysisBox = h("div.analysis", { "aria-live": "polite" }, analysis ? this.analysis(analysis) : null);
    this.root.replaceChildren(
      this.header(request),
      this.actions(request),
      this.analysisBox,
      section("Request",
        list(["Requested by", request.requestedByUserPrincipalName], ["User id", mono(request.requestedByUserId)],
          ["Justification", h("q.quote", {}, request.requestJustification || "none given")],
          ["Requested", when(request.requestCreatedDateTime)], ["Last change", when(request.requestLastModifiedDateTime)],
          ["Reviewed by", request.reviewCompletedByUserPrincipalName],
          ["Reviewer's reason", request.reviewerJustification])),
      section("File",
        list(["Name", detail.fileName], ["Path", mono(detail.filePath)], ["SHA-256", mono(detail.fileHash)],
          ["Description", detail.fileDescription], ["Product", [detail.productName, detail.productVersion].filter(Boolean).join(" ")],
          ["Internal name", detail.productInternalName], ["Publisher", detail.publisherName || "unsigned"],
          ["Certificate", this.certificate(detail, analysis)])),
      section("Device", device),
      section("Timeline", timeline));
    if (focused) this.root.querySelector("#detail-title").focus();
    this.tick();
    this.timer = setInterval(() => this.tick(), 1000);
  }

  close() {
    clearInterval(this.timer);
    this.id = null;
    this.root.hidden = true;
    this.root.replaceChildren();
  }

  header(request) {
    const detail = request?.applicationDetail || {};
    return h("div.detail-head", {},
      h("div", {}, h("h2#detail-title", { tabindex: "-1" }, detail.fileName || "Request"),
        request ? h("p.sub", {}, `${request.deviceName || request.requestedOnDeviceId} · ${request.requestedByUserPrincipalName}`) : null),
      request ? h("div.head-badges", {}, statusBadge(request.status), verdictBadge(request["@epm.reputation"]?.verdict)) : null,
      h("button.icon", { type: "button", "aria-label": "Close details", onclick: () => this.onClose() }, "✕"));
  }

  /** The approval countdown, refreshed every second. */
  tick() {
    const box = this.root.querySelector(".expiry");
    if (!box || !this.request) return;
    const { status, requestExpiryDateTime: ends } = this.request;
    const left = countdown(ends);
    box.textContent = status === "approved" ? `Elevation allowed until ${when(ends)} (${left})`
      : `Expires unreviewed ${left === "expired" ? "now" : left} (${when(ends)})`;
  }

  actions(request) {
    const actions = ACTIONS[request.status] || [];
    const why = actions.length ? cannotDecide(request) : "";
    return h("div.actions", {},
      actions.length ? h("p.expiry", { role: "timer", "aria-live": "off" }) : h("p.muted", {}, `No decision left to take: the request is ${request.status}.`),
      h("div.buttons", {},
        h("button.secondary", { type: "button", id: "analyze", onclick: () => this.analyze() }, "Analyze"),
        actions.map((action) => h(`button.${action === "approve" ? "primary" : "danger"}`, {
          type: "button", "data-action": action, disabled: Boolean(why), "aria-describedby": why ? "why-not" : null,
          onclick: () => this.decide(action),
        }, LABEL[action]))),
      why ? h("p#why-not.why-not", {}, h("span", { "aria-hidden": "true" }, "ℹ "), why) : null);
  }

  async decide(action) {
    const done = await decide(action, this.request, analyses.get(this.request.id));
    if (!done) return;
    this.onChanged(done.id);
    await this.open(done.id);
    this.root.querySelector("#detail-title")?.focus();
  }

  async device(request) {
    try {
      const d = await api(`${DEVICES}/${encodeURIComponent(request.requestedOnDeviceId)}`);
      return list(["Name", d.deviceName], ["Compliance", h(`span.badge.compliance-${d.complianceState}`, {}, d.complianceState)],
        ["OS", `${d.operatingSystem} ${d.osVersion}`.trim()], ["Primary user", d.userPrincipalName],
        ["Model", [d.manufacturer, d.model].filter(Boolean).join(" ")], ["Last sync", when(d.lastSyncDateTime)],
        ["Device id", mono(d.id)]);
    } catch (error) {
      return h("p.warning", {}, error.status === 404 ? `${request.deviceName || "This device"} is not a managed device: compliance unknown.`
        : `Device details unavailable: ${error.message}`);
    }
  }

  async timeline(id) {
    try {
      const page = await api(odata(AUDIT, { $filter: `resources/resourceId eq ${quote(id)}`, $orderby: "activityDateTime asc", $top: 50 }));
      return h("ol.timeline", {}, page.value.map((event) => {
        const changes = (event.resources[0]?.modifiedProperties || []).filter((p) => p.newValue && p.displayName !== "status");
        return h("li", {}, h("time", { datetime: event.activityDateTime }, when(event.activityDateTime)),
          h("strong", {}, event.activity.replace(" ElevationRequest", "")),
          ` by ${event.actor.userPrincipalName || event.actor.applicationId || "the system"}`,
          changes.map((p) => h("div.sub", {}, `${p.displayName}: ${p.newValue}`)));
      }));
    } catch (error) {
      return h("p.muted", {}, `The audit log is unavailable: ${error.message}`);
    }
  }

  certificate(detail, analysis) {
    const parts = [];
    const p = analysis?.publisher;
    if (p && (p.subject || p.thumbprint)) {
      parts.push(list(["Subject", p.subject], ["Issuer", p.issuer], ["Thumbprint", mono(p.thumbprint)],
        ["Valid", `${when(p.notBefore)} – ${when(p.notAfter)}`]));
    }
    if (detail.publisherCert) {
      const blob = new Blob([detail.publisherCert], { type: "application/pkix-cert" });
      parts.push(h("a", { href: URL.createObjectURL(blob), download: `${detail.fileName || "publisher"}.cer` }, "Download certificate chain"));
    }
    if (!parts.length) parts.push(analysis ? "none" : h("span.muted", {}, "run Analyze for the certificate's assessment"));
    return parts;
  }

  async analyze() {
    const button = this.root.querySelector("#analyze");
    button.disabled = true;
    button.textContent = "Analyzing…";
    this.analysisBox.replaceChildren(h("p.muted", {}, "Asking the reputation service…"));
    try {
      const result = await api(`${REQUESTS}/${this.request.id}/analyze`, { method: "POST", body: {} });
      analyses.set(this.request.id, result);
      this.analysisBox.replaceChildren(this.analysis(result));
    } catch (error) {
      this.analysisBox.replaceChildren(h("p.error", { role: "alert" }, `Analysis failed: ${error.message}`));
    } finally {
      button.disabled = false;
      button.textContent = "Analyze again";
    }
  }

  analysis(a) {
    const risk = (r) => h("span", {}, h(`span.badge.level-${r.level}`, {}, `${r.level} · ${r.score}`),
      r.factors.length ? h("ul.factors", {}, r.factors.map((f) => h("li", {}, f))) : null);
    return h("section.card.analysis-card", { "aria-labelledby": "h-analysis" },
      alertBanner(a),
      h("h3#h-analysis", {}, "Reputation analysis"),
      h("div.score-row", {},
        h("div.score", {}, h("span.score-value", {}, String(a.riskScore)), h("span.sub", {}, "risk / 100")),
        h("meter", { min: 0, max: 100, low: 26, high: 70, optimum: 0, value: a.riskScore, "aria-label": "Risk score" }),
        h("div", {}, verdictBadge(a.verdict), h("div.sub", {}, `Recommendation: ${a.recommendation}`))),
      h("p.summary", {}, a.summary),
      list(["App reputation", REPUTATION[a.appReputation] || a.appReputation],
        ["Publisher", `${a.publisher.trust}${a.publisher.reasons.length ? ` — ${a.publisher.reasons.join("; ")}` : ""}`],
        ["User risk", risk(a.userRisk)], ["Device risk", risk(a.deviceRisk)],
        ["Prevalence", `${a.prevalence.elevations} elevations by ${a.prevalence.users} users on ${a.prevalence.devices} devices`],
        ["Unavailable", a.unavailable.length ? a.unavailable.join(", ") : null]),
      h("table.evidence", {}, h("caption", {}, "Evidence"),
        h("thead", {}, h("tr", {}, ["Signal", "Observed", "Source", "Points"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, a.evidence.map((e) => h("tr", {}, h("td", {}, h("code", {}, e.signal)),
          h("td", {}, e.reference ? h("a", { href: e.reference, target: "_blank", rel: "noopener noreferrer" }, e.observed) : e.observed),
          h("td", {}, e.source), h("td.num", {}, e.contribution > 0 ? `+${e.contribution}` : String(e.contribution)))))),
      a.sources.length ? h("div", {}, h("h4", {}, "Sources"), h("ul.sources", {}, a.sources.map((s) => h("li", {},
        h("strong", {}, `${s.feed} ${s.feedVersion}`), ` ${s.label} by ${s.matchedBy}: `,
        s.reference ? h("a", { href: s.reference, target: "_blank", rel: "noopener noreferrer" }, s.title || s.name) : s.title || s.name)))) : null,
      h("p.sub", {}, `Analyzed ${when(a.analyzedDateTime)}`));
  }
}

/** The banner no reviewer can miss: malicious, vulnerable drivers and dual-use binaries (color, icon and words). */
export function alertBanner(a) {
  const labels = new Set(a.sources.map((s) => s.label));
  let kind = null, title = "", icon = "";
  if (a.verdict === "malicious" || labels.has("malicious") || labels.has("blocked")) {
    [kind, icon, title] = ["danger", "✖", "Malicious file: do not approve"];
  } else if (labels.has("vulnerableDriver")) {
    [kind, icon, title] = ["danger", "✖", "Vulnerable driver: attackers use it to take over the kernel"];
  } else if (labels.has("dualUse")) {
    [kind, icon, title] = ["warn", "⚠", "Dual-use binary: attackers abuse this Windows tool"];
  } else if (a.verdict === "suspicious") {
    [kind, icon, title] = ["warn", "⚠", "Suspicious file"];
  }
  if (!kind) return null;
  const source = a.sources.find((s) => s.label !== "knownGood");
  const why = source ? `${source.feed}: ${source.title || source.name} (matched by ${source.matchedBy}).`
    : `Risk ${a.riskScore}/100.`;
  return h(`div.banner.banner-${kind}`, { role: "alert" }, h("span.banner-icon", { "aria-hidden": "true" }, icon),
    h("div", {}, h("strong", {}, title), h("div", {}, `${why} Recommendation: ${a.recommendation}.`)));
}
