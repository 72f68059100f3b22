-- A tenant's Endpoint Privilege Management provisioning (enableEndpointPrivilegeManagement); no row: not enabled.
CREATE TABLE requests.epm_provisioning (
    tenant_id   text        PRIMARY KEY,
    enabled_at  timestamptz NOT NULL
);
