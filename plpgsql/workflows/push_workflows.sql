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
    v_root_workflows uuid[];
    v_root_steps text[];
    v_root_jobs jsonb[];
    v_unmatched bigint;
    v_all_new boolean;
BEGIN
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
    SELECT array_agg(st.id) FILTER (WHERE st.new), bool_and(st.new)
    INTO v_new, v_all_new
    FROM stored AS st;
    -- v_all_new (the usual case) spares the id-by-id search of v_new below: with
    -- 10,000 workflows in one call that search was 10^8 comparisons

    -- new workflows: steps, dependents and counters straight from the input. The
    -- steps are read as typed records (a JSON array becomes a text[] as it is read):
    -- 10 % of this statement's time went to a sub-select per step that built the
    -- dependency array element by element
    WITH input AS MATERIALIZED (
        SELECT w.id AS wid, x.step_id, x.job, x.ord::integer AS ord,
               coalesce(x.dependencies, '{}') AS deps
        FROM jsonb_to_recordset(p_workflows) AS w(id uuid, steps jsonb)
        CROSS JOIN LATERAL ROWS FROM (
            jsonb_to_recordset(w.steps) AS (step_id text, job jsonb, dependencies text[])
        ) WITH ORDINALITY AS x(step_id, job, dependencies, ord)
        WHERE v_all_new OR w.id = ANY (v_new)
    ),
    reverse_edges AS (
        SELECT i.wid, d.dep, array_agg(i.step_id ORDER BY i.ord) AS dependents
        FROM input AS i
        CROSS JOIN LATERAL unnest(i.deps) AS d(dep)
        GROUP BY i.wid, d.dep
    ),
    -- root steps are linked to their job ids as they are written (a step's job id is
    -- a function of the step), and handed to _enqueue_ready as such: no second
    -- look-up and update of each root step
    roots AS (
        INSERT INTO {{schema}}.workflow_steps (
            workflow_id, step_id, position, job, dependencies, dependents, remaining_deps,
            job_id
        )
        SELECT i.wid, i.step_id, i.ord, i.job, i.deps, coalesce(r.dependents, '{}'),
               cardinality(i.deps),
               CASE WHEN cardinality(i.deps) = 0
                    THEN {{schema}}._step_job_id(i.wid, i.step_id) END
        FROM input AS i
        LEFT JOIN reverse_edges AS r ON r.wid = i.wid AND r.dep = i.step_id
        RETURNING workflow_id, step_id, job, job_id IS NOT NULL AS root,
                  cardinality(dependencies) AS dependencies,
                  cardinality(dependents) AS dependents
    )
    SELECT array_agg(t.workflow_id) FILTER (WHERE t.root),
           array_agg(t.step_id) FILTER (WHERE t.root),
           array_agg(t.job) FILTER (WHERE t.root),
           -- each edge to a known step is one entry in that step's dependents
           coalesce(sum(t.dependencies) - sum(t.dependents), 0)
    INTO v_root_workflows, v_root_steps, v_root_jobs, v_unmatched
    FROM roots AS t;

    IF v_unmatched > 0 OR NOT v_all_new THEN
        -- an unknown dependency would leave its step waiting forever. Looked for in
        -- the input (hashed) when a workflow existed already or when the new steps'
        -- edges do not add up: the exception undoes what this call wrote.
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
    END IF;

    IF v_root_workflows IS NOT NULL THEN
        PERFORM {{schema}}._enqueue_ready(
            '{}', p_now, v_root_workflows, v_root_steps, v_root_jobs
        );
    END IF;

    IF NOT v_all_new THEN  -- workflows that existed: updated one by one
        PERFORM {{schema}}._update_workflow(w, p_now)
        FROM jsonb_array_elements(p_workflows) AS w
        WHERE NOT (w ->> 'id')::uuid = ANY (coalesce(v_new, '{}'));
    END IF;

    RETURN QUERY
    SELECT (w ->> 'id')::uuid FROM jsonb_array_elements(p_workflows) WITH ORDINALITY AS x(w, ord)
    ORDER BY x.ord;
END;
$fn$;

COMMENT ON FUNCTION {{schema}}.push_workflows(jsonb, timestamptz) IS
    'Store (or update) workflows from JSON and enqueue their ready steps; returns their ids.';
