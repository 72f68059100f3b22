// The reason dialog of Approve / Deny / Revoke: a modal <dialog>, focus kept inside, Escape cancels.

import { api, REQUESTS } from "./api.js";
import { h } from "./dom.js";

const TEXT = {
  approve: ["Approve elevation", "Approve", "primary", "The user may run the file elevated for 24 hours from now."],
  deny: ["Deny elevation", "Deny", "danger", "The file stays blocked; Intune does not notify the user."],
  revoke: ["Revoke approval", "Revoke", "danger", "The approval ends now, before its window is over."],
};

/** Asks for a reason and sends the decision; the updated request, or null when cancelled. */
export function decide(action, request, analysis) {
  const [title, verb, style, effect] = TEXT[action];
  const detail = request.applicationDetail || {};
  const error = h("p.error", { role: "alert", hidden: true });
  const reason = h("textarea#reason", { name: "reason", rows: 3, maxlength: 1000, "aria-describedby": "reason-help" });
  const confirm = h(`button.${style}`, { type: "submit", value: "confirm" }, verb);
  const warning = analysis && ["malicious", "suspicious"].includes(analysis.verdict)
    ? h("p.banner.banner-danger.small", {}, h("span", { "aria-hidden": "true" }, "✖ "),
      `The analysis found this file ${analysis.verdict} (risk ${analysis.riskScore}/100, recommendation: ${analysis.recommendation}).`)
    : null;
  const dialog = h("dialog.decide", { "aria-labelledby": "dialog-title", "aria-describedby": "dialog-what" },
    h("form", { method: "dialog" },
      h("h2#dialog-title", {}, title),
      h("p#dialog-what", {}, h("strong", {}, detail.fileName || "this file"), ` on ${request.deviceName || request.requestedOnDeviceId}`,
        ` for ${request.requestedByUserPrincipalName}. ${effect}`),
      warning,
      h("label", { for: "reason" }, "Reason"),
      reason,
      h("p#reason-help.sub", {}, "Kept in the audit log with your name (optional, shown to other reviewers)."),
      error,
      h("div.buttons", {}, h("button.secondary", { type: "button", value: "cancel", onclick: () => dialog.close() }, "Cancel"), confirm)));
  dialog.addEventListener("keydown", (event) => {  // keep Tab inside the dialog
    if (event.key !== "Tab") return;
    const stops = [...dialog.querySelectorAll("textarea, button:not([disabled]), a[href]")];
    const [first, last] = [stops[0], stops[stops.length - 1]];
    if (event.shiftKey && document.activeElement === first) { event.preventDefault(); last.focus(); }
    else if (!event.shiftKey && document.activeElement === last) { event.preventDefault(); first.focus(); }
  });
  const opener = document.activeElement;
  document.body.append(dialog);
  return new Promise((resolve) => {
    let result = null;
    dialog.addEventListener("close", () => { dialog.remove(); opener?.focus?.(); resolve(result); });
    dialog.querySelector("form").addEventListener("submit", async (event) => {
      event.preventDefault();
      confirm.disabled = true;
      error.hidden = true;
      try {
        result = await api(`${REQUESTS}/${request.id}/${action}`, {
          method: "POST", body: { reviewerJustification: reason.value.trim() },
          headers: request["@odata.etag"] ? { "If-Match": request["@odata.etag"] } : {},
        });
        dialog.close();
      } catch (failure) {
        error.textContent = failure.status === 412 || failure.status === 409
          ? `Another reviewer changed this request meanwhile: ${failure.message} Cancel to see its current state.`
          : failure.message;
        error.hidden = false;
        confirm.disabled = false;
      }
    });
    dialog.showModal();
    reason.focus();
  });
}
