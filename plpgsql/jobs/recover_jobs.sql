-- recover_jobs(p_worker, p_limit, p_now): take back running jobs whose owner is gone:
-- those whose lease expired, or, when p_worker is given, every running job of that
-- worker (its supervisor saw the process die).
-- Locks: up to p_limit such rows, SKIP LOCKED (any process may call this at any time).
-- Transitions: running -> pending (the attempt counts), running -> failed with error
-- "worker lost" when no attempt is left, running -> cancelled when a cancel was requested;
-- their workflow steps follow (_sync_steps).
CREATE OR REPLACE FUNCTION {{schema}}.recover_jobs(
    p_worker text DEFAULT NULL,
    p_limit integer DEFAULT 1000,
    p_now timestamptz DEFAULT now()
)
RETURNS TABLE (id uuid, state text)
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_ids uuid[];
    v_states text[];
    v_queues text[];
BEGIN
    WITH lost AS (
        SELECT l.id
        FROM {{schema}}.jobs AS l
        WHERE l.state = 'running'
          AND (l.lease_expires_at < p_now OR l.worker_id = p_worker)
        ORDER BY l.lease_expires_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ),
    recovered AS (
        UPDATE {{schema}}.jobs AS j
        SET state = CASE
                WHEN j.cancel_requested THEN 'cancelled'
                WHEN j.attempts >= j.max_attempts THEN 'failed'
                ELSE 'pending'
            END,
            errors = j.errors || jsonb_build_array(jsonb_build_object(
                'type', 'WorkerLost',
                'message', format('worker lost: %s stopped while running attempt %s',
                                  j.worker_id, j.attempts),
                'attempt', j.attempts, 'at', p_now, 'outcome', 'lost')),
            scheduled_at = CASE WHEN j.cancel_requested OR j.attempts >= j.max_attempts
                                THEN j.scheduled_at ELSE p_now END,
            completed_at = CASE WHEN j.cancel_requested OR j.attempts >= j.max_attempts
                                THEN p_now END,
            lease_expires_at = NULL
        FROM lost
        WHERE j.id = lost.id
        RETURNING j.id, j.state, j.queue
    )
    SELECT array_agg(r.id), array_agg(r.state),
           array_agg(DISTINCT r.queue) FILTER (WHERE r.state = 'pending')
    INTO v_ids, v_states, v_queues
    FROM recovered AS r;

    IF v_ids IS NOT NULL THEN
        PERFORM {{schema}}._sync_steps(v_ids, p_now);
        PERFORM pg_notify({{schema_literal}} || '.done', '');
        PERFORM pg_notify({{schema_literal}} || '.jobs', q) FROM unnest(v_queues) AS q;
    END IF;
    RETURN QUERY SELECT * FROM unnest(v_ids, v_states);
END;
$fn$;

COMMENT ON FUNCTION {{schema}}.recover_jobs(text, integer, timestamptz) IS
    'Return running jobs of lost workers (expired lease, or p_worker) to pending or failed.';
