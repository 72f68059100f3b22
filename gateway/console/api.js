// The Graph-style API of this gateway, called with the signed-in reviewer's bearer token.

const TOKEN = "epm.console.token";
export const REQUESTS = "/beta/deviceManagement/elevationRequests";
export const AUDIT = "/beta/deviceManagement/auditEvents";
export const DEVICES = "/beta/deviceManagement/managedDevices";
export const ELEVATIONS = "/beta/deviceManagement/privilegeManagementElevations";
export const AUDIT_STREAM = "/beta/security/epm/auditEvents/stream";

export const session = {
  get token() { return sessionStorage.getItem(TOKEN); },
  set(token) { sessionStorage.setItem(TOKEN, token.trim()); },
  clear() { sessionStorage.clear(); },
  /** The token's claims (oid, upn, scp, exp, ...), or null when it is no JWT. */
  claims(token = this.token) {
    try {
      const part = token.split(".")[1].replaceAll("-", "+").replaceAll("_", "/");
      return JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(part), (c) => c.charCodeAt(0))));
    } catch { return null; }
  },
};

export class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

export function authorization() { return { Authorization: `Bearer ${session.token}` }; }

// The console knows every status by name, revoked and completed too (Graph shows members added after
// unknownFutureValue only to clients that say so).
const PREFER = { Prefer: "include-unknown-enum-members" };

/** fetch() a gateway path (or a same-origin @odata.nextLink); JSON or text back, a Graph error as ApiError. */
export async function api(path, { method = "GET", body, headers = {}, signal } = {}) {
  const url = path.startsWith("http") ? new URL(path).pathname + new URL(path).search : path;
  const response = await fetch(url, {
    method, signal, cache: "no-store",
    headers: { ...authorization(), ...PREFER, ...(body === undefined ? {} : { "Content-Type": "application/json" }),
      ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw await apiError(response);
  if (response.status === 204) return null;
  return (response.headers.get("Content-Type") || "").includes("json") ? response.json() : response.text();
}

export async function apiError(response) {
  let code = String(response.status), message = response.statusText || `HTTP ${response.status}`;
  try { ({ code, message } = (await response.json()).error); } catch { /* not a Graph error body */ }
  if (response.status === 401) window.dispatchEvent(new CustomEvent("epm:unauthorized", { detail: message }));
  return new ApiError(response.status, code, message);
}

/** path?$name=value for every option that has a value. */
export function odata(path, options) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(options)) if (value !== "" && value != null) query.set(name, value);
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

export const quote = (text) => `'${String(text).replaceAll("'", "''")}'`;
export const count = async (path, filter) => Number(await api(odata(`${path}/$count`, { $filter: filter })));
