-- Elevation events, partitioned by month of event time; partitions are created on demand and
-- dropped by the retention sweep. Strings store '' for "none" so every sort key is NOT NULL.
CREATE TABLE events.elevations (
    tenant_id                   text        NOT NULL,
    id                          uuid        NOT NULL,
    device_id                   text        NOT NULL,
    device_name                 text        NOT NULL DEFAULT '',
    event_date_time             timestamptz NOT NULL,
    elevation_type              text        NOT NULL,
    file_path                   text        NOT NULL DEFAULT '',
    upn                         text        NOT NULL DEFAULT '',
    user_type                   text        NOT NULL,
    product_name                text        NOT NULL DEFAULT '',
    company_name                text        NOT NULL DEFAULT '',
    file_version                text        NOT NULL DEFAULT '',
    internal_name               text        NOT NULL DEFAULT '',
    file_description            text        NOT NULL DEFAULT '',
    justification               text        NOT NULL DEFAULT '' CHECK (length(justification) <= 256),
    hash                        text        NOT NULL,
    certificate_payload         text        NOT NULL DEFAULT '',
    result                      integer     NOT NULL DEFAULT 0 CHECK (result >= 0),
    process_type                text        NOT NULL,
    rule_id                     text        NOT NULL DEFAULT '',
    policy_id                   text        NOT NULL DEFAULT '',
    policy_name                 text        NOT NULL DEFAULT '',
    parent_process_name         text        NOT NULL DEFAULT '',
    system_initiated_elevation  boolean     NOT NULL DEFAULT false,
    recorded_at                 timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, event_date_time, id)
) PARTITION BY RANGE (event_date_time);

CREATE INDEX elevations_by_id ON events.elevations (tenant_id, id);
CREATE INDEX elevations_by_hash ON events.elevations (tenant_id, hash, event_date_time);
