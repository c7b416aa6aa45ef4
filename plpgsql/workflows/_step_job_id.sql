-- _step_job_id(p_workflow_id, p_step_id): the id of a workflow step's job, a function
-- of the step, so that the primary key of jobs allows one job per step: the first
-- half of the workflow's id (a UUIDv7 unless the caller chose another: its first 48
-- bits are its creation time) and the first half of md5(workflow_id || '/' ||
-- step_id). Step jobs are therefore keyed in the order their workflows were created,
-- as every other id is: inserts and updates of their primary-key entries go to the
-- same few pages, not to random pages of a large index (migration 0011 says what
-- that cost). Migration 0011's CHECK constraint spells the same expression (a
-- constraint cannot depend on a function that is installed after the migrations).
-- A single immutable expression: the planner inlines it where it is used.
-- Locks nothing, changes nothing.
CREATE OR REPLACE FUNCTION {{schema}}._step_job_id(p_workflow_id uuid, p_step_id text)
RETURNS uuid
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $fn$
    SELECT (left(replace(p_workflow_id::text, '-', ''), 16)
            || left(md5(p_workflow_id::text || '/' || p_step_id), 16))::uuid
$fn$;

COMMENT ON FUNCTION {{schema}}._step_job_id(uuid, text) IS
    'Id of a workflow step''s job: half of its workflow''s id, half of md5(workflow_id || ''/'' || step_id).';
