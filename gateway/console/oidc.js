// OIDC sign-in for the console (owned by the OIDC work; this is the stub the console builds on).
// CONTRACT: oidcConfig() -> the gateway's /console/config.json ({"mode": "dev"} or {"mode": "oidc", ...});
// signIn(config) redirects to the issuer; completeSignIn(config) -> the access token on the redirect back, or null.

export async function oidcConfig() {
  const response = await fetch("/console/config.json", { cache: "no-store" });
  return response.ok ? response.json() : { mode: "dev" };
}

export async function signIn(config) {
  throw new Error(`OIDC sign-in is not implemented yet (issuer ${config.issuer ?? "unset"})`);
}

export async function completeSignIn(config) {
  return null;
}
