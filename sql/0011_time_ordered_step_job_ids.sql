-- 0011: a workflow step's job id starts with the first half of its workflow's id,
--   (left(replace(workflow_id::text, '-', ''), 16)
--    || left(md5(workflow_id::text || '/' || step_id), 16))::uuid
-- instead of being md5(workflow_id::text || '/' || step_id)::uuid (0008): still a
-- function of the step (the primary key keeps one job per step), but in the order
-- the workflows were created. With hashed ids every step job's three primary-key
-- entries (enqueue, claim, completion) went to a random leaf page of jobs_pkey: with
-- 100,000 idle workflows present (200,000 jobs), 1,000 diamonds touched nearly every
-- leaf page, and after a checkpoint each first touch wrote the whole page to the WAL
-- (7.3 MB of full-page images, 45 % of the run's WAL, where 0 idle workflows gave
-- none).
-- Two steps of one workflow share an id only if 64 bits of their md5 do; steps of two
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
                      AND (id = (left(replace(workflow_id::text, '-', ''), 16)
                                 || left(md5(workflow_id::text || '/' || step_id), 16))::uuid
                           OR created_at < %L::timestamptz)
            END
        )
        $ddl$,
        clock_timestamp()
    );
END;
$migration$;
