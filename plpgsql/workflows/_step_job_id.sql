-- _step_job_id(p_workflow_id, p_step_id): the id of a workflow step's job, a function
-- of the step, so that the primary key of jobs allows one job per step: the first
-- 8 bytes of the workflow's id (a UUIDv7 unless the caller chose another: its first
-- 48 bits are its creation time), then a 64-bit hash of the workflow's id and the
-- step's (PostgreSQL's hash functions of hash partitioning, which stay the same
-- across versions). Step jobs are therefore keyed in the order their workflows were
-- created, as every other id is: their primary-key entries go to the same few pages,
-- not to random pages of a large index. Migration 0011 says what that and the choice
-- of hash (over md5) saved; its CHECK constraint spells the same expression (a
-- constraint cannot depend on a function that is installed after the migrations).
-- A single immutable expression: the planner inlines it where it is used.
-- Locks nothing, changes nothing.
CREATE OR REPLACE FUNCTION {{schema}}._step_job_id(p_workflow_id uuid, p_step_id text)
RETURNS uuid
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $fn$
    SELECT encode(
        substr(uuid_send(p_workflow_id), 1, 8)
        || int8send(uuid_hash_extended(p_workflow_id, hashtextextended(p_step_id, 0))),
        'hex'
    )::uuid
$fn$;

COMMENT ON FUNCTION {{schema}}._step_job_id(uuid, text) IS
    'Id of a workflow step''s job: 8 bytes of its workflow''s id, 8 bytes of a hash of both ids.';
