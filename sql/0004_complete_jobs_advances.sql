-- 0004: complete_jobs takes the workflow batch size and advances the workflows whose
-- steps it finished in the same transaction (the next steps' jobs commit with the
-- completion). A new parameter needs the old signature dropped; every function is
-- installed again after a migration.
DROP FUNCTION IF EXISTS {{schema}}.complete_jobs(text, jsonb, timestamptz);
