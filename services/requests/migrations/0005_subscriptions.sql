-- Change notification subscriptions (Graph `subscription`). Each one reads the audit trail (the outbox) as a
-- feed from its own cursor (services/common/feed.py); delivery state lives on the row.
CREATE TABLE requests.subscriptions (
    tenant_id         text        NOT NULL,
    id                uuid        NOT NULL,
    creator_id        text        NOT NULL,           -- the user's or the application's object id
    application_id    text        NOT NULL DEFAULT '',
    resource          text        NOT NULL,
    filter            text        NOT NULL DEFAULT '', -- the resource's $filter
    change_types      text[]      NOT NULL,
    notification_url  text        NOT NULL,
    client_state      text        NOT NULL DEFAULT '' CHECK (length(client_state) <= 128),
    expires_at        timestamptz NOT NULL,
    created_at        timestamptz NOT NULL,
    cursor_txid       xid8        NOT NULL,           -- the last change delivered (or skipped by the filter)
    cursor_id         uuid        NOT NULL,
    paused_reason     text        NOT NULL DEFAULT '', -- '' while delivery is active
    failed_attempts   integer     NOT NULL DEFAULT 0,
    last_error        text        NOT NULL DEFAULT '',
    last_delivered_at timestamptz,
    next_attempt_at   timestamptz NOT NULL,
    version           integer     NOT NULL DEFAULT 1,  -- every update: a delivery in flight writes only its own
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX subscriptions_due ON requests.subscriptions (next_attempt_at) WHERE paused_reason = '';
CREATE INDEX subscriptions_by_expiry ON requests.subscriptions (expires_at);
