-- The reputation service's verdict on each request, attached after creation (best effort: '' until then).
ALTER TABLE requests.elevation_requests
    ADD COLUMN verdict          text        NOT NULL DEFAULT '',
    ADD COLUMN risk_score       smallint,
    ADD COLUMN recommendation   text        NOT NULL DEFAULT '',
    ADD COLUMN app_reputation   text        NOT NULL DEFAULT '',
    ADD COLUMN analyzed_at      timestamptz;

-- A user's and a device's request history (GetRequestHistory, for risk scoring).
CREATE INDEX elevation_requests_by_user ON requests.elevation_requests (tenant_id, requested_by_user_id, created_at);
CREATE INDEX elevation_requests_by_device ON requests.elevation_requests (tenant_id, device_id, created_at);
