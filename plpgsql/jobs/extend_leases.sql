-- extend_leases(p_worker, p_ids, p_lease_seconds, p_now): the heartbeat of a worker
-- process: push back the lease deadline of the running jobs it holds.
-- Locks: those rows, SKIP LOCKED (a row being completed right now needs no lease).
-- Transitions: none.
-- Returns the ids of the held jobs whose cancellation was requested (only those), so
-- a process that missed the notification still stops them.
CREATE OR REPLACE FUNCTION {{schema}}.extend_leases(
    p_worker text,
    p_ids uuid[],
    p_lease_seconds double precision,
    p_now timestamptz DEFAULT now()
)
RETURNS TABLE (id uuid)
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY
    WITH held AS (
        SELECT h.id
        FROM {{schema}}.jobs AS h
        WHERE h.id = ANY (p_ids) AND h.state = 'running' AND h.worker_id = p_worker
        FOR UPDATE SKIP LOCKED
    ),
    extended AS (
        UPDATE {{schema}}.jobs AS j
        SET lease_expires_at = p_now + make_interval(secs => p_lease_seconds)
        FROM held
        WHERE j.id = held.id
        RETURNING j.id, j.cancel_requested
    )
    SELECT e.id FROM extended AS e WHERE e.cancel_requested;
END;
$fn$;

COMMENT ON FUNCTION {{schema}}.extend_leases(text, uuid[], double precision, timestamptz) IS
    'Renew the leases of the running jobs p_worker holds; returns those asked to cancel.';
