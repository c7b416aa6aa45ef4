-- complete_jobs(p_worker, p_outcomes, p_now, p_workflow_batch, p_queues, p_slots,
-- p_lease_seconds): record a batch of attempt outcomes.
--
-- p_outcomes: JSON array of {id, claims, outcome, result, error} where outcome is
--   succeeded | failed | timeout | cancelled | released.
-- An outcome applies only while the job is still running under that same claim
-- (same worker, same claims count): a stale, duplicate or post-cancel completion
-- changes nothing.
-- Locks: the completed rows (the UPDATE decides on the newest version of each row,
-- so a concurrent change, e.g. a recovery and a new claim, is seen).
-- Transitions: running -> succeeded; running -> retrying (failed/timeout, attempts
-- left, scheduled_at = now + min(limit, backoff * factor^(attempt-1)) +- jitter) or
-- failed (none left); running -> cancelled
-- (cancelled, or a failure/release of a job whose cancel was requested);
-- running -> pending (released: the attempt is given back, unless it ends cancelled).
-- A workflow step's state follows its job's. The workflows of steps that reached a
-- final state are advanced here, in the same transaction (_advance, up to
-- p_workflow_batch of them, SKIP LOCKED), with those steps handed over in memory.
-- The steps of a workflow it cannot lock (another caller holds it, beyond the
-- batch, or p_workflow_batch 0) are written to workflow_events and it notifies
-- <schema>.workflows, so that a worker process advances them (advance_workflows)
-- once this transaction is visible. With p_slots > 0, up to p_slots of the steps
-- that advancement makes ready (due, of the queues p_queues) are handed off to
-- p_worker, already claimed (see _enqueue_ready). Give slots only when no due job
-- waits in p_queues, as complete_and_claim_jobs does: the claim order is kept.
-- Returns the jobs it changed with their new state and workflow, and the jobs it
-- handed off (state running); notifies <schema>.done once when it changed any job.
CREATE OR REPLACE FUNCTION {{schema}}.complete_jobs(
    p_worker text,
    p_outcomes jsonb,
    p_now timestamptz DEFAULT now(),
    p_workflow_batch integer DEFAULT 1000,
    p_queues text[] DEFAULT '{}',
    p_slots integer DEFAULT 0,
    p_lease_seconds double precision DEFAULT NULL
)
RETURNS TABLE (id uuid, state text, workflow_id uuid)
LANGUAGE plpgsql
-- Key-driven statements on tables whose statistics are always out of date: one
-- generic plan per session (re-planning every call cost more than running), and
-- no sequential scans (stale statistics made whole-table scans look cheap), no JIT
-- (compiling took 0.4 s a call once plan costs passed jit_above_cost).
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
AS $fn$
DECLARE
    v_ids uuid[];
    v_states text[];
    v_workflows uuid[];
    v_event_workflows uuid[];
    v_event_steps text[];
    v_event_states text[];
    v_deferred integer;
    v_handed uuid[];
    v_handed_workflows uuid[];
BEGIN
    -- decide and apply in one UPDATE, by primary key. The state an outcome leads to
    -- depends on the row (cancel requested, attempts left), and so does whether it
    -- applies (still running under that claim): a row changed meanwhile (recovered
    -- and claimed again, cancel requested, lease extended) is waited for, and the
    -- WHERE and every SET expression are evaluated again on its newest version.
    -- "lease_expires_at IS NOT NULL" is "state = 'running'" (jobs_running_has_lease),
    -- written so that the planner cannot look ids up in jobs_running_lease (whose
    -- predicate "state = 'running'" would imply): statistics taken while no job ran
    -- call it empty, and that was a scan of every running job per outcome. The ids
    -- go in as one array (one primary-key descent each): joined to the outcomes
    -- alone, the planner, misled by statistics of a table that changes fast,
    -- scanned the whole table.
    WITH outcomes AS (
        SELECT o.id, o.claims, o.outcome, o.result, o.error
        FROM jsonb_to_recordset(p_outcomes) AS o(
            id uuid, claims integer, outcome text, result jsonb, error jsonb
        )
    ),
    done AS (
        UPDATE {{schema}}.jobs AS j
        -- the state the outcome leads to (_outcome_state) decides each column
        SET state = {{schema}}._outcome_state(
                d.outcome, j.cancel_requested, j.attempts, j.max_attempts),
            attempts = CASE WHEN {{schema}}._outcome_state(
                                 d.outcome, j.cancel_requested, j.attempts, j.max_attempts)
                             = 'pending'
                            THEN j.attempts - 1 ELSE j.attempts END,
            result = CASE WHEN {{schema}}._outcome_state(
                               d.outcome, j.cancel_requested, j.attempts, j.max_attempts)
                           = 'succeeded'
                          THEN d.result END,
            errors = CASE
                WHEN d.error IS NULL THEN j.errors
                ELSE j.errors || jsonb_build_array(
                    d.error || jsonb_build_object('attempt', j.attempts, 'at', p_now,
                                                  'outcome', d.outcome))
            END,
            scheduled_at = CASE
                WHEN {{schema}}._outcome_state(
                         d.outcome, j.cancel_requested, j.attempts, j.max_attempts)
                     = 'retrying'
                THEN p_now + make_interval(secs =>
                    CASE
                        WHEN j.retry_backoff = 0 OR j.retry_limit = 0 THEN 0
                        -- compared in logarithms: factor^(attempts-1) overflows a double
                        -- (an error) long before a job that retries "forever" runs out
                        WHEN (j.attempts - 1) * ln(j.retry_factor)
                             >= ln(j.retry_limit) - ln(j.retry_backoff) THEN j.retry_limit
                        ELSE least(j.retry_limit,
                                   j.retry_backoff * power(j.retry_factor, j.attempts - 1))
                    END
                    * (1 + j.retry_jitter * (2 * random() - 1)))
                ELSE j.scheduled_at
            END,
            completed_at = CASE WHEN {{schema}}._outcome_state(
                                     d.outcome, j.cancel_requested, j.attempts, j.max_attempts)
                                 IN ('succeeded', 'failed', 'cancelled')
                                THEN p_now END,
            lease_expires_at = NULL
        FROM outcomes AS d
        WHERE j.id = ANY (ARRAY(SELECT o.id FROM outcomes AS o))
          AND j.id = d.id
          AND j.lease_expires_at IS NOT NULL AND j.claims = d.claims
          AND j.worker_id = p_worker
          AND {{schema}}._outcome_state(
                  d.outcome, j.cancel_requested, j.attempts, j.max_attempts) IS NOT NULL
        RETURNING j.id, j.state, j.workflow_id, j.step_id, j.started_at
    ),
    -- workflow steps: the step mirrors its job, and keeps the start of its first
    -- attempt (claim_jobs does not write the step); a final state is an event for
    -- _advance below
    steps AS (
        UPDATE {{schema}}.workflow_steps AS s
        SET state = x.state,
            started_at = coalesce(s.started_at, x.started_at),
            completed_at = CASE WHEN x.state IN ('succeeded', 'failed', 'cancelled') THEN p_now END
        FROM done AS x
        WHERE x.workflow_id IS NOT NULL
          AND s.workflow_id = x.workflow_id AND s.step_id = x.step_id
        RETURNING s.workflow_id, s.step_id, s.state
    ),
    events AS MATERIALIZED (
        SELECT st.workflow_id, st.step_id, st.state
        FROM steps AS st
        WHERE st.state IN ('succeeded', 'failed', 'cancelled')
    )
    SELECT array_agg(x.id), array_agg(x.state), array_agg(x.workflow_id),
           ARRAY(SELECT e.workflow_id FROM events AS e),
           ARRAY(SELECT e.step_id FROM events AS e),
           ARRAY(SELECT e.state FROM events AS e)
    INTO v_ids, v_states, v_workflows, v_event_workflows, v_event_steps, v_event_states
    FROM done AS x;

    IF v_ids IS NULL THEN
        RETURN;
    END IF;
    -- notify waiters (wait_for_job) once per batch that changed anything
    PERFORM pg_notify({{schema_literal}} || '.done', '');

    -- advance the workflows whose steps finished, here: their next steps' jobs are
    -- committed with this completion (one round trip less per hop of a chain). The
    -- steps of a workflow locked by another caller wait in workflow_events, which
    -- that caller cannot see before we commit: every worker process listens here.
    IF cardinality(v_event_workflows) > 0 THEN
        SELECT a.deferred, a.handed, a.handed_workflows
        INTO v_deferred, v_handed, v_handed_workflows
        FROM {{schema}}._advance(
            ARRAY(SELECT DISTINCT w FROM unnest(v_event_workflows) AS w),
            p_workflow_batch, p_now, v_event_workflows, v_event_steps, v_event_states,
            p_worker, p_queues, p_slots, p_lease_seconds
        ) AS a;
        IF v_deferred > 0 THEN
            PERFORM pg_notify({{schema_literal}} || '.workflows', '');
        END IF;
    END IF;

    RETURN QUERY SELECT * FROM unnest(v_ids, v_states, v_workflows);
    IF cardinality(v_handed) > 0 THEN
        RETURN QUERY
        SELECT h.id, 'running'::text, h.workflow_id
        FROM unnest(v_handed, v_handed_workflows) AS h(id, workflow_id);
    END IF;
END;
$fn$;

COMMENT ON FUNCTION {{schema}}.complete_jobs(
    text, jsonb, timestamptz, integer, text[], integer, double precision
) IS
    'Apply a batch of attempt outcomes from p_worker; stale ones change nothing.';
