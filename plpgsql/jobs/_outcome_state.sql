-- _outcome_state(p_outcome, p_cancel_requested, p_attempts, p_max_attempts): the
-- state an attempt's outcome takes its running job to, given the job as it is now:
--   succeeded -> succeeded; cancelled, or any other outcome once a cancel was
--   requested -> cancelled; released -> pending; failed/timeout -> retrying while
--   attempts are left, else failed; an unknown outcome -> NULL (nothing changes).
-- A single immutable expression: the planner inlines it into complete_jobs' UPDATE,
-- where it is evaluated on the newest version of the row.
-- Locks nothing, changes nothing.
CREATE OR REPLACE FUNCTION {{schema}}._outcome_state(
    p_outcome text,
    p_cancel_requested boolean,
    p_attempts integer,
    p_max_attempts integer
)
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $fn$
    SELECT CASE
        WHEN p_outcome = 'succeeded' THEN 'succeeded'
        WHEN p_outcome = 'cancelled' OR p_cancel_requested THEN 'cancelled'
        WHEN p_outcome = 'released' THEN 'pending'
        WHEN p_outcome IN ('failed', 'timeout') THEN
            CASE WHEN p_attempts >= p_max_attempts THEN 'failed' ELSE 'retrying' END
    END
$fn$;

COMMENT ON FUNCTION {{schema}}._outcome_state(text, boolean, integer, integer) IS
    'The state an attempt outcome takes its running job to (NULL: unknown outcome).';
