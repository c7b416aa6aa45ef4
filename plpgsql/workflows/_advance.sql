-- _advance(p_candidates, p_limit, p_now, p_event_workflows, p_event_steps,
-- p_event_states, p_worker, p_queues, p_slots, p_lease_seconds): lock up to p_limit of
-- the workflows p_candidates and advance them, set-based, in one call.
--
-- Events come from two places: the workflow_events table (due rows of the locked
-- workflows are consumed) and the caller's own, passed in memory as
-- (p_event_workflows[i], p_event_steps[i], p_event_states[i]) — complete_jobs
-- hands over the steps it just finished, so the common case never writes an event
-- row only to delete it in the same transaction. Events passed for a workflow that
-- could not be locked are written to workflow_events for a later call.
-- Callers: advance_workflows (the sweep: candidates from workflow_events) and
-- complete_jobs (candidates: the workflows whose steps it finished).
--
-- Locks: the workflow rows, FOR UPDATE SKIP LOCKED (any process may call this at any
-- time; a workflow being advanced elsewhere is skipped); the steps it updates; the
-- events it consumes.
-- Transitions:
--   each consumed "succeeded" event decrements remaining_deps of the step's
--   dependents (aggregated: a 1,000-wide fan-in is one update of the join step);
--   a "failed"/"cancelled" event: workflow -> failed (no further step starts);
--   all steps succeeded: workflow -> completed;
--   steps whose remaining_deps reached 0 in a workflow that goes on are linked to
--   their job ids and get their jobs (_enqueue_ready; with
--   p_slots > 0, up to p_slots of them are handed off to p_worker, claimed).
-- Returns: advanced (workflows locked and advanced), deferred (workflows whose
-- passed events were written to workflow_events instead), enqueued (jobs created),
-- handed and handed_workflows (the jobs handed off, and their workflows).
-- Notifies <schema>.done when it finished any workflow.
CREATE OR REPLACE FUNCTION {{schema}}._advance(
    p_candidates uuid[],
    p_limit integer,
    p_now timestamptz,
    p_event_workflows uuid[] DEFAULT '{}',
    p_event_steps text[] DEFAULT '{}',
    p_event_states text[] DEFAULT '{}',
    p_worker text DEFAULT NULL,
    p_queues text[] DEFAULT '{}',
    p_slots integer DEFAULT 0,
    p_lease_seconds double precision DEFAULT NULL
)
RETURNS TABLE (
    advanced integer, deferred integer, enqueued integer, handed uuid[], handed_workflows uuid[]
)
LANGUAGE plpgsql
-- the hot path's planner settings; complete_jobs.sql says why
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
AS $fn$
DECLARE
    v_ids uuid[];
    v_rows tid[];
    v_states text[];
    v_finished integer;
    v_ready_workflows uuid[];
    v_ready_steps text[];
    v_ready_jobs jsonb[];
    v_whole uuid[];
BEGIN
    advanced := 0;
    deferred := 0;
    enqueued := 0;
    handed := '{}';
    handed_workflows := '{}';

    -- lock: one key lookup per candidate, stopping after p_limit rows locked
    SELECT array_agg(w.id), array_agg(w.ctid), array_agg(w.state) INTO v_ids, v_rows, v_states
    FROM (
        SELECT w.id, w.ctid, w.state
        FROM unnest(p_candidates) AS c(id)
        CROSS JOIN LATERAL (
            SELECT w.id, w.ctid, w.state
            FROM {{schema}}.workflows AS w
            WHERE w.id = c.id
            FOR UPDATE SKIP LOCKED
        ) AS w
        LIMIT p_limit
    ) AS w;
    v_ids := coalesce(v_ids, '{}');

    -- passed events of workflows not locked here wait in the table (hashed against
    -- the locked ids: "= ANY" would compare every event with every id)
    IF cardinality(v_ids) < cardinality(p_candidates) AND cardinality(p_event_workflows) > 0 THEN
        WITH kept AS (
            INSERT INTO {{schema}}.workflow_events (workflow_id, step_id, state)
            SELECT m.workflow_id, m.step_id, m.state
            FROM unnest(p_event_workflows, p_event_steps, p_event_states)
                AS m(workflow_id, step_id, state)
            WHERE NOT EXISTS (SELECT FROM unnest(v_ids) AS l(id) WHERE l.id = m.workflow_id)
            RETURNING workflow_id
        )
        SELECT count(DISTINCT k.workflow_id)::integer INTO deferred FROM kept AS k;
    END IF;

    IF cardinality(v_ids) = 0 THEN
        RETURN NEXT;
        RETURN;
    END IF;
    advanced := cardinality(v_ids);

    -- consume events, apply them to the counters and to the workflows
    WITH deleted AS (
        DELETE FROM {{schema}}.workflow_events AS e
        WHERE e.workflow_id = ANY (v_ids) AND e.available_at <= p_now
        RETURNING e.workflow_id, e.step_id, e.state
    ),
    consumed AS (
        SELECT d.workflow_id, d.step_id, d.state FROM deleted AS d
        UNION ALL
        SELECT m.workflow_id, m.step_id, m.state
        FROM unnest(p_event_workflows, p_event_steps, p_event_states)
            AS m(workflow_id, step_id, state)
        JOIN unnest(v_ids) AS l(id) ON l.id = m.workflow_id
    ),
    tallies AS (
        SELECT c.workflow_id,
               (count(*) FILTER (WHERE c.state = 'succeeded'))::integer AS succeeded,
               bool_or(c.state IN ('failed', 'cancelled')) AS failed
        FROM consumed AS c
        GROUP BY c.workflow_id
    ),
    -- a workflow still starts steps after this batch: it was pending or running,
    -- and none of its events is a failure
    going_on AS (
        SELECT l.id
        FROM unnest(v_ids, v_states) AS l(id, state)
        JOIN tallies AS t ON t.workflow_id = l.id
        WHERE l.state IN ('pending', 'running') AND NOT t.failed
    ),
    decrements AS (
        SELECT s.workflow_id, d.dependent, count(*)::integer AS n,
               EXISTS (SELECT FROM going_on AS o WHERE o.id = s.workflow_id) AS going_on
        FROM consumed AS c
        JOIN {{schema}}.workflow_steps AS s
            ON s.workflow_id = c.workflow_id AND s.step_id = c.step_id
        CROSS JOIN LATERAL unnest(s.dependents) AS d(dependent)
        WHERE c.state = 'succeeded'
        GROUP BY s.workflow_id, d.dependent
    ),
    -- the counters; a step whose last dependency just succeeded, in an open
    -- workflow, is linked to its job here (its id is a function of the step; see
    -- _enqueue_ready, which creates the job and unlinks it if that fails): one
    -- update of the step row instead of two
    counted AS (
        UPDATE {{schema}}.workflow_steps AS t
        SET remaining_deps = t.remaining_deps - d.n,
            job_id = CASE WHEN t.remaining_deps = d.n AND d.going_on
                          THEN {{schema}}._step_job_id(t.workflow_id, t.step_id)
                          ELSE t.job_id END
        FROM decrements AS d
        WHERE t.workflow_id = d.workflow_id AND t.step_id = d.dependent
        RETURNING t.workflow_id, t.step_id, t.job, t.remaining_deps = 0 AND d.going_on AS linked
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
        -- the steps whose last dependency just succeeded, linked above
        ARRAY(SELECT c.workflow_id FROM counted AS c WHERE c.linked),
        ARRAY(SELECT c.step_id FROM counted AS c WHERE c.linked),
        ARRAY(SELECT c.job FROM counted AS c WHERE c.linked),
        -- workflows to look at whole: a "look again" event (a step blocked by a
        -- unique_key) or a nudge; steps linked above are not looked at again
        ARRAY(SELECT DISTINCT c.workflow_id FROM consumed AS c WHERE c.step_id IS NULL)
    INTO v_finished, v_ready_workflows, v_ready_steps, v_ready_jobs, v_whole;

    -- advance: the steps that became ready get their jobs
    SELECT e.created, e.handed, e.handed_workflows INTO enqueued, handed, handed_workflows
    FROM {{schema}}._enqueue_ready(
        v_whole, p_now, v_ready_workflows, v_ready_steps, v_ready_jobs,
        p_worker, p_queues, p_slots, p_lease_seconds
    ) AS e;

    IF v_finished > 0 THEN
        PERFORM pg_notify({{schema_literal}} || '.done', '');
    END IF;
    RETURN NEXT;
END;
$fn$;

COMMENT ON FUNCTION {{schema}}._advance(
    uuid[], integer, timestamptz, uuid[], text[], text[], text, text[], integer, double precision
) IS
    'Lock and advance up to p_limit of the candidate workflows; see the file header.';
