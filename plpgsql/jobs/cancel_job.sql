-- cancel_job(p_id, p_now): cancel one job.
-- Locks: the job's row.
-- Transitions: pending/retrying -> cancelled at once; running: cancel_requested is set
-- and <schema>.cancel is notified with the id, the owning process interrupts the job
-- and reports it cancelled (recover_jobs cancels it if the owner is gone).
-- Returns the job's state after the call ('running' while the owner stops it), or
-- NULL for an unknown id. Finished jobs are left as they are. A workflow step follows
-- its job (_sync_steps): a cancelled step fails its workflow.
CREATE OR REPLACE FUNCTION {{schema}}.cancel_job(p_id uuid, p_now timestamptz DEFAULT now())
RETURNS text
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_state text;
BEGIN
    SELECT j.state INTO v_state FROM {{schema}}.jobs AS j WHERE j.id = p_id FOR UPDATE;
    IF v_state IN ('pending', 'retrying') THEN
        UPDATE {{schema}}.jobs
        SET state = 'cancelled', completed_at = p_now, cancel_requested = true
        WHERE id = p_id;
        PERFORM {{schema}}._sync_steps(ARRAY[p_id], p_now);
        PERFORM pg_notify({{schema_literal}} || '.done', '');
        RETURN 'cancelled';
    ELSIF v_state = 'running' THEN
        UPDATE {{schema}}.jobs SET cancel_requested = true WHERE id = p_id;
        PERFORM pg_notify({{schema_literal}} || '.cancel', p_id::text);
    END IF;
    RETURN v_state;
END;
$fn$;

COMMENT ON FUNCTION {{schema}}.cancel_job(uuid, timestamptz) IS
    'Cancel a job: at once when it waits, through its owning process when it runs.';
