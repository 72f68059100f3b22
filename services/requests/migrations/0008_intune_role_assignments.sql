-- Reviewer rights the Intune way (deviceManagement/roleAssignments): an assignment binds a built-in role to its
-- members. Its members hold the role as a permanent PIM assignment would: requests.role_holders is every holding,
-- of either kind, in the columns the permission query reads.
ALTER TABLE requests.roles ADD COLUMN description text NOT NULL DEFAULT '';
UPDATE requests.roles SET description = CASE name
    WHEN 'Endpoint Privilege Manager' THEN 'Views, approves and denies Endpoint Privilege Management elevation requests.'
    WHEN 'Endpoint Privilege Reader' THEN 'Views Endpoint Privilege Management elevation requests.'
    WHEN 'Endpoint Security Manager' THEN 'Manages endpoint security, including Endpoint Privilege Management elevation requests.'
    WHEN 'Read Only Operator' THEN 'Views Intune data, including Endpoint Privilege Management elevation requests.'
    ELSE description END;

CREATE TABLE requests.intune_role_assignments (
    tenant_id           text        NOT NULL,
    id                  uuid        NOT NULL,
    role_id             uuid        NOT NULL REFERENCES requests.roles (id),
    display_name        text        NOT NULL,
    description         text        NOT NULL DEFAULT '',
    members             text[]      NOT NULL DEFAULT '{}',  -- lowercase Entra ID object ids
    scope_members       text[]      NOT NULL DEFAULT '{}',
    resource_scopes     text[]      NOT NULL DEFAULT '{}',
    role_scope_tag_ids  text[]      NOT NULL DEFAULT '{0}',
    created_at          timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE VIEW requests.role_holders AS
    SELECT tenant_id, user_id, role_id, eligible, active_until FROM requests.role_assignments
    UNION ALL
    SELECT a.tenant_id, m.user_id, a.role_id, false, NULL::timestamptz
    FROM requests.intune_role_assignments a CROSS JOIN LATERAL unnest(a.members) AS m (user_id);
