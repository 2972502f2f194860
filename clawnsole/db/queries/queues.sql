-- Queue controls: pause, resume, drain and limits, named subject-then-verb like items.sql. `{schema}` is
-- replaced by the quoted schema name when the registry is loaded. A queue has a `queues` row only once it
-- was controlled; the claim statement (item_claim) reads it and queue_claim_allowance enforces the limits.

-- name: queue_state_set
-- Pause or drain a queue, creating its row on first use; records who and when. Returns no row when the queue
-- was in that state already (who and since when stay those of the change that put it there).
INSERT INTO {schema}.queues AS q (name, state, state_by)
VALUES (%(name)s::text, %(state)s::text, %(by)s::text)
ON CONFLICT (name) DO UPDATE
   SET state = excluded.state, state_since = now(), state_by = excluded.state_by, updated_at = now()
 WHERE q.state IS DISTINCT FROM excluded.state
RETURNING q.*;

-- name: queue_resume
-- Make a paused or draining queue active again and wake its workers (the items channel, as an enqueue
-- does), so idle workers claim at once. Never creates a row (no row already means active). Always one
-- row: the queue's columns are NULL when nothing changed.
WITH upd AS (
    UPDATE {schema}.queues
       SET state = 'active', state_since = now(), state_by = %(by)s::text, updated_at = now()
     WHERE name = %(name)s::text AND state <> 'active'
    RETURNING *
)
SELECT upd.*, pg_notify(%(channel)s, %(name)s::text) IS NULL AS notified
  FROM (SELECT 1) one LEFT JOIN upd ON true;

-- name: queue_limits_set
-- Set or clear a queue's concurrency limit and/or rate (`set_*` says which are given; NULL clears one),
-- creating its row on first use; records who and when. A new rate window restarts the counter (an old
-- window's start is not aligned to the new length). Wakes the queue's workers: a raised or cleared limit
-- lets idle ones claim now. The row lock waits for any limited claim of the queue in flight.
WITH up AS (
    INSERT INTO {schema}.queues AS q (name, concurrency_limit, rate_limit, rate_window_seconds, limits_by,
                                      limits_since)
    VALUES (%(name)s::text, %(concurrency)s::int, %(rate_limit)s::int, %(rate_window_seconds)s::int,
            %(by)s::text, now())
    ON CONFLICT (name) DO UPDATE
       SET concurrency_limit = CASE WHEN %(set_concurrency)s::bool THEN excluded.concurrency_limit
                                    ELSE q.concurrency_limit END,
           rate_limit = CASE WHEN %(set_rate)s::bool THEN excluded.rate_limit ELSE q.rate_limit END,
           rate_window_seconds = CASE WHEN %(set_rate)s::bool THEN excluded.rate_window_seconds
                                      ELSE q.rate_window_seconds END,
           rate_window_start = CASE WHEN %(set_rate)s::bool
                                         AND excluded.rate_window_seconds IS DISTINCT FROM q.rate_window_seconds
                                    THEN NULL ELSE q.rate_window_start END,
           rate_window_claims = CASE WHEN %(set_rate)s::bool
                                          AND excluded.rate_window_seconds IS DISTINCT FROM q.rate_window_seconds
                                     THEN 0 ELSE q.rate_window_claims END,
           limits_by = excluded.limits_by, limits_since = now(), updated_at = now()
    RETURNING q.*
)
SELECT up.*, pg_notify(%(channel)s, up.name) IS NULL AS notified FROM up;

-- name: queue_control_get
-- One queue's row (none: the queue was never controlled, so it is active and unlimited).
SELECT * FROM {schema}.queues WHERE name = %(name)s::text;

-- name: queue_rate_usage
-- A rate-limited queue's claims counted in the current window (of now(), as the claim counts them) and
-- when that window ends; no row when the queue has no rate limit.
SELECT q.rate_limit, q.rate_window_seconds,
       CASE WHEN q.rate_window_start = w.start THEN q.rate_window_claims ELSE 0 END AS used,
       w.start + make_interval(secs => q.rate_window_seconds) AS window_ends
  FROM {schema}.queues q
 CROSS JOIN LATERAL (SELECT date_bin(make_interval(secs => q.rate_window_seconds), now(),
                                     timestamptz 'epoch') AS start) w
 WHERE q.name = %(name)s::text AND q.rate_limit IS NOT NULL;

-- name: queue_list
-- Every queue that has items or a row (or just the one asked for): its controls, pending / waiting /
-- claimed / failed counts, the age of its oldest due pending item, items done in the last five minutes and
-- the claims counted in its current rate window. One pass over `items` (like queue_status): a queue whose
-- items all finished long ago is still listed.
WITH counts AS (
    SELECT queue,
           count(*) FILTER (WHERE status = 'pending') AS pending,
           count(*) FILTER (WHERE status = 'waiting') AS waiting,
           count(*) FILTER (WHERE status = 'claimed') AS claimed,
           count(*) FILTER (WHERE status = 'failed') AS failed,
           extract(epoch FROM now() - min(run_at) FILTER (WHERE status = 'pending' AND run_at <= now()))
             AS oldest_pending_seconds,
           count(*) FILTER (WHERE status = 'done' AND finished_at > now() - interval '5 minutes') AS done_last_5m
      FROM {schema}.items
     WHERE %(name)s::text IS NULL OR queue = %(name)s::text
     GROUP BY queue
), controls AS (
    SELECT * FROM {schema}.queues WHERE %(name)s::text IS NULL OR name = %(name)s::text
)
SELECT coalesce(c.queue, q.name) AS name, q.state, q.state_since, q.state_by, q.concurrency_limit,
       q.rate_limit, q.rate_window_seconds, q.limits_by, q.limits_since,
       coalesce(c.pending, 0) AS pending, coalesce(c.waiting, 0) AS waiting, coalesce(c.claimed, 0) AS claimed,
       coalesce(c.failed, 0) AS failed, c.oldest_pending_seconds, coalesce(c.done_last_5m, 0) AS done_last_5m,
       CASE WHEN q.rate_limit IS NULL THEN NULL
            WHEN q.rate_window_start = date_bin(make_interval(secs => q.rate_window_seconds), now(),
                                                timestamptz 'epoch')
            THEN q.rate_window_claims ELSE 0 END AS rate_used
  FROM counts c
  FULL JOIN controls q ON q.name = c.queue
 ORDER BY 1;
