-- _sync_steps(p_job_ids, p_now): after jobs changed state outside the hot paths
-- (recover_jobs, cancel_job), make their workflow steps follow, and queue an event
-- for each step that reached a final state. (complete_jobs does the same inline, in
-- its single statement; a claim does not write the step, see claim_jobs.)
-- Locks: the steps it updates.
-- Transitions: step state := its job's state; the step keeps its first start.
-- Returns the number of events queued; notifies <schema>.workflows when any, so that
-- a worker process advances those workflows.
CREATE OR REPLACE FUNCTION {{schema}}._sync_steps(p_job_ids uuid[], p_now timestamptz)
RETURNS integer
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_events integer;
BEGIN
    WITH steps AS (
        UPDATE {{schema}}.workflow_steps AS s
        SET state = j.state,
            started_at = coalesce(s.started_at, j.started_at),
            completed_at = CASE WHEN j.state IN ('succeeded', 'failed', 'cancelled') THEN p_now END
        FROM {{schema}}.jobs AS j
        WHERE j.id = ANY (p_job_ids)
          AND j.workflow_id IS NOT NULL
          AND s.workflow_id = j.workflow_id AND s.step_id = j.step_id
          AND s.state <> j.state
        RETURNING s.workflow_id, s.step_id, s.state
    ),
    events AS (
        INSERT INTO {{schema}}.workflow_events (workflow_id, step_id, state)
        SELECT st.workflow_id, st.step_id, st.state
        FROM steps AS st
        WHERE st.state IN ('succeeded', 'failed', 'cancelled')
        RETURNING 1
    )
    SELECT count(*)::integer INTO v_events FROM events;

    IF v_events > 0 THEN
        PERFORM pg_notify({{schema_literal}} || '.workflows', '');
    END IF;
    RETURN v_events;
END;
$fn$;
