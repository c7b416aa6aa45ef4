-- push_workflow(p_workflow, p_now): store a workflow and enqueue its root steps, in
-- one call whatever the number of steps.
--
-- p_workflow: {"id", "name", "steps": [{"step_id", "job", "dependencies"}, ...]}, the
-- steps in the order they were added. The caller validated the graph (no cycle, no
-- duplicate, no self-dependency); an unknown dependency is refused here too.
-- A workflow id that exists already is updated: new steps are added, steps without a
-- job yet take the new definition, steps that have a job are left as they are (never
-- run again); counters and state are recomputed.
-- Locks: the workflow row (new, or existing: FOR UPDATE through ON CONFLICT), its steps.
-- Transitions: none -> pending (or completed for a workflow without steps); ready
-- steps get their jobs (see _enqueue_ready).
-- Returns the workflow's id.
CREATE OR REPLACE FUNCTION {{schema}}.push_workflow(
    p_workflow jsonb,
    p_now timestamptz DEFAULT now()
)
RETURNS uuid
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_id uuid := (p_workflow ->> 'id')::uuid;
    v_new boolean;
    v_missing_dep text;
    v_missing_step text;
BEGIN
    INSERT INTO {{schema}}.workflows AS w (id, name, created_at, updated_at)
    VALUES (v_id, p_workflow ->> 'name', p_now, p_now)
    ON CONFLICT (id) DO UPDATE SET name = excluded.name, updated_at = p_now
    RETURNING (w.xmax = 0) INTO v_new;

    IF v_new THEN
        -- a new workflow: dependents and counters come straight from the input
        WITH input AS MATERIALIZED (
            SELECT x.e ->> 'step_id' AS step_id, x.e -> 'job' AS job, x.ord::integer AS ord,
                   ARRAY(SELECT jsonb_array_elements_text(x.e -> 'dependencies')) AS deps
            FROM jsonb_array_elements(p_workflow -> 'steps') WITH ORDINALITY AS x(e, ord)
        ),
        reverse_edges AS (
            SELECT d.dep, array_agg(i.step_id ORDER BY i.ord) AS dependents
            FROM input AS i
            CROSS JOIN LATERAL unnest(i.deps) AS d(dep)
            GROUP BY d.dep
        )
        INSERT INTO {{schema}}.workflow_steps (
            workflow_id, step_id, position, job, dependencies, dependents, remaining_deps
        )
        SELECT v_id, i.step_id, i.ord, i.job, i.deps, coalesce(r.dependents, '{}'),
               cardinality(i.deps)
        FROM input AS i
        LEFT JOIN reverse_edges AS r ON r.dep = i.step_id;
    ELSE
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
    END IF;

    -- an unknown dependency would leave its step waiting forever. EXCEPT (hashed)
    -- rather than NOT EXISTS: the steps were just written, the planner knows
    -- nothing of their number and a nested loop over 10,000 steps takes seconds.
    SELECT x.dep INTO v_missing_dep
    FROM (
        SELECT d.dep
        FROM {{schema}}.workflow_steps AS s
        CROSS JOIN LATERAL unnest(s.dependencies) AS d(dep)
        WHERE s.workflow_id = v_id
        EXCEPT
        SELECT s.step_id FROM {{schema}}.workflow_steps AS s WHERE s.workflow_id = v_id
    ) AS x
    LIMIT 1;
    IF FOUND THEN
        SELECT s.step_id INTO v_missing_step
        FROM {{schema}}.workflow_steps AS s
        WHERE s.workflow_id = v_id AND v_missing_dep = ANY (s.dependencies)
        LIMIT 1;
        RAISE EXCEPTION 'workflow %: step % depends on unknown step %',
            p_workflow ->> 'name', v_missing_step, v_missing_dep
            USING ERRCODE = 'foreign_key_violation';
    END IF;

    UPDATE {{schema}}.workflows AS w
    SET steps_total = c.total,
        steps_succeeded = c.succeeded,
        state = CASE
            WHEN c.failed THEN 'failed'
            WHEN c.succeeded = c.total THEN 'completed'
            WHEN c.started THEN 'running'
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
    RETURN v_id;
END;
$fn$;

COMMENT ON FUNCTION {{schema}}.push_workflow(jsonb, timestamptz) IS
    'Store (or update) a workflow from JSON and enqueue its ready steps; returns its id.';
