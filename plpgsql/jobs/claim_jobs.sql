-- claim_jobs(p_worker, p_queues, p_limit, p_lease_seconds, p_now): take up to
-- p_limit due jobs of the given queues, highest priority first, then first due; jobs
-- due at the same moment go workflow by workflow (see sql/0009), then by id.
-- Reads the due jobs of each priority that has waiting jobs, never the jobs
-- scheduled for later (at most one statement per such priority).
-- Locks: the claimed rows (FOR UPDATE SKIP LOCKED: claimers never wait on each other),
-- and a workflow row when its first step starts.
-- Transitions: pending/retrying -> running; attempts and claims +1, the claim records
-- the worker and a lease deadline that extend_leases renews. A workflow goes
-- pending -> running with its first step; the step's own row is left as it is (a
-- running step is told by its job: see worker/queries.py, STEP_STATE).
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
-- the hot path's planner settings; complete_jobs.sql says why
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
AS $fn$
DECLARE
    v_queues text[] := ARRAY(SELECT DISTINCT unnest(p_queues));
    v_left integer := p_limit;
    v_priority integer;
    v_bound integer := 2147483647;  -- priorities still to look at: <= v_bound
    v_claimed integer;
BEGIN
    -- Priority by priority, best first. Within one priority jobs_claimable is
    -- ordered by scheduled_at, so the due jobs are a range the scan leaves at the
    -- first job not yet due. (Ordered by priority and then scheduled_at across
    -- priorities, a claim that found fewer due jobs than it wanted read every job
    -- scheduled for later: 100,000 of them made every claim slow.)
    LOOP
        -- the best priority at or below v_bound that has waiting jobs: one index
        -- probe per queue
        SELECT max(x.priority) INTO v_priority
        FROM unnest(v_queues) AS q(queue)
        CROSS JOIN LATERAL (
            SELECT c.priority
            FROM {{schema}}.jobs AS c
            WHERE c.state IN ('pending', 'retrying')
              AND c.queue = q.queue
              AND c.priority <= v_bound
            ORDER BY c.priority DESC
            LIMIT 1
        ) AS x;
        EXIT WHEN v_priority IS NULL;

        RETURN QUERY
        -- each queue's first due jobs of this priority, then the first of those
        -- across queues. Rows locked in one queue but beaten by another queue's
        -- are released at commit, unchanged.
        WITH picked AS (
            SELECT c.ctid
            FROM unnest(v_queues) AS q(queue)
            CROSS JOIN LATERAL (
                SELECT c.ctid, c.scheduled_at, c.workflow_id, c.id
                FROM {{schema}}.jobs AS c
                WHERE c.state IN ('pending', 'retrying')
                  AND c.queue = q.queue
                  AND c.priority = v_priority
                  AND c.scheduled_at <= p_now
                ORDER BY c.scheduled_at, c.workflow_id, c.id
                LIMIT v_left
                FOR UPDATE SKIP LOCKED
            ) AS c
            ORDER BY c.scheduled_at, c.workflow_id, c.id
            LIMIT v_left
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
            -- the rows locked above, by their physical address (they cannot move
            -- while we hold them)
            WHERE j.ctid = picked.ctid
            RETURNING j.id, j.claims, j.func, j.kwargs, j.timeout_seconds, j.attempts,
                      j.max_attempts, j.workflow_id
        ),
        -- a workflow goes pending -> running with the claim of its first step. The
        -- step rows are not written: while a step's job runs, readers take "running"
        -- and the start from the job (complete_jobs writes the start to the step
        -- with the outcome), which spares a write of every step at every claim.
        -- "= ANY (ARRAY(...))": one primary-key descent per workflow, and a workflow
        -- that runs already is only read; as a join the planner read the whole
        -- index (100,000 idle workflows: 100,000 rows read per claim)
        started AS (
            UPDATE {{schema}}.workflows AS w
            SET state = 'running', updated_at = p_now
            WHERE w.id = ANY (ARRAY(SELECT DISTINCT c.workflow_id FROM claimed AS c
                                    WHERE c.workflow_id IS NOT NULL))
              AND w.state = 'pending'
        )
        SELECT c.id, c.claims, c.func, c.kwargs, c.timeout_seconds, c.attempts,
               c.max_attempts
        FROM claimed AS c;

        GET DIAGNOSTICS v_claimed = ROW_COUNT;
        v_left := v_left - v_claimed;
        EXIT WHEN v_left <= 0 OR v_priority = -2147483648;
        v_bound := v_priority - 1;
    END LOOP;
END;
$fn$;

COMMENT ON FUNCTION {{schema}}.claim_jobs(text, text[], integer, double precision, timestamptz) IS
    'Claim up to p_limit due jobs of p_queues for p_worker (SKIP LOCKED).';
