-- 0005: cheaper updates on the workflow hot path.
-- A step's state changes twice per run (running, then final) and a workflow row once
-- per advancement; none of those columns is indexed, so with free space on the page
-- PostgreSQL updates them in place (HOT) without touching any index. Leave that space,
-- and index workflows by creation (listing) and completion (pruning) instead of by
-- (state, updated_at), which made every workflow update an index insert.
ALTER TABLE {{schema}}.workflow_steps SET (fillfactor = 80);
ALTER TABLE {{schema}}.workflows SET (fillfactor = 80);
DROP INDEX {{schema}}.workflows_state_updated;
CREATE INDEX workflows_created ON {{schema}}.workflows (created_at);
CREATE INDEX workflows_completed ON {{schema}}.workflows (completed_at);
