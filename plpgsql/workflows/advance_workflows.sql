-- advance_workflows(p_limit, p_now, p_ids): advance up to p_limit workflows that have
-- events waiting in workflow_events (only those of p_ids when given), set-based, in
-- one call (_advance does the work; its header lists the transitions).
--
-- The sweep: worker processes call it when notified on <schema>.workflows and every
-- polling_interval. Completions advance their own workflows in complete_jobs, and
-- leave events here only for workflows that another caller held locked.
-- Locks: the workflow rows, FOR UPDATE SKIP LOCKED (a workflow being advanced
-- elsewhere is skipped and reported in "skipped" so the caller can come back for
-- it); the steps it updates; the events it consumes.
-- Returns: advanced (workflows processed), skipped (workflows that still have due
-- events: locked by another caller, beyond p_limit, or new since), enqueued (jobs
-- created).
CREATE OR REPLACE FUNCTION {{schema}}.advance_workflows(
    p_limit integer DEFAULT 1000,
    p_now timestamptz DEFAULT now(),
    p_ids uuid[] DEFAULT NULL
)
RETURNS TABLE (advanced integer, skipped integer, enqueued integer)
LANGUAGE plpgsql
-- the hot path's planner settings; complete_jobs.sql says why
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
AS $fn$
BEGIN
    SELECT a.advanced, a.enqueued INTO advanced, enqueued
    FROM {{schema}}._advance(
        ARRAY(
            SELECT DISTINCT e.workflow_id
            FROM {{schema}}.workflow_events AS e
            WHERE e.available_at <= p_now
              AND (p_ids IS NULL OR e.workflow_id = ANY (p_ids))
        ),
        p_limit,
        p_now
    ) AS a;

    IF advanced = 0 THEN
        -- events of deleted workflows go; those of locked workflows are reported
        DELETE FROM {{schema}}.workflow_events AS e
        WHERE e.available_at <= p_now
          AND NOT EXISTS (SELECT 1 FROM {{schema}}.workflows AS w WHERE w.id = e.workflow_id);
    END IF;

    -- what is still due: events of workflows locked elsewhere or beyond p_limit, and
    -- events inserted for ours after we consumed theirs (both need another call).
    -- No "NOT = ANY (v_ids)" here: that compares every event with every id.
    SELECT count(DISTINCT e.workflow_id)::integer INTO skipped
    FROM {{schema}}.workflow_events AS e
    WHERE e.available_at <= p_now;
    RETURN NEXT;
END;
$fn$;

COMMENT ON FUNCTION {{schema}}.advance_workflows(integer, timestamptz, uuid[]) IS
    'Advance up to p_limit workflows with waiting events (SKIP LOCKED); see the file header.';
