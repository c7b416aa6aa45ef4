-- complete_and_claim_jobs(p_worker, p_outcomes, p_queues, p_limit, p_lease_seconds,
-- p_workflow_batch, p_now): complete_jobs, then claim_jobs, in one transaction.
--
-- A worker process that reports finished jobs usually has free slots for new ones,
-- and the jobs it would claim next are often the very steps its completions just
-- made ready (complete_jobs advances their workflows in the same transaction). One
-- round trip and one commit instead of two: a chain's next step is claimed in the
-- transaction that finished the step before it.
-- Locks and transitions: those of complete_jobs, then those of claim_jobs
-- (p_limit 0 claims nothing).
-- Returns the claimed jobs, as claim_jobs does.
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
BEGIN
    PERFORM FROM {{schema}}.complete_jobs(p_worker, p_outcomes, p_now, p_workflow_batch);
    IF p_limit > 0 THEN
        RETURN QUERY
        SELECT * FROM {{schema}}.claim_jobs(p_worker, p_queues, p_limit, p_lease_seconds, p_now);
    END IF;
END;
$fn$;

COMMENT ON FUNCTION {{schema}}.complete_and_claim_jobs(
    text, jsonb, text[], integer, double precision, integer, timestamptz
) IS 'complete_jobs then claim_jobs in one transaction (one round trip per batch).';
