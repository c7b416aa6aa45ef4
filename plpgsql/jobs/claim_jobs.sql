-- claim_jobs(p_worker, p_queues, p_limit, p_lease_seconds, p_now): take up to
-- p_limit due jobs of the given queues, highest priority first, then first due.
-- Locks: the claimed rows (FOR UPDATE SKIP LOCKED: claimers never wait on each other).
-- Transitions: pending/retrying -> running; attempts and claims +1, the claim records
-- the worker and a lease deadline that extend_leases renews.
CREATE OR REPLACE FUNCTION {{schema}}.claim_jobs(
    p_worker text,
    p_queues text[],
    p_limit integer,
    p_lease_seconds double precision,
    p_now timestamptz DEFAULT now()
)
RETURNS TABLE (
    id uuid, claims integer, func text, kwargs jsonb, timeout_seconds double precision,
    attempts integer, max_attempts integer
)
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY
    WITH picked AS (
        SELECT c.id
        FROM {{schema}}.jobs AS c
        WHERE c.state IN ('pending', 'retrying')
          AND c.queue = ANY (p_queues)
          AND c.scheduled_at <= p_now
        ORDER BY c.priority DESC, c.scheduled_at, c.id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE {{schema}}.jobs AS j
    SET state = 'running',
        attempts = j.attempts + 1,
        claims = j.claims + 1,
        worker_id = p_worker,
        started_at = p_now,
        lease_expires_at = p_now + make_interval(secs => p_lease_seconds)
    FROM picked
    WHERE j.id = picked.id
    RETURNING j.id, j.claims, j.func, j.kwargs, j.timeout_seconds, j.attempts, j.max_attempts;
END;
$fn$;

COMMENT ON FUNCTION {{schema}}.claim_jobs(text, text[], integer, double precision, timestamptz) IS
    'Claim up to p_limit due jobs of p_queues for p_worker (SKIP LOCKED).';
