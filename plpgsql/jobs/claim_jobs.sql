-- claim_jobs(p_worker, p_queues, p_limit, p_lease_seconds, p_now): take up to
-- p_limit due jobs of the given queues, highest priority first, then first due.
-- Locks: the claimed rows (FOR UPDATE SKIP LOCKED: claimers never wait on each other),
-- their workflow steps, and a workflow row when its first step starts.
-- Transitions: pending/retrying -> running; attempts and claims +1, the claim records
-- the worker and a lease deadline that extend_leases renews. A workflow step's state
-- follows its job's; its workflow goes pending -> running with its first step.
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
SET plan_cache_mode = force_generic_plan
AS $fn$
BEGIN
    RETURN QUERY
    -- each queue's best jobs straight from jobs_claimable in its order (the index
    -- stops after p_limit; "queue = ANY" made PostgreSQL sort every due job of the
    -- queues on each claim), then the best of those across queues. Rows locked
    -- in a queue but beaten by another queue's are released at commit, unchanged.
    WITH picked AS (
        SELECT c.id
        FROM (SELECT DISTINCT unnest(p_queues)) AS q(queue)
        CROSS JOIN LATERAL (
            SELECT c.id, c.priority, c.scheduled_at
            FROM {{schema}}.jobs AS c
            WHERE c.state IN ('pending', 'retrying')
              AND c.queue = q.queue
              AND c.scheduled_at <= p_now
            ORDER BY c.priority DESC, c.scheduled_at, c.id
            LIMIT p_limit
            FOR UPDATE SKIP LOCKED
        ) AS c
        ORDER BY c.priority DESC, c.scheduled_at, c.id
        LIMIT p_limit
    ),
    claimed AS (
        UPDATE {{schema}}.jobs AS j
        SET state = 'running',
            attempts = j.attempts + 1,
            claims = j.claims + 1,
            worker_id = p_worker,
            started_at = p_now,
            lease_expires_at = p_now + make_interval(secs => p_lease_seconds)
        FROM picked
        WHERE j.id = picked.id
        RETURNING j.id, j.claims, j.func, j.kwargs, j.timeout_seconds, j.attempts,
                  j.max_attempts, j.workflow_id, j.step_id
    ),
    -- workflow steps follow their jobs; a workflow starts running with its first step
    steps AS (
        UPDATE {{schema}}.workflow_steps AS s
        SET state = 'running', started_at = coalesce(s.started_at, p_now)
        FROM claimed AS c
        WHERE c.workflow_id IS NOT NULL
          AND s.workflow_id = c.workflow_id AND s.step_id = c.step_id
        RETURNING s.workflow_id
    ),
    started AS (
        UPDATE {{schema}}.workflows AS w
        SET state = 'running', updated_at = p_now
        WHERE w.state = 'pending' AND w.id IN (SELECT st.workflow_id FROM steps AS st)
    )
    SELECT c.id, c.claims, c.func, c.kwargs, c.timeout_seconds, c.attempts, c.max_attempts
    FROM claimed AS c;
END;
$fn$;

COMMENT ON FUNCTION {{schema}}.claim_jobs(text, text[], integer, double precision, timestamptz) IS
    'Claim up to p_limit due jobs of p_queues for p_worker (SKIP LOCKED).';
