// OIDC sign-in for the console: the authorization code flow with PKCE, as a public client (no secret) in the
// browser, as Entra ID's SPA platform does it. sessionStorage holds the sign-in in flight (verifier, state, nonce),
// then the access token with its expiry; both go with the tab.
// oidcConfig() -> /console/config.json; signIn(config) redirects to the issuer; completeSignIn(config) -> the access
// token on the redirect back, else null; token() -> the stored token while it lasts; signOut() forgets it.

const PENDING = "epm.oidc.pending";
const TOKEN = "epm.oidc.token";

export async function oidcConfig() {
  const response = await fetch("/console/config.json", { cache: "no-store" });
  return response.ok ? response.json() : { mode: "dev" };
}

async function discover(config) {
  const url = `${config.issuer.replace(/\/+$/, "")}/.well-known/openid-configuration`;
  const response = await fetch(url);
  if (!response.ok) throw new Error(`Sign-in failed: ${url} answered HTTP ${response.status}.`);
  return response.json();
}

const redirectUri = () => `${location.origin}/console/`;

function base64url(bytes) {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

const random = (size) => base64url(crypto.getRandomValues(new Uint8Array(size)));

// RFC 7636 S256: BASE64URL(SHA-256(verifier))
export async function challenge(verifier) {
  return base64url(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier))));
}

export async function signIn(config) {
  const { authorization_endpoint: endpoint } = await discover(config);
  const pending = { verifier: random(32), state: random(16), nonce: random(16) };
  sessionStorage.setItem(PENDING, JSON.stringify(pending));
  const url = new URL(endpoint);
  const params = {
    response_type: "code", client_id: config.clientId, redirect_uri: redirectUri(), scope: config.scopes,
    state: pending.state, nonce: pending.nonce, code_challenge: await challenge(pending.verifier),
    code_challenge_method: "S256",
  };
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
  location.assign(url);
}

function claims(jwt) {
  const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  return JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(part), (c) => c.charCodeAt(0))));
}

export async function completeSignIn(config) {
  const params = new URLSearchParams(location.search);
  if (!params.has("code") && !params.has("error")) return null;
  const pending = JSON.parse(sessionStorage.getItem(PENDING) ?? "null");
  sessionStorage.removeItem(PENDING);
  history.replaceState(null, "", location.pathname); // the code is single-use: out of the address bar and history
  if (params.has("error")) {
    const description = params.get("error_description");
    throw new Error(`Sign-in failed: ${params.get("error")}${description ? ` (${description})` : ""}.`);
  }
  if (!pending || params.get("state") !== pending.state) {
    throw new Error("Sign-in failed: the answer's state does not match this browser's sign-in (a forged or stale " +
                    "redirect). Sign in again.");
  }
  const { token_endpoint: endpoint } = await discover(config);
  const response = await fetch(endpoint, {
    method: "POST", // URLSearchParams: application/x-www-form-urlencoded
    body: new URLSearchParams({
      grant_type: "authorization_code", code: params.get("code"), code_verifier: pending.verifier,
      redirect_uri: redirectUri(), client_id: config.clientId,
    }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok || !body.access_token) {
    const reason = body.error_description ? `${body.error}: ${body.error_description}` : body.error;
    throw new Error(`Sign-in failed at the token endpoint: ${reason ?? `HTTP ${response.status}`}.`);
  }
  // received straight from the token endpoint over TLS, so the ID token's signature need not be checked here
  // (OIDC Core 3.1.3.7); its nonce ties it to this sign-in
  if (body.id_token && claims(body.id_token).nonce !== pending.nonce) {
    throw new Error("Sign-in failed: the ID token's nonce does not match this sign-in.");
  }
  const expiresAt = Date.now() + Number(body.expires_in ?? 3600) * 1000;
  sessionStorage.setItem(TOKEN, JSON.stringify({ accessToken: body.access_token, expiresAt }));
  return body.access_token;
}

export function token() {
  const stored = JSON.parse(sessionStorage.getItem(TOKEN) ?? "null");
  return stored && stored.expiresAt > Date.now() ? stored.accessToken : null;
}

export function signOut() {
  sessionStorage.removeItem(TOKEN);
  sessionStorage.removeItem(PENDING);
}
