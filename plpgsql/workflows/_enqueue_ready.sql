-- _enqueue_ready(p_ids, p_now, p_step_workflows, p_steps): create the job of every
-- ready step (remaining_deps = 0, no job yet, workflow neither failed nor completed)
-- among all the steps of the workflows p_ids (a push, a re-push, a second look) and
-- the steps named by (p_step_workflows[i], p_steps[i]) (those advance_workflows saw
-- reach remaining_deps 0; none of them in a workflow of p_ids). Steps are found by
-- primary key only.
-- Callers hold the rows of those workflows locked (push_workflows, advance_workflows).
-- Locks: the new job rows and the steps it links to them.
-- Transitions: step gets its job_id (state stays pending, as its job's).
-- A step whose job cannot be inserted because an unrelated unfinished job holds its
-- unique_key is not linked to that job: it stays ready and its workflow is looked at
-- again a second later (an event with available_at in the future).
-- Returns the number of jobs created; notifies <schema>.jobs once per queue.
CREATE OR REPLACE FUNCTION {{schema}}._enqueue_ready(
    p_ids uuid[],
    p_now timestamptz,
    p_step_workflows uuid[] DEFAULT '{}',
    p_steps text[] DEFAULT '{}'
)
RETURNS integer
LANGUAGE plpgsql
-- the hot path's planner settings; complete_jobs.sql says why
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
AS $fn$
DECLARE
    v_created integer;
    v_ready integer;
    v_queues text[];
BEGIN
    -- found by key only: the steps of the workflows p_ids (primary key prefix), and
    -- each named step (primary key). The two sets are disjoint (callers see to it).
    WITH candidates AS (
        SELECT s.workflow_id, s.step_id, s.job
        FROM {{schema}}.workflow_steps AS s
        WHERE s.workflow_id = ANY (p_ids)
          AND s.job_id IS NULL AND s.remaining_deps = 0
        UNION ALL
        SELECT s.workflow_id, s.step_id, s.job
        FROM unnest(p_step_workflows, p_steps) AS k(workflow_id, step_id)
        -- a primary-key lookup per named step, whatever the statistics say (OFFSET 0
        -- keeps the subquery apart; joined plainly, a misestimate made the planner
        -- scan the steps table and the names once per step)
        CROSS JOIN LATERAL (
            SELECT s.workflow_id, s.step_id, s.job, s.job_id, s.remaining_deps
            FROM {{schema}}.workflow_steps AS s
            WHERE s.workflow_id = k.workflow_id AND s.step_id = k.step_id
            OFFSET 0
        ) AS s
        WHERE s.job_id IS NULL AND s.remaining_deps = 0
    ),
    ready AS MATERIALIZED (
        SELECT c.workflow_id, c.step_id, c.job
        FROM candidates AS c
        -- a key lookup per ready step (as a join, the planner may scan all workflows)
        WHERE (SELECT w.state FROM {{schema}}.workflows AS w WHERE w.id = c.workflow_id)
              IN ('pending', 'running')
    ),
    created AS (
        INSERT INTO {{schema}}.jobs (
            id, func, queue, kwargs, meta, priority, max_attempts, timeout_seconds,
            retry_backoff, retry_factor, retry_limit, retry_jitter, unique_key,
            scheduled_at, created_at, workflow_id, step_id
        )
        SELECT
            -- the step's job id is a function of the step: with the primary key, at
            -- most one job per step (migration 0008; its CHECK spells the same)
            md5(r.workflow_id::text || '/' || r.step_id)::uuid,
            r.job ->> 'func', coalesce(r.job ->> 'queue', 'default'),
            coalesce(r.job -> 'kwargs', '{}'), coalesce(r.job -> 'meta', '{}'),
            coalesce((r.job ->> 'priority')::integer, 0),
            coalesce((r.job ->> 'max_attempts')::integer, 1),
            (r.job ->> 'timeout')::double precision,
            coalesce((r.job -> 'retry' ->> 'backoff')::double precision, 1),
            coalesce((r.job -> 'retry' ->> 'factor')::double precision, 2),
            coalesce((r.job -> 'retry' ->> 'limit')::double precision, 300),
            coalesce((r.job -> 'retry' ->> 'jitter')::double precision, 0.1),
            r.job ->> 'unique_key',
            greatest(coalesce((r.job ->> 'scheduled_at')::timestamptz, p_now), p_now),
            p_now, r.workflow_id, r.step_id
        FROM ready AS r
        ORDER BY r.workflow_id, r.step_id
        ON CONFLICT DO NOTHING
        RETURNING id, workflow_id, step_id, queue, scheduled_at
    ),
    linked AS (
        UPDATE {{schema}}.workflow_steps AS s
        SET job_id = c.id
        FROM created AS c
        WHERE s.workflow_id = c.workflow_id AND s.step_id = c.step_id
    )
    SELECT (SELECT count(*) FROM ready)::integer, count(*)::integer,
           array_agg(DISTINCT c.queue) FILTER (WHERE c.scheduled_at <= p_now)
    INTO v_ready, v_created, v_queues
    FROM created AS c;

    PERFORM pg_notify({{schema_literal}} || '.jobs', q) FROM unnest(v_queues) AS q;

    IF v_created = v_ready THEN
        RETURN v_created;
    END IF;
    -- blocked by a unique_key held elsewhere: look again later
    INSERT INTO {{schema}}.workflow_events (workflow_id, available_at)
    SELECT DISTINCT s.workflow_id, p_now + interval '1 second'
    FROM {{schema}}.workflow_steps AS s
    JOIN {{schema}}.workflows AS w ON w.id = s.workflow_id
    WHERE (s.workflow_id = ANY (p_ids)
           OR (s.workflow_id, s.step_id) IN (SELECT * FROM unnest(p_step_workflows, p_steps)))
      AND s.job_id IS NULL
      AND s.remaining_deps = 0
      AND w.state IN ('pending', 'running');

    RETURN v_created;
END;
$fn$;
