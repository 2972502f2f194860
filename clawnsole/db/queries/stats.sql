-- Stats and history: what the event log says about how items ran, step timings, and following events live.
-- `{schema}` is replaced by the quoted schema name when the registry is loaded. Times come from the database
-- clock (now()). Every read of item_events by time says `e.at >= …`, which the BRIN index item_events_at_idx
-- narrows to the blocks of that range (events are appended in time order).

-- name: stats_outcomes
-- Per queue and kind, over the events since `since` seconds ago: attempts started, done, failed (dead
-- letters, a last attempt's lease expiry included), retried (a retry scheduled, or a lease expired with
-- attempts left), and the p50/p95 of run time and wait time in seconds. Run time: from an attempt's `claimed`
-- event to its `done`, `retry_scheduled` or `failed` event (the last claim of the item before the outcome,
-- found backwards through the (item_id, id) key). Wait time: from `enqueued` to the item's first `claimed`.
WITH ev AS (
    SELECT e.id, e.item_id, e.at, e.event, e.detail, i.queue, i.kind
      FROM {schema}.item_events e
      JOIN {schema}.items i ON i.id = e.item_id
     WHERE e.at >= now() - make_interval(secs => %(since)s::float8)
       AND e.event IN ('claimed', 'done', 'failed', 'retry_scheduled', 'lease_expired')
       AND (%(queue)s::text IS NULL OR i.queue = %(queue)s::text)
       AND (%(kind)s::text IS NULL OR i.kind = %(kind)s::text)
), facts AS (
    SELECT ev.queue, ev.kind,
           CASE WHEN ev.event = 'lease_expired' AND ev.detail->>'now' = 'failed' THEN 'failed'
                WHEN ev.event = 'lease_expired' THEN 'retried'
                WHEN ev.event = 'retry_scheduled' THEN 'retried'
                ELSE ev.event END AS outcome,
           CASE WHEN ev.event IN ('done', 'failed', 'retry_scheduled')
                THEN extract(epoch FROM ev.at - run.at)::float8 END AS run_seconds,
           CASE WHEN ev.event = 'claimed' AND first.is_first
                THEN extract(epoch FROM ev.at - enq.at)::float8 END AS wait_seconds
      FROM ev
      LEFT JOIN LATERAL (
          SELECT p.at FROM {schema}.item_events p
           WHERE p.item_id = ev.item_id AND p.id < ev.id AND p.event = 'claimed'
           ORDER BY p.id DESC LIMIT 1
      ) run ON ev.event IN ('done', 'failed', 'retry_scheduled')
      LEFT JOIN LATERAL (
          SELECT NOT EXISTS (SELECT 1 FROM {schema}.item_events p
                              WHERE p.item_id = ev.item_id AND p.id < ev.id AND p.event = 'claimed') AS is_first
      ) first ON ev.event = 'claimed'
      LEFT JOIN LATERAL (
          SELECT p.at FROM {schema}.item_events p
           WHERE p.item_id = ev.item_id AND p.id < ev.id AND p.event = 'enqueued'
           ORDER BY p.id LIMIT 1
      ) enq ON ev.event = 'claimed' AND first.is_first
)
SELECT queue, kind,
       count(*) FILTER (WHERE outcome = 'claimed') AS claimed,
       count(*) FILTER (WHERE outcome = 'done') AS done,
       count(*) FILTER (WHERE outcome = 'failed') AS failed,
       count(*) FILTER (WHERE outcome = 'retried') AS retried,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY run_seconds) AS run_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY run_seconds) AS run_p95,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY wait_seconds) AS wait_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY wait_seconds) AS wait_p95
  FROM facts
 GROUP BY queue, kind
 ORDER BY queue, kind NULLS FIRST;

-- name: stats_steps
-- Time per handler step (the `step` events handlers record with ctx.timed or a `clawnsole:step` line), per
-- queue, kind and step name, over the events since `since` seconds ago: count, total, p50 and p95 seconds.
SELECT i.queue, i.kind, e.detail->>'step' AS step, count(*) AS count,
       sum((e.detail->>'seconds')::float8) AS total_seconds,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY (e.detail->>'seconds')::float8) AS p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY (e.detail->>'seconds')::float8) AS p95
  FROM {schema}.item_events e
  JOIN {schema}.items i ON i.id = e.item_id
 WHERE e.at >= now() - make_interval(secs => %(since)s::float8)
   AND e.event = 'step'
   AND (%(queue)s::text IS NULL OR i.queue = %(queue)s::text)
   AND (%(kind)s::text IS NULL OR i.kind = %(kind)s::text)
 GROUP BY i.queue, i.kind, e.detail->>'step'
 ORDER BY i.queue, i.kind NULLS FIRST, total_seconds DESC, step;

-- name: item_step_record
-- Append a `step` event (a handler timed one of its steps) while the lease is held: fenced by the lease
-- token, and FOR SHARE so a completion committing meanwhile is waited for and then seen (no row: the lease
-- is gone and nothing is written). The attempt is the item's current one.
INSERT INTO {schema}.item_events (item_id, event, agent, detail)
SELECT i.id, 'step', i.claimed_by,
       jsonb_strip_nulls(jsonb_build_object('step', %(step)s::text, 'seconds', %(seconds)s::float8,
                                            'attempt', i.attempts, 'error', %(error)s::text))
  FROM (SELECT id, claimed_by, attempts FROM {schema}.items
         WHERE id = %(id)s::bigint AND status = 'claimed' AND lease_token = %(lease_token)s::uuid
           FOR SHARE) i
RETURNING id;

-- name: event_tail_start
-- Where a tail starts: the database clock, and the newest event id of the last `lag` seconds (0 when there is
-- none). Read through the BRIN index by time: item_events has no index on id alone, so max(id) over the whole
-- table would be a full scan.
SELECT now() AS now,
       coalesce((SELECT max(id) FROM {schema}.item_events
                  WHERE at >= now() - make_interval(secs => %(lag)s::float8)), 0) AS last_id;

-- name: event_tail_read
-- The events a tail has not shown yet: ids after the last one shown, or ids it saw missing (a transaction
-- that took an id and had not committed yet), among the events since `horizon` (the BRIN range), oldest
-- first, joined to their items for queue and kind. Every event comes back, so the caller can tell a missing
-- id from one filtered out; `wanted` says whether it is of the queue asked for.
SELECT e.id, e.item_id, e.at, e.event, e.agent, e.detail, i.queue, i.kind,
       (%(queue)s::text IS NULL OR i.queue = %(queue)s::text) AS wanted
  FROM {schema}.item_events e
  LEFT JOIN {schema}.items i ON i.id = e.item_id
 WHERE e.at >= %(horizon)s::timestamptz
   AND (e.id > %(after)s::bigint OR e.id = ANY(%(gaps)s::bigint[]))
 ORDER BY e.id
 LIMIT %(limit)s::int;

-- name: stats_queue_overview
-- Per queue what it holds now and its last hour, each count from an index so the overview stays fast on
-- millions of finished items: pending and the oldest due one (items_claimable_idx), waiting
-- (items_waiting_idx), claimed and expired leases (items_lease_idx), failed and cancelled
-- (items_trouble_idx), done and
-- failed attempts in the last hour (item_events_at_idx, then each event's item by primary key), and the
-- queue's controls. `queues` NULL: every queue. A queue with nothing but old finished items is not listed.
WITH pending AS (
    SELECT queue, count(*) AS pending,
           extract(epoch FROM now() - min(run_at) FILTER (WHERE run_at <= now())) AS oldest_pending_seconds
      FROM {schema}.items WHERE status = 'pending' GROUP BY queue
), waiting AS (
    SELECT queue, count(*) AS waiting FROM {schema}.items WHERE status = 'waiting' GROUP BY queue
), claimed AS (
    SELECT queue, count(*) AS claimed, count(*) FILTER (WHERE lease_expires_at < now()) AS expired
      FROM {schema}.items WHERE lease_expires_at IS NOT NULL GROUP BY queue
), trouble AS (
    SELECT queue, count(*) FILTER (WHERE status = 'failed') AS failed,
           count(*) FILTER (WHERE status = 'cancelled') AS cancelled
      FROM {schema}.items WHERE status IN ('failed', 'cancelled') GROUP BY queue
), last_hour AS (
    SELECT i.queue, count(*) FILTER (WHERE e.event = 'done') AS done_1h,
           count(*) FILTER (WHERE e.event = 'failed') AS failed_1h
      FROM {schema}.item_events e JOIN {schema}.items i ON i.id = e.item_id
     WHERE e.at > now() - interval '1 hour' AND e.event IN ('done', 'failed')
     GROUP BY i.queue
), names AS (
    SELECT queue FROM pending UNION SELECT queue FROM waiting UNION SELECT queue FROM claimed
    UNION SELECT queue FROM trouble UNION SELECT queue FROM last_hour UNION SELECT name FROM {schema}.queues
)
SELECT n.queue, coalesce(q.state, 'active') AS state, q.state_since, q.concurrency_limit, q.rate_limit,
       q.rate_window_seconds,
       coalesce(p.pending, 0) AS pending, p.oldest_pending_seconds, coalesce(w.waiting, 0) AS waiting,
       coalesce(c.claimed, 0) AS claimed, coalesce(c.expired, 0) AS expired, coalesce(f.failed, 0) AS failed,
       coalesce(f.cancelled, 0) AS cancelled,
       coalesce(h.done_1h, 0) AS done_1h, coalesce(h.failed_1h, 0) AS failed_1h
  FROM names n
  LEFT JOIN {schema}.queues q ON q.name = n.queue
  LEFT JOIN pending p ON p.queue = n.queue
  LEFT JOIN waiting w ON w.queue = n.queue
  LEFT JOIN claimed c ON c.queue = n.queue
  LEFT JOIN trouble f ON f.queue = n.queue
  LEFT JOIN last_hour h ON h.queue = n.queue
 WHERE %(queues)s::text[] IS NULL OR n.queue = ANY(%(queues)s::text[])
 ORDER BY n.queue;

-- name: stats_throughput
-- Items done and attempts failed per time bucket over the last `window_seconds`, every bucket present (zero
-- when none), oldest first; `queues` NULL: every queue, `queue` one of them. Events are found by time
-- (item_events_at_idx); only with a queue filter is each event's item looked up (by primary key).
WITH buckets AS (
    SELECT generate_series(
               date_bin(make_interval(secs => %(bucket_seconds)s::float8),
                        now() - make_interval(secs => %(window_seconds)s::float8), timestamptz 'epoch'),
               now(), make_interval(secs => %(bucket_seconds)s::float8)) AS at
), counted AS (
    SELECT date_bin(make_interval(secs => %(bucket_seconds)s::float8), e.at, timestamptz 'epoch') AS at,
           count(*) FILTER (WHERE e.event = 'done') AS done, count(*) FILTER (WHERE e.event = 'failed') AS failed
      FROM {schema}.item_events e
     WHERE e.at > now() - make_interval(secs => %(window_seconds)s::float8) AND e.event IN ('done', 'failed')
       AND (%(queues)s::text[] IS NULL AND %(queue)s::text IS NULL
            OR EXISTS (SELECT 1 FROM {schema}.items i
                        WHERE i.id = e.item_id
                          AND (%(queues)s::text[] IS NULL OR i.queue = ANY(%(queues)s::text[]))
                          AND (%(queue)s::text IS NULL OR i.queue = %(queue)s::text)))
     GROUP BY 1
)
SELECT b.at, coalesce(c.done, 0) AS done, coalesce(c.failed, 0) AS failed
  FROM buckets b LEFT JOIN counted c ON c.at = b.at
 ORDER BY b.at;
