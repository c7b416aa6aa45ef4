-- _enqueue_ready(p_ids, p_now, p_step_workflows, p_steps, p_step_jobs, p_worker,
-- p_queues, p_slots, p_lease_seconds): create the jobs of ready steps:
--   - every ready step (remaining_deps = 0, no job yet, workflow neither failed nor
--     completed) among all the steps of the workflows p_ids (a re-push, a second
--     look), found by primary key prefix;
--   - the steps (p_step_workflows[i], p_steps[i]) with definitions p_step_jobs[i],
--     already linked to their job ids (a step's job id is a function of the step;
--     see _step_job_id) in a workflow that goes on: the root steps of the workflows
--     push_workflows just wrote, and the steps _advance saw reach remaining_deps 0.
--     Not looked up again.
-- Hand-off: with p_slots > 0 (complete_and_claim_jobs, for a worker process that has
-- free slots), up to p_slots of the linked steps' new jobs are created claimed by
-- p_worker, as claim_jobs would claim them, instead of being written as pending
-- and claimed by a second update in the same transaction: only due jobs of the
-- queues p_queues, best priority first. The caller passes slots only when no due
-- job waits in p_queues (its claim_jobs call in the same transaction came back
-- short): these jobs are then the ones claim_jobs would take next, so the claim
-- order (priority, then first due) is kept.
-- Callers hold the rows of those workflows locked (push_workflows, _update_workflow,
-- _advance).
-- Locks: the new job rows and the steps it links to them.
-- Transitions: step gets its job_id (its state stays pending; a handed-off job
-- starts running, with attempts and claims 1, as claimed).
-- A step whose job cannot be inserted because an unrelated unfinished job holds its
-- unique_key is not linked to that job (a linked one is unlinked): it stays ready
-- and its workflow is looked at again a second later (an event with available_at
-- in the future).
-- Returns the number of jobs created, and the ids and workflows of those handed off
-- (handed[i] in handed_workflows[i]); notifies <schema>.jobs once per queue that got
-- pending due jobs.
CREATE OR REPLACE FUNCTION {{schema}}._enqueue_ready(
    p_ids uuid[],
    p_now timestamptz,
    p_step_workflows uuid[] DEFAULT '{}',
    p_steps text[] DEFAULT '{}',
    p_step_jobs jsonb[] DEFAULT '{}',
    p_worker text DEFAULT NULL,
    p_queues text[] DEFAULT '{}',
    p_slots integer DEFAULT 0,
    p_lease_seconds double precision DEFAULT NULL
)
RETURNS TABLE (created integer, handed uuid[], handed_workflows uuid[])
LANGUAGE plpgsql
-- the hot path's planner settings; complete_jobs.sql says why
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
AS $fn$
DECLARE
    v_ready integer;
    v_queues text[];
BEGIN
    -- the steps of the workflows p_ids by primary key prefix; the linked steps as
    -- given (the two sets are disjoint: linked steps have a job id)
    WITH candidates AS (
        SELECT s.workflow_id, s.step_id, s.job, false AS linked
        FROM {{schema}}.workflow_steps AS s
        WHERE s.workflow_id = ANY (p_ids)
          AND s.job_id IS NULL AND s.remaining_deps = 0
        UNION ALL
        SELECT k.workflow_id, k.step_id, k.job, true
        FROM unnest(p_step_workflows, p_steps, p_step_jobs) AS k(workflow_id, step_id, job)
    ),
    ready AS MATERIALIZED (
        SELECT c.workflow_id, c.step_id, c.job, c.linked,
               coalesce(c.job ->> 'queue', 'default') AS queue,
               coalesce((c.job ->> 'priority')::integer, 0) AS priority,
               greatest(coalesce((c.job ->> 'scheduled_at')::timestamptz, p_now), p_now)
                   AS scheduled_at
        FROM candidates AS c
        -- linked steps are in workflows that go on (new ones, or _advance saw to
        -- it); for the others, a key lookup per ready step (as a join, the planner may scan all
        -- workflows)
        WHERE c.linked
           OR (SELECT w.state FROM {{schema}}.workflows AS w WHERE w.id = c.workflow_id)
              IN ('pending', 'running')
    ),
    -- the steps handed off: linked steps only (with slots, the caller is _advance:
    -- they have dependencies, so their workflow is running already), due, of the
    -- worker's queues; the best priority first. The caller gives slots only when no
    -- due job waits in those queues (its claim just now came back short), so the
    -- claim order is kept.
    handoff AS (
        SELECT r.workflow_id, r.step_id
        FROM ready AS r
        WHERE p_slots > 0 AND r.linked AND r.scheduled_at <= p_now
          AND r.queue = ANY (p_queues)
        ORDER BY r.priority DESC, r.workflow_id, r.step_id
        LIMIT greatest(p_slots, 0)
    ),
    inserted AS (
        INSERT INTO {{schema}}.jobs (
            id, func, queue, kwargs, meta, priority, max_attempts, timeout_seconds,
            retry_backoff, retry_factor, retry_limit, retry_jitter, unique_key,
            scheduled_at, created_at, workflow_id, step_id,
            state, attempts, claims, worker_id, started_at, lease_expires_at
        )
        SELECT
            -- the step's job id is a function of the step: with the primary key, at
            -- most one job per step
            {{schema}}._step_job_id(r.workflow_id, r.step_id),
            r.job ->> 'func', r.queue,
            coalesce(r.job -> 'kwargs', '{}'), coalesce(r.job -> 'meta', '{}'),
            r.priority,
            coalesce((r.job ->> 'max_attempts')::integer, 1),
            (r.job ->> 'timeout')::double precision,
            coalesce((r.job -> 'retry' ->> 'backoff')::double precision, 1),
            coalesce((r.job -> 'retry' ->> 'factor')::double precision, 2),
            coalesce((r.job -> 'retry' ->> 'limit')::double precision, 300),
            coalesce((r.job -> 'retry' ->> 'jitter')::double precision, 0.1),
            r.job ->> 'unique_key',
            r.scheduled_at, p_now, r.workflow_id, r.step_id,
            -- a handed-off job is written as claim_jobs leaves a claimed one
            CASE WHEN h.step_id IS NULL THEN 'pending' ELSE 'running' END,
            CASE WHEN h.step_id IS NULL THEN 0 ELSE 1 END,
            CASE WHEN h.step_id IS NULL THEN 0 ELSE 1 END,
            CASE WHEN h.step_id IS NOT NULL THEN p_worker END,
            CASE WHEN h.step_id IS NOT NULL THEN p_now END,
            CASE WHEN h.step_id IS NOT NULL
                 THEN p_now + make_interval(secs => p_lease_seconds) END
        FROM ready AS r
        LEFT JOIN handoff AS h ON h.workflow_id = r.workflow_id AND h.step_id = r.step_id
        ORDER BY r.workflow_id, r.step_id
        ON CONFLICT DO NOTHING
        RETURNING id, workflow_id, step_id, queue, scheduled_at, state
    ),
    -- link the others (a handed-off step is linked already, and its job tells that
    -- it runs, as for a claimed one)
    linked AS (
        UPDATE {{schema}}.workflow_steps AS s
        SET job_id = c.id
        FROM inserted AS c
        JOIN ready AS r ON r.workflow_id = c.workflow_id AND r.step_id = c.step_id
        WHERE NOT r.linked
          AND s.workflow_id = c.workflow_id AND s.step_id = c.step_id
    )
    SELECT (SELECT count(*) FROM ready)::integer, count(*)::integer,
           coalesce(array_agg(c.id) FILTER (WHERE c.state = 'running'), '{}'),
           coalesce(array_agg(c.workflow_id) FILTER (WHERE c.state = 'running'), '{}'),
           array_agg(DISTINCT c.queue) FILTER (WHERE c.state = 'pending'
                                                 AND c.scheduled_at <= p_now)
    INTO v_ready, created, handed, handed_workflows, v_queues
    FROM inserted AS c;

    PERFORM pg_notify({{schema_literal}} || '.jobs', q) FROM unnest(v_queues) AS q;

    IF created < v_ready THEN
        -- blocked by a unique_key held elsewhere: a linked step is unlinked, and
        -- the workflow is looked at again later
        UPDATE {{schema}}.workflow_steps AS s
        SET job_id = NULL
        FROM unnest(p_step_workflows, p_steps) AS k(workflow_id, step_id)
        WHERE s.workflow_id = k.workflow_id AND s.step_id = k.step_id
          AND NOT EXISTS (SELECT FROM {{schema}}.jobs AS j WHERE j.id = s.job_id);
        INSERT INTO {{schema}}.workflow_events (workflow_id, available_at)
        SELECT DISTINCT s.workflow_id, p_now + interval '1 second'
        FROM {{schema}}.workflow_steps AS s
        JOIN {{schema}}.workflows AS w ON w.id = s.workflow_id
        WHERE (s.workflow_id = ANY (p_ids)
               OR (s.workflow_id, s.step_id) IN (SELECT * FROM unnest(p_step_workflows, p_steps)))
          AND s.job_id IS NULL
          AND s.remaining_deps = 0
          AND w.state IN ('pending', 'running');
    END IF;
    RETURN NEXT;
END;
$fn$;
