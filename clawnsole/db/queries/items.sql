-- Every runtime statement on work items, named subject-then-verb. `{schema}` is replaced by the quoted
-- schema name when the registry is loaded. Times come from the database clock (now()).

-- name: schema_version
-- The newest migration applied to this schema (NULL when the ledger does not exist yet).
SELECT CASE WHEN to_regclass(%(ledger)s) IS NULL THEN NULL
            ELSE (SELECT max(version) FROM {schema}.schema_migrations) END AS version;

-- name: item_dedupe_release
-- Let go of a dedupe key whose finished holder's cooldown has run out, so the next enqueue creates a new item.
UPDATE {schema}.items
   SET dedupe_held = false, updated_at = now()
 WHERE queue = %(queue)s::text AND dedupe_key = %(dedupe_key)s::text AND dedupe_held
   AND status IN ('done', 'failed', 'cancelled')
   AND dedupe_cooldown IS NOT NULL AND finished_at + dedupe_cooldown <= now();

-- name: item_enqueue
-- Insert one item, or return the item holding its dedupe key (created = false; `cooled` when that holder
-- is finished and its cooldown has run out since the release step: release again and retry). Records
-- `enqueued` and wakes listeners. Returns no row when a racing holder committed after this statement's
-- snapshot: retry.
WITH ins AS (
    INSERT INTO {schema}.items (queue, kind, title, instructions, payload, priority, dedupe_key,
                                dedupe_cooldown, dedupe_held, run_at, max_attempts, backoff_seconds,
                                lease_seconds)
    VALUES (%(queue)s::text, %(kind)s::text, %(title)s::text, %(instructions)s::text, %(payload)s::jsonb,
            %(priority)s::int, %(dedupe_key)s::text,
            make_interval(secs => %(cooldown)s::float8), %(dedupe_key)s::text IS NOT NULL,
            coalesce(%(run_at)s::timestamptz, now() + make_interval(secs => coalesce(%(delay)s::float8, 0))),
            %(max_attempts)s::int, %(backoff)s::float8, %(lease)s::float8)
    ON CONFLICT (queue, dedupe_key) WHERE dedupe_held DO NOTHING
    RETURNING *
), ev AS (
    INSERT INTO {schema}.item_events (item_id, event, agent)
    SELECT id, 'enqueued', %(agent)s::text FROM ins
)
SELECT ins.*, true AS created, false AS cooled, pg_notify(%(channel)s, ins.queue) IS NULL AS notified FROM ins
UNION ALL
SELECT i.*, false AS created,
       i.status IN ('done', 'failed', 'cancelled') AND i.dedupe_cooldown IS NOT NULL
         AND i.finished_at + i.dedupe_cooldown <= now() AS cooled,
       false AS notified
  FROM {schema}.items i
 WHERE %(dedupe_key)s::text IS NOT NULL AND i.queue = %(queue)s AND i.dedupe_key = %(dedupe_key)s AND i.dedupe_held
   AND NOT EXISTS (SELECT 1 FROM ins);

-- name: item_enqueue_many
-- Insert a batch of items without dedupe keys in one statement, from one JSON array of objects (one
-- parameter: cheaper to build, send and parse than ten arrays); records `enqueued` and wakes listeners once
-- per queue (PostgreSQL folds identical notifications within a transaction). Ids come back in batch order.
WITH ins AS (
    INSERT INTO {schema}.items (queue, kind, title, instructions, payload, priority, run_at, max_attempts,
                                backoff_seconds, lease_seconds)
    SELECT n.queue, n.kind, n.title, n.instructions, coalesce(n.payload, '{}'::jsonb), n.priority,
           coalesce(n.run_at, now()), n.max_attempts, n.backoff, n.lease
      FROM jsonb_to_recordset(%(items)s::jsonb)
           AS n(queue text, kind text, title text, instructions text, payload jsonb, priority int,
                run_at timestamptz, max_attempts int, backoff float8, lease float8)
    RETURNING id, queue
), ev AS (
    INSERT INTO {schema}.item_events (item_id, event, agent)
    SELECT id, 'enqueued', %(agent)s::text FROM ins
), notified AS (
    SELECT pg_notify(%(channel)s, queue) FROM (SELECT DISTINCT queue FROM ins) q
)
SELECT id FROM ins WHERE (SELECT count(*) FROM notified) >= 0 ORDER BY id;

-- name: lease_recover_expired
-- Give back items whose lease ran out: to pending when attempts remain, else to failed ("lease expired").
-- Run by claim-next itself, so no separate rescuer process is needed. SKIP LOCKED never waits, so the lock
-- order cannot deadlock. Wakes the queues' listeners when an item became pending again.
WITH expired AS (
    SELECT id FROM {schema}.items
     WHERE status = 'claimed' AND lease_expires_at < now() AND queue = ANY(%(queues)s::text[])
     ORDER BY lease_expires_at
     LIMIT 100
     FOR UPDATE SKIP LOCKED
), upd AS (
    UPDATE {schema}.items i
       SET status       = CASE WHEN i.attempts >= i.max_attempts THEN 'failed' ELSE 'pending' END,
           last_error   = 'lease expired',
           finished_at  = CASE WHEN i.attempts >= i.max_attempts THEN now() END,
           claimed_by   = NULL,
           lease_expires_at = NULL,
           updated_at   = now()
      FROM expired e
     WHERE i.id = e.id
    RETURNING i.id, i.queue, i.status, i.attempts, i.lease_token
), ev AS (
    INSERT INTO {schema}.item_events (item_id, event, agent, detail)
    SELECT id, 'lease_expired', NULL,
           jsonb_build_object('attempt', attempts, 'now', status, 'lease', lease_token) FROM upd
), notified AS (
    SELECT pg_notify(%(channel)s, queue) FROM (SELECT DISTINCT queue FROM upd WHERE status = 'pending') q
)
SELECT id, status FROM upd WHERE (SELECT count(*) FROM notified) >= 0;

-- name: item_claim
-- Claim up to `limit` due items from one or more queues: highest priority, then earliest run_at, then FIFO.
-- Each queue is read through items_claimable_idx in index order (a scalar `queue =` per queue keeps the
-- order; `queue = ANY(...)` would not and forces a sort of every pending row). Every eligibility filter sits
-- inside the locking subquery with its LIMIT, so no more rows are locked than can be returned; SKIP LOCKED
-- lets concurrent workers take disjoint rows without waiting. `plan` says how many rows each queue may lock:
-- all `limit` for one queue; for several, how many of the best `limit` candidates each holds, read first
-- without locking (locking `limit` per queue and cutting the merge would leave the extras locked until the
-- caller's transaction ends). Only the branch for the number of queues given runs (a one-time filter). Rows
-- a concurrent claim holds are skipped, so several queues may yield fewer than `limit` while more are due:
-- the caller claims again.
WITH plan AS (
    SELECT (%(queues)s::text[])[1] AS name, %(limit)s::int AS take
     WHERE cardinality(%(queues)s::text[]) = 1
    UNION ALL
    SELECT c.queue, count(*)::int
      FROM (SELECT c.queue
              FROM unnest(%(queues)s::text[]) AS q(name)
              CROSS JOIN LATERAL (
                  SELECT queue, id, priority, run_at FROM {schema}.items
                   WHERE queue = q.name AND status = 'pending' AND run_at <= now()
                   ORDER BY priority DESC, run_at, id
                   LIMIT %(limit)s::int
              ) c
             WHERE cardinality(%(queues)s::text[]) > 1
             ORDER BY c.priority DESC, c.run_at, c.id
             LIMIT %(limit)s::int) c
     GROUP BY c.queue
), next AS (
    SELECT c.id
      FROM plan
      CROSS JOIN LATERAL (
          SELECT id FROM {schema}.items
           WHERE queue = plan.name AND status = 'pending' AND run_at <= now()
           ORDER BY priority DESC, run_at, id
           LIMIT plan.take
           FOR UPDATE SKIP LOCKED
      ) c
     LIMIT %(limit)s::int  -- never more (the plan says so): tells the planner how few rows the update joins
), claimed AS (
    UPDATE {schema}.items i
       SET status = 'claimed', claimed_by = %(agent)s::text, attempts = i.attempts + 1,
           lease_token = gen_random_uuid(),
           lease_seconds = coalesce(%(lease)s::float8, i.lease_seconds),
           lease_expires_at = now() + make_interval(secs => coalesce(%(lease)s::float8, i.lease_seconds)),
           claimed_at = now(), updated_at = now(), progress_note = NULL, progress_percent = NULL
      FROM next
     WHERE i.id = next.id
    RETURNING i.*
), ev AS (
    INSERT INTO {schema}.item_events (item_id, event, agent, detail)
    SELECT id, 'claimed', claimed_by, jsonb_build_object('attempt', attempts) FROM claimed
)
SELECT * FROM claimed ORDER BY priority DESC, run_at, id;

-- name: lease_extend
-- Renew a held lease and record progress; fenced by the lease token (and the holder when one is named):
-- zero rows means the lease is lost.
WITH upd AS (
    UPDATE {schema}.items
       SET lease_expires_at = now() + make_interval(secs => coalesce(%(extend)s::float8, lease_seconds)),
           progress_note    = coalesce(%(note)s::text, progress_note),
           progress_percent = coalesce(%(percent)s::smallint, progress_percent),
           updated_at       = now()
     WHERE id = %(id)s AND status = 'claimed' AND claimed_by = coalesce(%(agent)s::text, claimed_by)
       AND lease_token = %(lease_token)s::uuid
    RETURNING *
), ev AS (
    INSERT INTO {schema}.item_events (item_id, event, agent, detail)
    SELECT id, 'progress', claimed_by, jsonb_strip_nulls(jsonb_build_object('note', %(note)s::text,
                                                                            'percent', %(percent)s::int))
      FROM upd WHERE %(record)s::bool
)
SELECT * FROM upd;

-- name: lease_extend_many
-- Heartbeat for a worker: renew every listed lease it still holds; returns the ids still held.
-- Each listed lease is checked and locked by its own primary-key lookup, in the order given — the caller
-- sorts by id, so every multi-row statement takes its locks in id order and two of them (a heartbeat and a
-- finisher) cannot deadlock. (A LATERAL with FOR UPDATE is never flattened into a join: the plan stays one
-- index lookup per item whatever the statistics say.) The update then finds each row by id: a row renewed
-- by a concurrent statement while this one waited for its lock is still found (a row address taken before
-- the wait would point at the old version and match nothing).
WITH held AS (
    SELECT h.id
      FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[]) AS d(id, token)
     CROSS JOIN LATERAL (
          SELECT i.id FROM {schema}.items i
           WHERE i.id = d.id AND i.lease_token = d.token AND i.status = 'claimed'
             AND i.claimed_by = %(agent)s::text
             FOR UPDATE
      ) h
)
UPDATE {schema}.items i
   SET lease_expires_at = now() + make_interval(secs => i.lease_seconds), updated_at = now()
  FROM held
 WHERE i.id = held.id
RETURNING i.id, i.lease_token AS token;

-- name: item_complete
-- Mark a held item done with its result; fenced by the lease token (and the holder when one is named).
WITH upd AS (
    UPDATE {schema}.items
       SET status = 'done', result = %(result)s::jsonb, finished_at = now(), lease_expires_at = NULL,
           progress_percent = 100, updated_at = now()
     WHERE id = %(id)s AND status = 'claimed' AND claimed_by = coalesce(%(agent)s::text, claimed_by)
       AND lease_token = %(lease_token)s::uuid
    RETURNING *
), ev AS (
    INSERT INTO {schema}.item_events (item_id, event, agent)
    SELECT id, 'done', claimed_by FROM upd
)
SELECT * FROM upd;

-- name: item_complete_many
-- Mark a batch of held items done in one statement; returns the ids whose lease was still held.
-- Each listed lease is checked and locked by its own primary-key lookup, in the order given — the caller
-- sorts by id, so every multi-row statement takes its locks in id order and two of them (a heartbeat and a
-- finisher) cannot deadlock. (A LATERAL with FOR UPDATE is never flattened into a join: the plan stays one
-- index lookup per item whatever the statistics say.) The update then finds each row by id: a row renewed
-- by a concurrent statement while this one waited for its lock is still found (a row address taken before
-- the wait would point at the old version and match nothing).
WITH held AS (
    SELECT h.id, d.result
      FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[], %(results)s::jsonb[]) AS d(id, token, result)
     CROSS JOIN LATERAL (
          SELECT i.id FROM {schema}.items i
           WHERE i.id = d.id AND i.lease_token = d.token AND i.status = 'claimed'
             AND i.claimed_by = %(agent)s::text
             FOR UPDATE
      ) h
), upd AS (
    UPDATE {schema}.items i
       SET status = 'done', result = held.result, finished_at = now(), lease_expires_at = NULL,
           progress_percent = 100, updated_at = now()
      FROM held
     WHERE i.id = held.id
    RETURNING i.id, i.lease_token AS token
), ev AS (
    INSERT INTO {schema}.item_events (item_id, event, agent)
    SELECT id, 'done', %(agent)s::text FROM upd
)
SELECT id, token FROM upd;

-- name: item_fail
-- Record a failed attempt: back to pending after a jittered exponential backoff while attempts remain and
-- retry is allowed, else to failed (dead letter). Fenced by the lease token (and the holder when one is
-- named). The exponential is capped before the jitter, at an hour or the base when that is longer, so
-- capped retries still spread out and a base of two hours is kept. Wakes the queue's listeners on a retry.
WITH cur AS (
    SELECT id, claimed_by AS holder, (%(retry)s::bool AND attempts < max_attempts) AS again,
           least(coalesce(%(backoff)s::float8, backoff_seconds) * power(2, greatest(attempts - 1, 0)),
                 greatest(coalesce(%(backoff)s::float8, backoff_seconds), 3600))
             * (0.8 + random() * 0.4) AS delay
      FROM {schema}.items
     WHERE id = %(id)s AND status = 'claimed' AND claimed_by = coalesce(%(agent)s::text, claimed_by)
       AND lease_token = %(lease_token)s::uuid
       FOR UPDATE
), upd AS (
    UPDATE {schema}.items i
       SET status = CASE WHEN cur.again THEN 'pending' ELSE 'failed' END,
           run_at = CASE WHEN cur.again THEN now() + make_interval(secs => cur.delay) ELSE i.run_at END,
           finished_at = CASE WHEN cur.again THEN NULL ELSE now() END,
           last_error = %(error)s::text, claimed_by = NULL, lease_expires_at = NULL, updated_at = now()
      FROM cur
     WHERE i.id = cur.id
    RETURNING i.*, cur.again, cur.delay, cur.holder
), ev AS (
    INSERT INTO {schema}.item_events (item_id, event, agent, detail)
    SELECT id, CASE WHEN again THEN 'retry_scheduled' ELSE 'failed' END, holder,
           jsonb_build_object('error', %(error)s::text, 'attempt', attempts)
             || CASE WHEN again THEN jsonb_build_object('retry_at', run_at, 'delay_seconds', round(delay::numeric, 3))
                     ELSE '{}'::jsonb END
      FROM upd
), notified AS (
    SELECT pg_notify(%(channel)s, queue) FROM upd WHERE again
)
SELECT * FROM upd WHERE (SELECT count(*) FROM notified) >= 0;

-- name: lease_release_many
-- Give held items back to pending without charging the attempt (graceful shutdown); returns released ids and
-- wakes the queues' listeners, so another worker takes them up at once.
-- Each listed lease is checked and locked by its own primary-key lookup, in the order given — the caller
-- sorts by id, so every multi-row statement takes its locks in id order.
WITH held AS (
    SELECT h.id
      FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[]) AS d(id, token)
     CROSS JOIN LATERAL (
          SELECT i.id FROM {schema}.items i
           WHERE i.id = d.id AND i.lease_token = d.token AND i.status = 'claimed'
             AND i.claimed_by = %(agent)s::text
             FOR UPDATE
      ) h
), upd AS (
    UPDATE {schema}.items i
       SET status = 'pending', attempts = greatest(i.attempts - 1, 0), claimed_by = NULL,
           lease_expires_at = NULL, updated_at = now()
      FROM held
     WHERE i.id = held.id
    RETURNING i.id, i.queue, i.lease_token AS token
), ev AS (
    INSERT INTO {schema}.item_events (item_id, event, agent, detail)
    SELECT id, 'released', %(agent)s::text, jsonb_build_object('reason', %(reason)s::text) FROM upd
), notified AS (
    SELECT pg_notify(%(channel)s, queue) FROM (SELECT DISTINCT queue FROM upd) q
)
SELECT id, token FROM upd WHERE (SELECT count(*) FROM notified) >= 0;

-- name: item_cancel
-- Cancel a pending item.
WITH upd AS (
    UPDATE {schema}.items
       SET status = 'cancelled', finished_at = now(), updated_at = now()
     WHERE id = %(id)s AND status = 'pending'
    RETURNING *
), ev AS (
    INSERT INTO {schema}.item_events (item_id, event, agent, detail)
    SELECT id, 'cancelled', %(agent)s::text, jsonb_strip_nulls(jsonb_build_object('reason', %(reason)s::text)) FROM upd
)
SELECT * FROM upd;

-- name: item_requeue
-- Put a failed (or cancelled) item back to pending now with a fresh set of attempts.
WITH upd AS (
    UPDATE {schema}.items
       SET status = 'pending', attempts = 0, run_at = now(), finished_at = NULL, claimed_by = NULL,
           lease_expires_at = NULL, updated_at = now()
     WHERE id = %(id)s AND status IN ('failed', 'cancelled')
    RETURNING *
), ev AS (
    INSERT INTO {schema}.item_events (item_id, event, agent)
    SELECT id, 'requeued', %(agent)s::text FROM upd
), notified AS (
    SELECT pg_notify(%(channel)s, queue) FROM upd
)
SELECT * FROM upd WHERE (SELECT count(*) FROM notified) >= 0;

-- name: item_get
-- One item by id.
SELECT * FROM {schema}.items WHERE id = %(id)s;

-- name: item_list
-- Items filtered by queue and status, newest first.
SELECT * FROM {schema}.items
 WHERE (%(queue)s::text IS NULL OR queue = %(queue)s)
   AND (%(status)s::text IS NULL OR status = %(status)s)
 ORDER BY id DESC
 LIMIT %(limit)s::int;

-- name: item_history
-- The event history of one item, oldest first.
SELECT id, item_id, at, event, agent, detail FROM {schema}.item_events WHERE item_id = %(id)s ORDER BY id;

-- name: queue_status
-- Counts per queue and status, the age of the oldest due pending item, and leases past their expiry.
SELECT queue, status, count(*) AS items,
       extract(epoch FROM now() - min(run_at) FILTER (WHERE status = 'pending' AND run_at <= now()))
         AS oldest_pending_seconds,
       count(*) FILTER (WHERE status = 'claimed' AND lease_expires_at < now()) AS expired_leases
  FROM {schema}.items
 WHERE (%(queue)s::text IS NULL OR queue = %(queue)s)
 GROUP BY queue, status
 ORDER BY queue, status;

-- name: queue_next_due
-- Seconds until the earliest pending item in these queues becomes due (NULL when none is waiting).
SELECT extract(epoch FROM min(run_at) - now()) AS seconds
  FROM {schema}.items WHERE queue = ANY(%(queues)s::text[]) AND status = 'pending';
