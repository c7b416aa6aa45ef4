-- 0011: a workflow step's job id is the first 8 bytes of its workflow's id followed
-- by a 64-bit hash of the workflow's id and the step's,
--   substr(uuid_send(workflow_id), 1, 8)
--   || int8send(uuid_hash_extended(workflow_id, hashtextextended(step_id, 0)))
-- (as bytes), instead of md5(workflow_id::text || '/' || step_id)::uuid (0008).
-- Still a function of the step (the primary key keeps one job per step), but:
-- - in the order the workflows were created (workflow ids are UUIDv7). With hashed
--   ids every step job's three primary-key entries (enqueue, claim, completion)
--   went to a random leaf page of jobs_pkey: with 100,000 idle workflows present
--   (200,000 jobs), 1,000 diamonds touched nearly every leaf page, and after a
--   checkpoint each first touch wrote the whole page to the WAL (7.3 MB of
--   full-page images, 45 % of the run's WAL, where 0 idle workflows gave none);
-- - cheaper to check: the constraint is evaluated at every write of a step job
--   (enqueue, claim, completion), and md5 of the ids as text cost about 4 us each
--   time; these hash functions (those of hash partitioning, kept the same across
--   PostgreSQL versions) about 0.3 us (20,000-row UPDATE: 80 ms -> 28 ms, 22 ms
--   without any check).
-- Two steps of one workflow share an id only if 64 bits of their hash do; steps of two
-- workflows, only if the workflows' ids also share their first 64 bits.
-- Step jobs created before this migration keep their ids (0008's or older): the check
-- exempts rows created before the migration ran, the moment being written into it.
ALTER TABLE {{schema}}.jobs DROP CONSTRAINT jobs_step_names_workflow;
DO $migration$
BEGIN
    EXECUTE format(
        $ddl$
        ALTER TABLE {{schema}}.jobs ADD CONSTRAINT jobs_step_names_workflow CHECK (
            CASE WHEN workflow_id IS NULL THEN step_id IS NULL
                 ELSE step_id IS NOT NULL
                      AND (uuid_send(id) = substr(uuid_send(workflow_id), 1, 8)
                                           || int8send(uuid_hash_extended(
                                                  workflow_id, hashtextextended(step_id, 0)))
                           OR created_at < %L::timestamptz)
            END
        )
        $ddl$,
        clock_timestamp()
    );
END;
$migration$;
