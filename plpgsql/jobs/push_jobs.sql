-- push_jobs(p_jobs, p_now): insert a batch of jobs in one statement.
--
-- p_jobs is a JSON array of jobs as Job.pack() writes them, plus their "id" (func,
-- queue, kwargs, meta, priority, max_attempts, timeout, retry {backoff, factor, limit,
-- jitter}, unique_key, scheduled_at; the shape _enqueue_ready reads from workflow
-- steps too); absent keys take the defaults, scheduled_at defaults to p_now.
-- Locks: the inserted rows; a job whose unique_key an unfinished job already holds
-- is not inserted (ON CONFLICT waits for a concurrent pusher of the same key).
-- Transitions: none -> pending.
-- Returns one row per job that was NOT inserted: its 1-based position in p_jobs and
-- the id of the job holding its unique_key (so the caller reports that id instead).
-- Sends one notification per queue with jobs due now on channel <schema>.jobs.
CREATE OR REPLACE FUNCTION {{schema}}.push_jobs(p_jobs jsonb, p_now timestamptz DEFAULT now())
RETURNS TABLE (ord bigint, existing_id uuid)
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_inserted bigint;
BEGIN
    INSERT INTO {{schema}}.jobs AS j (
        id, func, queue, kwargs, meta, priority, max_attempts, timeout_seconds,
        retry_backoff, retry_factor, retry_limit, retry_jitter, unique_key,
        scheduled_at, created_at
    )
    SELECT
        i.id, i.func, coalesce(i.queue, 'default'), coalesce(i.kwargs, '{}'),
        coalesce(i.meta, '{}'), coalesce(i.priority, 0), coalesce(i.max_attempts, 1),
        i.timeout, coalesce((i.retry ->> 'backoff')::double precision, 1),
        coalesce((i.retry ->> 'factor')::double precision, 2),
        coalesce((i.retry ->> 'limit')::double precision, 300),
        coalesce((i.retry ->> 'jitter')::double precision, 0.1), i.unique_key,
        coalesce(i.scheduled_at, p_now), p_now
    FROM ROWS FROM (jsonb_to_recordset(p_jobs) AS (
        id uuid, func text, queue text, kwargs jsonb, meta jsonb, priority integer,
        max_attempts integer, timeout double precision, retry jsonb, unique_key text,
        scheduled_at timestamptz
    )) WITH ORDINALITY AS i(
        id, func, queue, kwargs, meta, priority, max_attempts, timeout, retry, unique_key,
        scheduled_at, ord
    )
    ORDER BY i.ord
    ON CONFLICT (unique_key)
        WHERE unique_key IS NOT NULL AND state IN ('pending', 'running', 'retrying')
        DO NOTHING;
    GET DIAGNOSTICS v_inserted = ROW_COUNT;

    -- notify
    PERFORM pg_notify({{schema_literal}} || '.jobs', q.queue)
    FROM (
        SELECT DISTINCT coalesce(e ->> 'queue', 'default') AS queue
        FROM jsonb_array_elements(p_jobs) AS e
        WHERE coalesce((e ->> 'scheduled_at')::timestamptz, p_now) <= p_now
    ) AS q;

    IF v_inserted = jsonb_array_length(p_jobs) THEN
        RETURN;
    END IF;

    -- duplicates: a new statement, so it sees a conflicting job committed meanwhile
    RETURN QUERY
    SELECT i.ord, holder.id
    FROM jsonb_array_elements(p_jobs) WITH ORDINALITY AS i(e, ord)
    CROSS JOIN LATERAL (
        SELECT h.id
        FROM {{schema}}.jobs AS h
        WHERE h.unique_key = i.e ->> 'unique_key'
        ORDER BY h.state IN ('pending', 'running', 'retrying') DESC, h.created_at DESC
        LIMIT 1
    ) AS holder
    WHERE i.e ->> 'unique_key' IS NOT NULL
      AND holder.id <> (i.e ->> 'id')::uuid;
END;
$fn$;

COMMENT ON FUNCTION {{schema}}.push_jobs(jsonb, timestamptz) IS
    'Insert a JSON array of jobs; returns (position, existing id) for each duplicate unique_key.';
