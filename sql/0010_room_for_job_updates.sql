-- 0010: more room on each page for the versions a burst of steps leaves behind.
-- A step row is updated three times (linked, running, finished) and a workflow row
-- about once per step, within milliseconds: with 0005's 20 % free space the page was
-- full before the versions left behind could be pruned, and a third of those updates
-- could not be HOT (each one an insert into every index of the table). A job row is
-- never updated HOT (its state is in the partial indexes' predicates), but an update
-- that fits on the row's own page is still cheaper: one that does not fit also writes
-- a lock record for the old row and looks for a page elsewhere; jobs were packed full.
-- WAL of 1,000 diamonds (4,000 steps; PostgreSQL 15, pg_waldump --stats): records
-- 100,138 -> 83,335, bytes 11.3 MB -> 9.1 MB, B-tree inserts 36,700 -> 29,400, step
-- updates not HOT 3,710 -> 405, workflow updates not HOT 2,358 -> 1,116 (1,000 of them
-- set completed_at, which is indexed). Tables take twice the pages; pruning old jobs
-- and workflows keeps them small.
ALTER TABLE {{schema}}.jobs SET (fillfactor = 50);
ALTER TABLE {{schema}}.workflows SET (fillfactor = 50);
ALTER TABLE {{schema}}.workflow_steps SET (fillfactor = 50);
