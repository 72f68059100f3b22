-- Elevation requests. `status` is the last written state; the state at any instant also depends on
-- `valid_until` (lifecycle.effective). `version` backs the ETag.
CREATE TABLE requests.elevation_requests (
    tenant_id                   text        NOT NULL,
    id                          uuid        NOT NULL,
    requested_by_user_id        text        NOT NULL,
    requested_by_upn            text        NOT NULL DEFAULT '',
    device_id                   text        NOT NULL,
    device_name                 text        NOT NULL DEFAULT '',
    request_justification       text        NOT NULL DEFAULT '' CHECK (length(request_justification) <= 256),
    file_hash                   text        NOT NULL,
    file_name                   text        NOT NULL DEFAULT '',
    file_path                   text        NOT NULL DEFAULT '',
    file_description            text        NOT NULL DEFAULT '',
    publisher_name              text        NOT NULL DEFAULT '',
    publisher_cert              text        NOT NULL DEFAULT '',
    product_name                text        NOT NULL DEFAULT '',
    product_internal_name       text        NOT NULL DEFAULT '',
    product_version             text        NOT NULL DEFAULT '',
    status                      text        NOT NULL CHECK (status IN
                                    ('pending', 'approved', 'denied', 'expired', 'revoked', 'completed')),
    created_at                  timestamptz NOT NULL,
    modified_at                 timestamptz NOT NULL,
    valid_until                 timestamptz NOT NULL,
    reviewed_by_user_id         text        NOT NULL DEFAULT '',
    reviewed_by_upn             text        NOT NULL DEFAULT '',
    reviewed_at                 timestamptz,
    reviewer_justification      text        NOT NULL DEFAULT '' CHECK (length(reviewer_justification) <= 256),
    version                     integer     NOT NULL DEFAULT 1,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX elevation_requests_by_created ON requests.elevation_requests (tenant_id, created_at DESC, id DESC);
CREATE INDEX elevation_requests_open_by_device ON requests.elevation_requests (tenant_id, device_id, file_hash)
    WHERE status IN ('pending', 'approved');
CREATE INDEX elevation_requests_due ON requests.elevation_requests (valid_until)
    WHERE status IN ('pending', 'approved');

-- Audit trail, in the shape of Graph's auditEvent; written in the same transaction as the change.
CREATE TABLE requests.audit_events (
    tenant_id        text        NOT NULL,
    id               uuid        NOT NULL,
    at               timestamptz NOT NULL,
    activity         text        NOT NULL,           -- e.g. "Approve ElevationRequest"
    operation        text        NOT NULL,           -- Create, Patch, Delete, Action
    result           text        NOT NULL DEFAULT 'Success',
    actor_type       text        NOT NULL,           -- ItPro, Application, System
    actor_id         text        NOT NULL DEFAULT '',
    actor_upn        text        NOT NULL DEFAULT '',
    resource_type    text        NOT NULL,
    resource_id      text        NOT NULL,
    resource_name    text        NOT NULL DEFAULT '',
    old_state        text        NOT NULL DEFAULT '',
    new_state        text        NOT NULL DEFAULT '',
    reason           text        NOT NULL DEFAULT '',
    correlation_id   text        NOT NULL DEFAULT '',
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX audit_events_by_time ON requests.audit_events (tenant_id, at DESC, id DESC);

-- What devices learn: one row per decision, in commit order per tenant; NOTIFY epm_decisions on insert.
CREATE TABLE requests.decisions (
    sequence         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id        text        NOT NULL,
    device_id        text        NOT NULL,
    request_id       uuid        NOT NULL,
    file_hash        text        NOT NULL,
    status           text        NOT NULL,
    decided_at       timestamptz NOT NULL,
    valid_until      timestamptz
);
CREATE INDEX decisions_by_device ON requests.decisions (tenant_id, device_id, sequence);

CREATE FUNCTION requests.notify_decision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('epm_decisions', NEW.tenant_id || ' ' || NEW.device_id || ' ' || NEW.sequence);
    RETURN NULL;
END $$;
CREATE TRIGGER decisions_notify AFTER INSERT ON requests.decisions
    FOR EACH ROW EXECUTE FUNCTION requests.notify_decision();

-- Reviewer roles and their assignments (PIM v1 shape). Built-in roles are the same in every tenant.
CREATE TABLE requests.roles (
    id           uuid PRIMARY KEY,
    name         text   NOT NULL UNIQUE,
    permissions  text[] NOT NULL
);
INSERT INTO requests.roles (id, name, permissions) VALUES
    ('7f2d6a3c-0b1e-4c5d-9e8f-100000000001', 'Endpoint Privilege Manager',
        '{elevationRequests.view,elevationRequests.modify}'),
    ('7f2d6a3c-0b1e-4c5d-9e8f-100000000002', 'Endpoint Privilege Reader', '{elevationRequests.view}'),
    ('7f2d6a3c-0b1e-4c5d-9e8f-100000000003', 'Endpoint Security Manager',
        '{elevationRequests.view,elevationRequests.modify}'),
    ('7f2d6a3c-0b1e-4c5d-9e8f-100000000004', 'Read Only Operator', '{elevationRequests.view}');

CREATE TABLE requests.role_assignments (
    tenant_id        text        NOT NULL,
    user_id          text        NOT NULL,
    role_id          uuid        NOT NULL REFERENCES requests.roles (id),
    eligible         boolean     NOT NULL DEFAULT false,  -- held, but active only after selfActivate
    active_until     timestamptz,                          -- NULL: permanent while not eligible-only
    result_message   text        NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id, role_id)
);

-- Per-tenant policy; tenants without a row use the service defaults.
CREATE TABLE requests.tenant_policies (
    tenant_id            text     PRIMARY KEY,
    approval_window      interval NOT NULL,
    pending_ttl          interval NOT NULL,
    max_open_per_device  integer  NOT NULL CHECK (max_open_per_device > 0)
);
