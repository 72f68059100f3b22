-- The lists reviewers ask for most, from tenants with millions of requests (bench/reads.py, EXPLAIN there):
-- the open requests newest first (status eq 'pending' / 'approved' compile to conditions this partial index
-- serves), and one requester's requests.
CREATE INDEX elevation_requests_open_by_created ON requests.elevation_requests (tenant_id, created_at DESC, id DESC)
    WHERE status IN ('pending', 'approved');
CREATE INDEX elevation_requests_by_upn ON requests.elevation_requests (tenant_id, requested_by_upn, created_at DESC);
