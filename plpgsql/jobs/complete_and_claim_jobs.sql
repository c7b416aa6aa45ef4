-- complete_and_claim_jobs(p_worker, p_outcomes, p_queues, p_limit, p_lease_seconds,
-- p_workflow_batch, p_now): claim_jobs, then complete_jobs, in one transaction.
--
-- A worker process that reports finished jobs usually has free slots for new ones,
-- and the jobs it would claim next are often the very steps its completions make
-- ready (complete_jobs advances their workflows in the same transaction). One
-- round trip and one commit instead of two: a chain's next step is claimed in the
-- transaction that finished the step before it.
-- Order: first claim_jobs, for up to p_limit of the jobs already waiting; when it
-- comes back short, no due job waits in p_queues, and complete_jobs hands the
-- slots left to the steps its completions make ready: their jobs are created
-- already claimed for p_worker (claim_jobs would have taken them next), which
-- spares each a second write.
-- Locks and transitions: those of claim_jobs, then those of complete_jobs
-- (p_limit 0 claims nothing).
-- Returns the claimed jobs (claimed, then handed off), as claim_jobs does.
CREATE OR REPLACE FUNCTION {{schema}}.complete_and_claim_jobs(
    p_worker text,
    p_outcomes jsonb,
    p_queues text[],
    p_limit integer,
    p_lease_seconds double precision,
    p_workflow_batch integer DEFAULT 1000,
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
    v_claimed integer := 0;
    v_handed uuid[];
BEGIN
    IF p_limit > 0 THEN
        RETURN QUERY
        SELECT * FROM {{schema}}.claim_jobs(p_worker, p_queues, p_limit, p_lease_seconds, p_now);
        GET DIAGNOSTICS v_claimed = ROW_COUNT;
    END IF;

    SELECT coalesce(array_agg(c.id) FILTER (WHERE c.state = 'running'), '{}') INTO v_handed
    FROM {{schema}}.complete_jobs(
        p_worker, p_outcomes, p_now, p_workflow_batch,
        p_queues, greatest(p_limit - v_claimed, 0), p_lease_seconds
    ) AS c;

    IF cardinality(v_handed) > 0 THEN
        RETURN QUERY
        SELECT j.id, j.claims, j.func, j.kwargs, j.timeout_seconds, j.attempts, j.max_attempts
        FROM {{schema}}.jobs AS j
        WHERE j.id = ANY (v_handed);
    END IF;
END;
$fn$;

COMMENT ON FUNCTION {{schema}}.complete_and_claim_jobs(
    text, jsonb, text[], integer, double precision, integer, timestamptz
) IS 'claim_jobs, then complete_jobs (handing the slots left to the steps it makes ready), in one transaction.';
