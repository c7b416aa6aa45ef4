-- advance_workflows(p_limit, p_now, p_ids): advance up to p_limit workflows that have
-- events waiting (only those of p_ids when given), set-based, in one call.
--
-- Locks: the workflow rows, FOR UPDATE SKIP LOCKED (any process may call this at any
-- time; a workflow being advanced elsewhere is skipped and reported in "skipped" so
-- the caller can come back for it); the steps it updates; the events it consumes.
-- Transitions:
--   each consumed "succeeded" event decrements remaining_deps of the step's
--   dependents (aggregated: a 1,000-wide fan-in is one update of the join step);
--   a "failed"/"cancelled" event: workflow -> failed (no further step starts);
--   all steps succeeded: workflow -> completed;
--   steps whose remaining_deps reached 0 get their jobs (_enqueue_ready).
-- Returns: advanced (workflows processed), skipped (workflows that still have due
-- events: locked by another caller, beyond p_limit, or new since), enqueued (jobs
-- created). Notifies <schema>.done when it
-- finished any workflow.
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
DECLARE
    v_ids uuid[];
    v_rows tid[];
    v_finished integer;
    v_ready_workflows uuid[];
    v_ready_steps text[];
    v_whole uuid[];
BEGIN
    advanced := 0;
    skipped := 0;
    enqueued := 0;

    -- lock: from the due events to their workflows, one key lookup each (a semi-join
    -- from the workflows' side walked every workflow, idle ones included), stopping
    -- after p_limit rows locked
    SELECT array_agg(l.id), array_agg(l.ctid) INTO v_ids, v_rows
    FROM (
        SELECT w.id, w.ctid
        FROM (
            SELECT DISTINCT e.workflow_id
            FROM {{schema}}.workflow_events AS e
            WHERE e.available_at <= p_now
              AND (p_ids IS NULL OR e.workflow_id = ANY (p_ids))
        ) AS e
        CROSS JOIN LATERAL (
            SELECT w.id, w.ctid
            FROM {{schema}}.workflows AS w
            WHERE w.id = e.workflow_id
            FOR UPDATE SKIP LOCKED
        ) AS w
        LIMIT p_limit
    ) AS l;

    IF v_ids IS NULL THEN
        -- events of deleted workflows go; those of locked workflows are reported
        DELETE FROM {{schema}}.workflow_events AS e
        WHERE e.available_at <= p_now
          AND NOT EXISTS (SELECT 1 FROM {{schema}}.workflows AS w WHERE w.id = e.workflow_id);
        SELECT count(DISTINCT e.workflow_id)::integer INTO skipped
        FROM {{schema}}.workflow_events AS e
        WHERE e.available_at <= p_now;
        RETURN NEXT;
        RETURN;
    END IF;
    advanced := cardinality(v_ids);

    -- consume events, apply them to the counters and to the workflows
    WITH consumed AS (
        DELETE FROM {{schema}}.workflow_events AS e
        WHERE e.workflow_id = ANY (v_ids) AND e.available_at <= p_now
        RETURNING e.workflow_id, e.step_id, e.state
    ),
    decrements AS (
        SELECT s.workflow_id, d.dependent, count(*)::integer AS n
        FROM consumed AS c
        JOIN {{schema}}.workflow_steps AS s
            ON s.workflow_id = c.workflow_id AND s.step_id = c.step_id
        CROSS JOIN LATERAL unnest(s.dependents) AS d(dependent)
        WHERE c.state = 'succeeded'
        GROUP BY s.workflow_id, d.dependent
    ),
    counted AS (
        UPDATE {{schema}}.workflow_steps AS t
        SET remaining_deps = t.remaining_deps - d.n
        FROM decrements AS d
        WHERE t.workflow_id = d.workflow_id AND t.step_id = d.dependent
        RETURNING t.workflow_id, t.step_id, t.remaining_deps
    ),
    tallies AS (
        SELECT c.workflow_id,
               (count(*) FILTER (WHERE c.state = 'succeeded'))::integer AS succeeded,
               bool_or(c.state IN ('failed', 'cancelled')) AS failed
        FROM consumed AS c
        GROUP BY c.workflow_id
    ),
    finished AS (
        UPDATE {{schema}}.workflows AS w
        SET steps_succeeded = w.steps_succeeded + t.succeeded,
            state = CASE
                WHEN w.state IN ('completed', 'failed') THEN w.state
                WHEN t.failed THEN 'failed'
                WHEN w.steps_succeeded + t.succeeded = w.steps_total THEN 'completed'
                ELSE w.state
            END,
            completed_at = CASE
                WHEN w.state IN ('completed', 'failed') THEN w.completed_at
                WHEN t.failed OR w.steps_succeeded + t.succeeded = w.steps_total THEN p_now
            END,
            updated_at = p_now
        FROM tallies AS t
        -- the rows locked above, by their physical address (they cannot move while
        -- we hold them): by id, the planner, misled by statistics of a table that
        -- changes fast, scanned the whole table, once per event at worst
        JOIN unnest(v_ids, v_rows) AS l(id, row_id) ON l.id = t.workflow_id
        WHERE w.ctid = l.row_id
        RETURNING w.state
    )
    SELECT
        (SELECT count(*) FILTER (WHERE f.state IN ('completed', 'failed'))::integer
         FROM finished AS f),
        -- the steps whose last dependency just succeeded
        ARRAY(SELECT c.workflow_id FROM counted AS c WHERE c.remaining_deps = 0),
        ARRAY(SELECT c.step_id FROM counted AS c WHERE c.remaining_deps = 0),
        -- workflows to look at whole: a "look again" event (a step blocked by a
        -- unique_key) or a nudge
        ARRAY(SELECT DISTINCT c.workflow_id FROM consumed AS c WHERE c.step_id IS NULL)
    INTO v_finished, v_ready_workflows, v_ready_steps, v_whole;

    IF cardinality(v_whole) > 0 THEN  -- rare: leave their steps to the whole look
        SELECT coalesce(array_agg(r.w), '{}'), coalesce(array_agg(r.s), '{}')
        INTO v_ready_workflows, v_ready_steps
        FROM unnest(v_ready_workflows, v_ready_steps) AS r(w, s)
        WHERE NOT r.w = ANY (v_whole);
    END IF;

    -- advance: the steps that became ready
    enqueued := {{schema}}._enqueue_ready(v_whole, p_now, v_ready_workflows, v_ready_steps);

    IF v_finished > 0 THEN
        PERFORM pg_notify({{schema_literal}} || '.done', '');
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
