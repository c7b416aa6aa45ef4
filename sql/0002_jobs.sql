-- 0002 jobs: the job table and the indexes the hot paths use.
--
-- State machine (enforced by CHECK constraints below):
--   pending/retrying --claim--> running --succeeded--> succeeded
--   running --failed/timeout, attempts left--> retrying (scheduled_at = now + backoff)
--   running --failed/timeout, no attempts left--> failed
--   running --released (shutdown, collateral of a process replacement)--> pending
--   running --lease expired (process lost)--> pending, or failed when no attempts are left
--   pending/retrying --cancel--> cancelled;  running --cancel--> cancelled when the owner stops it
CREATE TABLE {{schema}}.jobs (
    id uuid PRIMARY KEY,
    func text NOT NULL CHECK (func <> ''),
    queue text NOT NULL CHECK (queue <> ''),
    kwargs jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(kwargs) = 'object'),
    meta jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(meta) = 'object'),
    priority integer NOT NULL DEFAULT 0,
    state text NOT NULL DEFAULT 'pending',
    -- attempts started (a released job gets its attempt back); claims never goes back,
    -- so (id, claims) names one claim and a stale completion cannot match a newer one.
    attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts integer NOT NULL DEFAULT 1 CHECK (max_attempts >= 1),
    claims integer NOT NULL DEFAULT 0 CHECK (claims >= attempts),
    timeout_seconds double precision CHECK (timeout_seconds > 0),
    -- retry delay after failed attempt n: min(limit, backoff * factor^(n-1)), times a
    -- random factor in [1 - jitter, 1 + jitter]
    retry_backoff double precision NOT NULL DEFAULT 1 CHECK (retry_backoff >= 0),
    retry_factor double precision NOT NULL DEFAULT 2 CHECK (retry_factor >= 1),
    retry_limit double precision NOT NULL DEFAULT 300 CHECK (retry_limit >= 0),
    retry_jitter double precision NOT NULL DEFAULT 0.1 CHECK (retry_jitter BETWEEN 0 AND 1),
    unique_key text,
    scheduled_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    started_at timestamptz,
    completed_at timestamptz,
    worker_id text,
    lease_expires_at timestamptz,
    cancel_requested boolean NOT NULL DEFAULT false,
    result jsonb,
    errors jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(errors) = 'array'),
    CONSTRAINT jobs_state_valid CHECK (
        state IN ('pending', 'running', 'retrying', 'succeeded', 'failed', 'cancelled')
    ),
    -- a running job has a lease; worker_id stays afterwards, as history
    CONSTRAINT jobs_running_has_lease CHECK ((state = 'running') = (lease_expires_at IS NOT NULL)),
    CONSTRAINT jobs_running_has_owner CHECK (state <> 'running' OR worker_id IS NOT NULL),
    CONSTRAINT jobs_finished_has_completed_at CHECK (
        (state IN ('succeeded', 'failed', 'cancelled')) = (completed_at IS NOT NULL)
    ),
    CONSTRAINT jobs_result_only_when_succeeded CHECK (result IS NULL OR state = 'succeeded')
);

-- claim_jobs: the next jobs of a queue, best priority first, then first due.
CREATE INDEX jobs_claimable ON {{schema}}.jobs (queue, priority DESC, scheduled_at, id)
    WHERE state IN ('pending', 'retrying');

-- At most one unfinished job per unique_key.
CREATE UNIQUE INDEX jobs_unique_key_unfinished ON {{schema}}.jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('pending', 'running', 'retrying');

-- recover_jobs: running jobs whose owner stopped renewing its lease.
CREATE INDEX jobs_running_lease ON {{schema}}.jobs (lease_expires_at)
    WHERE state = 'running';
