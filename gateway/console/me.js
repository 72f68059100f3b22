// Who is signed in and what they may do: the token's claims, and the Intune rights of their active role
// assignments with the roles that grant them (GET /beta/privilegedRoleAssignments/myPermissions).

import { api, session } from "./api.js";

const MODIFY = "elevationRequests.modify";
const WRITE = ["DeviceManagementConfiguration.ReadWrite.All"];

export const me = { claims: {}, roles: [], rights: null, rolesError: "" };

export async function loadMe() {
  me.claims = session.claims() || {};
  me.roles = [];
  me.rights = null;  // null: unknown, or an application (its permission is the grant): the server decides
  me.rolesError = "";
  try {
    const mine = await api("/beta/privilegedRoleAssignments/myPermissions");
    if (mine.delegated) [me.roles, me.rights] = [mine.roles, new Set(mine.permissions)];
  } catch (error) {
    me.rolesError = error.message;
  }
}

/** Why the signed-in reviewer cannot decide `request`, or "" when they can (as far as the console knows). */
export function cannotDecide(request) {
  const scopes = String(me.claims.scp || "").split(" ");
  if (me.claims.scp && !WRITE.some((s) => scopes.includes(s))) {
    return "Your sign-in lacks the permission DeviceManagementConfiguration.ReadWrite.All, so you can only view.";
  }
  if (me.rights && !me.rights.has(MODIFY)) {
    const held = me.roles.length ? `Your role${me.roles.length > 1 ? "s" : ""}: ${me.roles.join(", ")} (view only).`
      : "You hold no Intune role.";
    return `Deciding needs the Endpoint Privilege Manager or Endpoint Security Manager role. ${held}`;
  }
  if (me.claims.oid && String(request.requestedByUserId).toLowerCase() === String(me.claims.oid).toLowerCase()) {
    return "You asked for this elevation yourself: another reviewer has to decide it.";
  }
  return "";
}
