-- 0009: jobs due at the same moment, of the same priority, are claimed workflow by
-- workflow (then by id, as before; jobs outside workflows come after workflow steps
-- due at the same moment). The steps one completion batch makes ready share their
-- scheduled_at, and their ids are hashes: ordered by id alone, a diamond's two
-- middle steps went to different claims, often to different processes, which then
-- completed them at the same time. One of the two found the workflow locked by the
-- other and left its step to a sweep (an event row, a NOTIFY, another call of
-- advance_workflows), and the workflow row and the join step's counter were
-- updated twice. Claimed together, siblings usually complete in one batch.
-- 1,000 diamonds (embedded PostgreSQL 18, 2 processes, alternated runs, mean of 8):
-- 111 deferred events -> 1, 7,103 -> 7,742 steps/s, PostgreSQL CPU per 1,000 steps
-- 0.179 -> 0.163 s.
DROP INDEX {{schema}}.jobs_claimable;
CREATE INDEX jobs_claimable ON {{schema}}.jobs (queue, priority DESC, scheduled_at, workflow_id, id)
    WHERE state IN ('pending', 'retrying');
