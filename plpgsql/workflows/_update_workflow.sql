-- _update_workflow(p_workflow, p_now): push_workflows for a workflow id that exists:
-- new steps are added, steps without a job yet take the new definition, steps that
-- have a job are left as they are (never run again); counters and state are
-- recomputed from the steps' states and pending events of the workflow are dropped
-- (they are accounted for by that recount).
-- Locks: the workflow row (FOR UPDATE), its steps.
-- Transitions: workflow state recomputed (pending/running/completed/failed); ready
-- steps get their jobs (_enqueue_ready).
CREATE OR REPLACE FUNCTION {{schema}}._update_workflow(
    p_workflow jsonb,
    p_now timestamptz
)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_id uuid := (p_workflow ->> 'id')::uuid;
BEGIN
    UPDATE {{schema}}.workflows
    SET name = p_workflow ->> 'name', updated_at = p_now
    WHERE id = v_id;

    INSERT INTO {{schema}}.workflow_steps AS t (
        workflow_id, step_id, position, job, dependencies, remaining_deps
    )
    SELECT v_id, e ->> 'step_id', ord::integer, e -> 'job',
           ARRAY(SELECT jsonb_array_elements_text(e -> 'dependencies')), 0
    FROM jsonb_array_elements(p_workflow -> 'steps') WITH ORDINALITY AS x(e, ord)
    ON CONFLICT (workflow_id, step_id) DO UPDATE
        SET job = excluded.job, dependencies = excluded.dependencies,
            position = excluded.position
        WHERE t.job_id IS NULL;

    -- counters are recomputed from the steps' states below, so pending events
    -- of this workflow must not be applied a second time
    DELETE FROM {{schema}}.workflow_events WHERE workflow_id = v_id;

    WITH edges AS (
        SELECT s.step_id AS child, d.dep AS parent
        FROM {{schema}}.workflow_steps AS s
        CROSS JOIN LATERAL unnest(s.dependencies) AS d(dep)
        WHERE s.workflow_id = v_id
    ),
    reverse_edges AS (
        SELECT e.parent, array_agg(e.child ORDER BY e.child) AS dependents
        FROM edges AS e
        GROUP BY e.parent
    ),
    remaining AS (
        SELECT e.child, count(*) FILTER (WHERE p.state IS DISTINCT FROM 'succeeded') AS n
        FROM edges AS e
        LEFT JOIN {{schema}}.workflow_steps AS p
            ON p.workflow_id = v_id AND p.step_id = e.parent
        GROUP BY e.child
    )
    UPDATE {{schema}}.workflow_steps AS t
    SET dependents = coalesce(r.dependents, '{}'),
        remaining_deps = coalesce(m.n, 0)
    FROM {{schema}}.workflow_steps AS t0
    LEFT JOIN reverse_edges AS r ON r.parent = t0.step_id
    LEFT JOIN remaining AS m ON m.child = t0.step_id
    WHERE t.workflow_id = v_id AND t0.workflow_id = v_id AND t0.step_id = t.step_id;

    UPDATE {{schema}}.workflows AS w
    SET steps_total = c.total,
        steps_succeeded = c.succeeded,
        state = CASE
            WHEN c.failed THEN 'failed'
            WHEN c.succeeded = c.total THEN 'completed'
            -- a claim makes a workflow running without writing its step
            WHEN c.started OR w.state = 'running' THEN 'running'
            ELSE 'pending'
        END,
        completed_at = CASE
            WHEN c.failed OR c.succeeded = c.total THEN coalesce(w.completed_at, p_now)
        END
    FROM (
        SELECT count(*)::integer AS total,
               (count(*) FILTER (WHERE s.state = 'succeeded'))::integer AS succeeded,
               coalesce(bool_or(s.state IN ('failed', 'cancelled')), false) AS failed,
               coalesce(bool_or(s.state <> 'pending'), false) AS started
        FROM {{schema}}.workflow_steps AS s
        WHERE s.workflow_id = v_id
    ) AS c
    WHERE w.id = v_id;

    PERFORM {{schema}}._enqueue_ready(ARRAY[v_id], p_now);
END;
$fn$;

