// The console: sign-in (a pasted token in dev mode, OIDC at the configured issuer in production), then the
// requests list with its detail panel and the reports, routed by the URL's hash (#/requests, #/requests/{id},
// #/reports), kept current by the audit feed.

import { api, REQUESTS, session } from "./api.js";
import { RequestDetail } from "./detail.js";
import { $, h } from "./dom.js";
import { watch } from "./live.js";
import { loadMe, me } from "./me.js";
import * as oidc from "./oidc.js";
import { renderReports } from "./reports.js";
import { RequestList } from "./requests.js";

const LIVE = { live: "● Live", reconnecting: "Reconnecting…", off: "Live updates off" };
let config = { mode: "dev" };
let list = null, detail = null, unwatch = null;

async function start() {
  config = await oidc.oidcConfig();
  if (config.mode === "oidc") {
    try {
      const token = (await oidc.completeSignIn(config)) ?? oidc.token();
      if (token) session.set(token);
    } catch (error) {
      return signInScreen(error.message);
    }
  }
  const claims = session.token && session.claims();
  if (!claims) return signInScreen();
  if (claims.exp && claims.exp * 1000 <= Date.now()) return signInScreen("Your token has expired. Sign in again.");
  await enter();
}

function signInScreen(message = "") {
  leave();
  const root = $("#sign-in");
  const error = h("p.error", { role: "alert", hidden: !message }, message);
  if (config.mode === "oidc") {
    root.replaceChildren(h("h1#sign-in-title", {}, "Sign in to review elevation requests"),
      h("p", {}, `You sign in at ${new URL(config.issuer).host}.`), error,
      h("button.primary", { type: "button", onclick: () => oidc.signIn(config).catch((e) => {
        error.textContent = e.message;
        error.hidden = false;
      }) }, "Sign in"));
  } else {
    const token = h("textarea#token", { name: "token", rows: 5, required: true, spellcheck: "false",
                                        autocomplete: "off", "aria-describedby": "token-help" });
    root.replaceChildren(h("h1#sign-in-title", {}, "Sign in to review elevation requests"),
      h("form", { onsubmit: (event) => { event.preventDefault(); pasted(token.value, error); } },
        h("label", { for: "token" }, "Access token"), token,
        h("p#token-help.sub", {}, "Development mode: paste a bearer token, e.g. from ",
          h("code", {}, "epm token"), " (it prints one)."),
        error, h("button.primary", { type: "submit" }, "Sign in")));
  }
  root.hidden = false;
  root.querySelector("textarea, button")?.focus();
}

async function pasted(text, error) {
  session.set(text.replace(/^bearer\s+/i, ""));
  try {
    await api(`${REQUESTS}?$top=1&$select=id`);
  } catch (failure) {
    if (failure.status === 403) return enter();  // a valid sign-in without a role: the console says what is missing
    session.clear();
    error.textContent = `This token was refused: ${failure.message}`;
    error.hidden = false;
    return;
  }
  await enter();
}

async function enter() {
  $("#sign-in").hidden = true;
  await loadMe();
  const { upn, preferred_username: name, appid, azp } = me.claims;
  $("#who").replaceChildren(h("strong", {}, upn || name || `application ${appid || azp || ""}`),
    me.roles.length ? h("span.sub", {}, ` · ${me.roles.join(", ")}`) : null);
  $(".top").hidden = false;
  list = new RequestList($("#list"), { onOpen: (id) => { location.hash = `#/requests/${id}`; } });
  detail = new RequestDetail($("#detail"), {
    onChanged: (id) => list.changed([id], false),
    onClose: () => { location.hash = "#/requests"; },
  });
  unwatch = watch(changed, (state, why = "") => {
    $("#live").textContent = LIVE[state];
    $("#live").title = why;
    $("#live").dataset.state = state;
  });
  await Promise.all([list.reload(), route()]);
}

function leave() {
  unwatch?.();
  detail?.close();
  unwatch = list = detail = null;
  $(".top").hidden = true;
  for (const id of ["#requests-view", "#reports-view"]) $(id).hidden = true;
}

/** Another reviewer (or this one) changed requests: refresh the rows on screen, the counts and the open request. */
function changed(ids, created) {
  list?.changed(ids, created);
  if (detail?.id && ids.includes(detail.id) && !document.querySelector("dialog[open]")) detail.open(detail.id);
}

async function route() {
  if (!list) return;
  const [, view = "requests", id] = location.hash.match(/^#\/(requests|reports)(?:\/([\w-]+))?/) || [];
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.view === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  $("#requests-view").hidden = view !== "requests";
  $("#reports-view").hidden = view !== "reports";
  if (view === "reports") return renderReports($("#reports-view"));
  list.select(id || null);
  if (!id) return detail.close();
  await detail.open(id);
  $("#detail-title")?.focus();
}

window.addEventListener("hashchange", route);
window.addEventListener("epm:unauthorized", (event) => {
  if (list) signInScreen(`Your sign-in is no longer accepted (${event.detail}). Sign in again.`);
});
$("#sign-out").addEventListener("click", () => {
  session.clear();
  oidc.signOut();
  signInScreen();
});
start();
