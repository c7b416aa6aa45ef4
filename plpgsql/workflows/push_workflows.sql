-- push_workflows(p_workflows, p_now): store workflows and enqueue their root steps,
-- in one call whatever the number of workflows and steps.
--
-- p_workflows: JSON array of {"id", "name", "steps": [{"step_id", "job",
-- "dependencies"}, ...]}, steps in the order they were added. The caller validated
-- each graph (no cycle, no duplicate, no self-dependency); an unknown dependency is
-- refused here too (foreign_key_violation, nothing written).
-- New workflows are written set-based; an id that exists already is updated by
-- _update_workflow (steps that have a job are never run again).
-- Locks: the workflow rows (new, or existing: through ON CONFLICT DO UPDATE), steps.
-- Transitions: none -> pending (completed for a workflow without steps); ready steps
-- get their jobs (_enqueue_ready).
-- Returns the ids, in input order.
CREATE OR REPLACE FUNCTION {{schema}}.push_workflows(
    p_workflows jsonb,
    p_now timestamptz DEFAULT now()
)
RETURNS SETOF uuid
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_new uuid[];
    v_missing record;
BEGIN
    -- an unknown dependency would leave its step waiting forever (checked on the
    -- input, hashed: nothing is written when it fails)
    SELECT x.wid, x.name, x.dep INTO v_missing
    FROM (
        SELECT (w ->> 'id') AS wid, w ->> 'name' AS name, d.dep
        FROM jsonb_array_elements(p_workflows) AS w
        CROSS JOIN LATERAL jsonb_array_elements(w -> 'steps') AS s(e)
        CROSS JOIN LATERAL jsonb_array_elements_text(s.e -> 'dependencies') AS d(dep)
        EXCEPT
        SELECT (w ->> 'id'), w ->> 'name', s.e ->> 'step_id'
        FROM jsonb_array_elements(p_workflows) AS w
        CROSS JOIN LATERAL jsonb_array_elements(w -> 'steps') AS s(e)
    ) AS x
    WHERE NOT EXISTS (  -- a step an existing workflow already has is known too
        SELECT 1 FROM {{schema}}.workflow_steps AS k
        WHERE k.workflow_id = x.wid::uuid AND k.step_id = x.dep
    )
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'workflow %: a step depends on unknown step %', v_missing.name,
            v_missing.dep
            USING ERRCODE = 'foreign_key_violation';
    END IF;

    WITH input AS (
        SELECT (w ->> 'id')::uuid AS id, w ->> 'name' AS name,
               jsonb_array_length(w -> 'steps') AS total
        FROM jsonb_array_elements(p_workflows) AS w
    ),
    stored AS (
        INSERT INTO {{schema}}.workflows AS w (
            id, name, steps_total, state, completed_at, created_at, updated_at
        )
        SELECT i.id, i.name, i.total,
               CASE WHEN i.total = 0 THEN 'completed' ELSE 'pending' END,
               CASE WHEN i.total = 0 THEN p_now END, p_now, p_now
        FROM input AS i
        ON CONFLICT (id) DO UPDATE SET updated_at = p_now
        RETURNING w.id, (w.xmax = 0) AS new
    )
    SELECT array_agg(st.id) FILTER (WHERE st.new) INTO v_new FROM stored AS st;

    -- new workflows: steps, dependents and counters straight from the input
    WITH input AS MATERIALIZED (
        SELECT (w ->> 'id')::uuid AS wid, x.e ->> 'step_id' AS step_id, x.e -> 'job' AS job,
               x.ord::integer AS ord,
               ARRAY(SELECT jsonb_array_elements_text(x.e -> 'dependencies')) AS deps
        FROM jsonb_array_elements(p_workflows) AS w
        CROSS JOIN LATERAL jsonb_array_elements(w -> 'steps') WITH ORDINALITY AS x(e, ord)
        WHERE (w ->> 'id')::uuid = ANY (v_new)
    ),
    reverse_edges AS (
        SELECT i.wid, d.dep, array_agg(i.step_id ORDER BY i.ord) AS dependents
        FROM input AS i
        CROSS JOIN LATERAL unnest(i.deps) AS d(dep)
        GROUP BY i.wid, d.dep
    )
    INSERT INTO {{schema}}.workflow_steps (
        workflow_id, step_id, position, job, dependencies, dependents, remaining_deps
    )
    SELECT i.wid, i.step_id, i.ord, i.job, i.deps, coalesce(r.dependents, '{}'),
           cardinality(i.deps)
    FROM input AS i
    LEFT JOIN reverse_edges AS r ON r.wid = i.wid AND r.dep = i.step_id;

    IF v_new IS NOT NULL THEN
        PERFORM {{schema}}._enqueue_ready(v_new, p_now);
    END IF;

    -- workflows that existed: updated one by one
    PERFORM {{schema}}._update_workflow(w, p_now)
    FROM jsonb_array_elements(p_workflows) AS w
    WHERE NOT (w ->> 'id')::uuid = ANY (coalesce(v_new, '{}'));

    RETURN QUERY
    SELECT (w ->> 'id')::uuid FROM jsonb_array_elements(p_workflows) WITH ORDINALITY AS x(w, ord)
    ORDER BY x.ord;
END;
$fn$;

COMMENT ON FUNCTION {{schema}}.push_workflows(jsonb, timestamptz) IS
    'Store (or update) workflows from JSON and enqueue their ready steps; returns their ids.';
