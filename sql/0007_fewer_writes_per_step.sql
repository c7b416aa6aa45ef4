-- 0007: fewer writes per workflow step.
-- Events are found by workflow and consumed whole, never by id: the identity column
-- and its primary key go (an index insert and a sequence step less per finished step).
ALTER TABLE {{schema}}.workflow_events DROP COLUMN id;
-- The foreign key from steps to workflows checked, with a locking lookup of the
-- workflow row, every step inserted and again every step updated in the transaction
-- that inserted it (a push links its root steps to their jobs): about 7 % of
-- PostgreSQL's time in the diamond benchmark. Steps are written only by these
-- functions, together with their workflow row, and the one place that deletes
-- workflows deletes their steps with them (Queries.delete_finished_workflows).
ALTER TABLE {{schema}}.workflow_steps DROP CONSTRAINT workflow_steps_workflow_id_fkey;
