-- 0008: a workflow step's job id is a function of its workflow and step,
--   md5(workflow_id::text || '/' || step_id)::uuid
-- (the CHECK below and _enqueue_ready spell the same expression). With the primary
-- key that makes "each step's job is enqueued exactly once" a constraint without a
-- second unique index: jobs_one_per_workflow_step took an index insert at each of
-- the three writes of a step's job (enqueue, claim, completion), none of which can
-- be HOT. Nothing looked jobs up through it.
-- Step jobs created before this migration keep their random ids (one may be
-- running, and its worker completes it by id): the check exempts rows created
-- before the migration ran, the moment being written into the constraint.
DROP INDEX {{schema}}.jobs_one_per_workflow_step;
ALTER TABLE {{schema}}.jobs DROP CONSTRAINT jobs_step_names_workflow;
DO $migration$
BEGIN
    EXECUTE format(
        $ddl$
        ALTER TABLE {{schema}}.jobs ADD CONSTRAINT jobs_step_names_workflow CHECK (
            CASE WHEN workflow_id IS NULL THEN step_id IS NULL
                 ELSE step_id IS NOT NULL
                      AND (id = md5(workflow_id::text || '/' || step_id)::uuid
                           OR created_at < %L::timestamptz)
            END
        )
        $ddl$,
        clock_timestamp()
    );
END;
$migration$;

-- Hand-off (complete_and_claim_jobs creates the steps it makes ready already claimed):
-- complete_jobs and _enqueue_ready take the claimer's worker, queues, free slots and
-- lease, and _enqueue_ready returns the jobs it handed off; it also takes the steps
-- _advance linked to their job ids, with their definitions. New signatures need the
-- old ones dropped; every function is installed again after a migration.
DROP FUNCTION IF EXISTS {{schema}}.complete_jobs(text, jsonb, timestamptz, integer);
DROP FUNCTION IF EXISTS {{schema}}._enqueue_ready(uuid[], timestamptz, uuid[], text[]);
