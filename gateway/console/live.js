// Live changes from the audit feed (GET /beta/security/epm/auditEvents/stream: JSON lines from a cursor),
// read with fetch() and a ReadableStream: no polling. A new tab starts at "latest" (what it shows is fresh);
// a reloaded one first reads what changed since its last cursor (one pass, follow=false), then follows. Every
// batch of request events is reported as onChange(ids, created). After a broken stream it resumes from the last
// cursor, backing off between attempts.

import { apiError, AUDIT_STREAM, authorization } from "./api.js";

const CURSOR = "epm.console.auditCursor";

export function watch(onChange, onState) {
  const controller = new AbortController();
  let cursor = sessionStorage.getItem(CURSOR) || "latest";

  async function read(follow) {
    const response = await fetch(`${AUDIT_STREAM}?cursor=${encodeURIComponent(cursor)}&follow=${follow}`,
      { headers: authorization(), signal: controller.signal, cache: "no-store" });
    if (!response.ok) throw await apiError(response);
    if (follow) onState("live");
    const lines = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let rest = "";
    for (;;) {
      const { value, done } = await lines.read();
      if (done) return;
      const parts = (rest + value).split("\n");
      rest = parts.pop();
      const ids = new Set();
      let created = false;
      for (const line of parts.filter(Boolean)) {
        const item = JSON.parse(line);
        if (item.error) throw new Error(item.error.message);
        cursor = item.cursor;
        const resource = item.event?.resources?.[0];
        if (resource?.type === "ElevationRequest") {
          ids.add(resource.resourceId);
          created ||= item.event.activityOperationType === "Create";
        }
      }
      sessionStorage.setItem(CURSOR, cursor);
      if (ids.size) onChange([...ids], created);
    }
  }

  (async () => {
    let wait = 1000;
    for (;;) {
      try {
        await read(false);  // the backlog: rows on screen that changed while we were away
        await read(true);   // until the token expires or the server stops: then resume
        wait = 1000;
      } catch (error) {
        if (controller.signal.aborted) return;
        if (error.status === 401 || error.status === 403) { onState("off", error.message); return; }
        onState("reconnecting", error.message);
      }
      await new Promise((resolve) => setTimeout(resolve, wait));  // back off before redialling, not a poll
      wait = Math.min(wait * 2, 30000);
    }
  })();
  return () => controller.abort();
}
