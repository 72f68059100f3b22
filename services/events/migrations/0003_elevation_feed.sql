-- Elevation events are also a change feed (services/common/feed.py): the SIEM stream reads them in commit order
-- from a cursor. Ingest leaves txid to its default (a re-sent event inserts nothing, so it is not sent again);
-- an update sets it anew, so a changed event is sent again. Rows older than this migration share its txid.
-- Both reach every partition, present and future.
ALTER TABLE events.elevations ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX elevations_feed ON events.elevations (tenant_id, txid, id);
