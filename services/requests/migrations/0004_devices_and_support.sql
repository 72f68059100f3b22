-- The managed device inventory (Graph managedDevice, a subset). `id` is the Intune device id that elevation
-- events carry as deviceId and requests as requestedOnDeviceId. A device is registered through the API
-- (source 'api') or seen in elevation events ('elevationEvents'); events never overwrite what an admin set.
-- Dates never known are -infinity, so every sort key is NOT NULL (the API shows them as null).
CREATE TABLE requests.managed_devices (
    tenant_id              text        NOT NULL,
    id                     uuid        NOT NULL,
    device_name            text        NOT NULL DEFAULT '',
    operating_system       text        NOT NULL DEFAULT '',
    os_version             text        NOT NULL DEFAULT '',
    compliance_state       text        NOT NULL DEFAULT 'unknown' CHECK (compliance_state IN
                               ('unknown', 'compliant', 'noncompliant', 'conflict', 'error', 'inGracePeriod',
                                'configManager')),
    azure_ad_device_id     text        NOT NULL DEFAULT '',
    user_principal_name    text        NOT NULL DEFAULT '',
    user_id                text        NOT NULL DEFAULT '',
    enrolled_date_time     timestamptz NOT NULL DEFAULT '-infinity',
    last_sync_date_time    timestamptz NOT NULL DEFAULT '-infinity',
    serial_number          text        NOT NULL DEFAULT '',
    model                  text        NOT NULL DEFAULT '',
    manufacturer           text        NOT NULL DEFAULT '',
    source                 text        NOT NULL CHECK (source IN ('api', 'elevationEvents')),
    created_at             timestamptz NOT NULL,
    last_seen_at           timestamptz,  -- the latest elevation event reported from it
    PRIMARY KEY (tenant_id, id)
);
-- The MMD API names devices: case-insensitive lookups by name.
CREATE INDEX managed_devices_by_name ON requests.managed_devices (tenant_id, lower(device_name));

-- MMD support requests are elevation requests too ('mmd'; Graph's are 'graph'), with the ticket's fields. They
-- have no file (file_hash ''); their requester is the support agent (requested_by_*).
ALTER TABLE requests.elevation_requests
    ADD COLUMN source              text NOT NULL DEFAULT 'graph' CHECK (source IN ('graph', 'mmd')),
    ADD COLUMN partner_ticket_id   text NOT NULL DEFAULT '',
    ADD COLUMN title               text NOT NULL DEFAULT '',
    ADD COLUMN category            text NOT NULL DEFAULT '',
    ADD COLUMN subcategory         text NOT NULL DEFAULT '',
    ADD COLUMN plan_of_action      text NOT NULL DEFAULT '',
    ADD COLUMN actions_taken       text NOT NULL DEFAULT '',
    ADD COLUMN closing_agent_upn   text NOT NULL DEFAULT '';
CREATE INDEX elevation_requests_mmd_by_created ON requests.elevation_requests (tenant_id, created_at DESC, id DESC)
    WHERE source = 'mmd';
