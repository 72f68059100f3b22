-- The audit trail is also the change feed (services/common/feed.py): subscriptions' notifications and the SIEM
-- stream read it in commit order from a cursor. Rows that existed before this migration share its txid.
ALTER TABLE requests.audit_events ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX audit_events_feed ON requests.audit_events (tenant_id, txid, id);
