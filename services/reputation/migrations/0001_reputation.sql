-- Imported feeds. tenant_id '' marks a feed every tenant shares; a tenant's own lists carry its id.
-- `version` is the one readers see; an import writes version + 1 beside it and switches when done (rows of
-- any other version are leftovers of an import that died, and the next import drops them).
CREATE TABLE reputation.feeds (
    tenant_id       text        NOT NULL,
    name            text        NOT NULL,
    format          text        NOT NULL,
    version         integer     NOT NULL DEFAULT 0,   -- 0: nothing imported yet
    source_version  text        NOT NULL DEFAULT '',
    records         bigint      NOT NULL DEFAULT 0,
    keys            bigint      NOT NULL DEFAULT 0,
    problem_count   bigint      NOT NULL DEFAULT 0,
    digest          text        NOT NULL DEFAULT '',
    imported_at     timestamptz,
    PRIMARY KEY (tenant_id, name)
);

-- What the feeds say, one row per lookup key: a hash (sha256, sha1, md5, authentihash), a lowercased file
-- name, or a certificate's TBS SHA-256. Keys are lowercase hex or lowercase names. `source` is the answer itself:
-- the serialized epm.reputation.v1.SourceMatch the service returns for this key (feed, version, name, title,
-- reference, tags), written once at import so that a lookup only reads it back.
CREATE TABLE reputation.entries (
    key         text     NOT NULL,
    tenant_id   text     NOT NULL,
    feed        text     NOT NULL,
    version     integer  NOT NULL,
    kind        text     NOT NULL CHECK (kind IN ('sha256', 'sha1', 'md5', 'authentihash', 'fileName', 'certificate')),
    label       text     NOT NULL CHECK (label IN
                    ('knownGood', 'malicious', 'vulnerableDriver', 'dualUse', 'maliciousSigner', 'allowed', 'blocked')),
    source      bytea    NOT NULL
);
-- Lookups come by key (high selectivity), then filter by tenant ('' and the caller's).
CREATE INDEX entries_by_key ON reputation.entries (key, tenant_id);
-- Dropping a superseded version.
CREATE INDEX entries_by_feed ON reputation.entries (tenant_id, feed, version);

-- A tenant's trusted and blocked publishers: by certificate thumbprint or by name (stored lowercased).
CREATE TABLE reputation.publisher_rules (
    tenant_id     text        NOT NULL,
    id            uuid        NOT NULL,
    kind          text        NOT NULL CHECK (kind IN ('certificate', 'publisherName')),
    value         text        NOT NULL,
    blocked       boolean     NOT NULL,
    display_name  text        NOT NULL DEFAULT '',
    note          text        NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, kind, value)
);
