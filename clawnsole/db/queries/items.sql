-- Every runtime statement on work items, named subject-then-verb. `{schema}` is replaced by the quoted
-- schema name when the registry is loaded. Times come from the database clock (now()).

-- name: schema_version
-- The newest migration applied to this schema (NULL when the ledger does not exist yet).
SELECT CASE WHEN to_regclass(%(ledger)s) IS NULL THEN NULL
            ELSE (SELECT max(version) FROM {schema}.schema_migrations) END AS version;

-- name: item_dedupe_release
-- Let go of a dedupe key whose finished holder's cooldown has run out, so the next enqueue creates a new item.
-- Not in a draining queue, where the enqueue that follows is refused and nothing may be written.
UPDATE {schema}.items
   SET dedupe_held = false, updated_at = now()
 WHERE queue = %(queue)s::text AND dedupe_key = %(dedupe_key)s::text AND dedupe_held
   AND status IN ('done', 'failed', 'cancelled')
   AND dedupe_cooldown IS NOT NULL AND finished_at + dedupe_cooldown <= now()
   AND NOT EXISTS (SELECT 1 FROM {schema}.queues q WHERE q.name = %(queue)s::text AND q.state = 'draining');

-- name: item_enqueue
-- Insert one item, or return the item holding its dedupe key (created = false; `cooled` when that holder
-- is finished and its cooldown has run out since the release step: release again and retry). Records
-- `enqueued` and wakes listeners. Returns no row when a racing holder committed after this statement's
-- snapshot: retry. Into a draining queue nothing is inserted and the one row returned says so (`refused`, its
-- item columns NULL): one primary-key probe of `queues`, which has no row for an uncontrolled queue.
WITH gate AS (
    SELECT EXISTS (SELECT 1 FROM {schema}.queues q WHERE q.name = %(queue)s::text AND q.state = 'draining')
             AS draining
), ins AS (
    INSERT INTO {schema}.items (queue, kind, title, instructions, payload, metadata, priority, dedupe_key,
                                dedupe_cooldown, dedupe_held, run_at, max_attempts, backoff_seconds,
                                lease_seconds)
    SELECT %(queue)s::text, %(kind)s::text, %(title)s::text, %(instructions)s::text, %(payload)s::jsonb,
           %(metadata)s::jsonb, %(priority)s::int, %(dedupe_key)s::text,
           make_interval(secs => %(cooldown)s::float8), %(dedupe_key)s::text IS NOT NULL,
           coalesce(%(run_at)s::timestamptz, now() + make_interval(secs => coalesce(%(delay)s::float8, 0))),
           %(max_attempts)s::int, %(backoff)s::float8, %(lease)s::float8
      FROM gate WHERE NOT gate.draining
    ON CONFLICT (queue, dedupe_key) WHERE dedupe_held DO NOTHING
    RETURNING *
), ev AS (
    INSERT INTO {schema}.item_events (item_id, event, agent)
    SELECT id, 'enqueued', %(agent)s::text FROM ins
)
SELECT ins.*, true AS created, false AS cooled, NULL::text AS refused,
       pg_notify(%(channel)s, ins.queue) IS NULL AS notified
  FROM ins
UNION ALL
SELECT i.*, false AS created,
       i.status IN ('done', 'failed', 'cancelled') AND i.dedupe_cooldown IS NOT NULL
         AND i.finished_at + i.dedupe_cooldown <= now() AS cooled,
       NULL AS refused, false AS notified
  FROM {schema}.items i
 WHERE %(dedupe_key)s::text IS NOT NULL AND i.queue = %(queue)s AND i.dedupe_key = %(dedupe_key)s AND i.dedupe_held
   AND NOT EXISTS (SELECT 1 FROM ins) AND NOT (SELECT draining FROM gate)
UNION ALL
SELECT (NULL::{schema}.items).*, false, false, 'draining', false FROM gate WHERE gate.draining;

-- name: item_enqueue_many
-- Insert a batch of items without dedupe keys in one statement, from one JSON array of objects (one
-- parameter: cheaper to build, send and parse than ten arrays). A row leaves out its queue and settings
-- when they are the batch's (`queue`, `priority`, `max_attempts`, `backoff`, `lease`). Records `enqueued` and wakes listeners once
-- per queue (PostgreSQL folds identical notifications within a transaction). One row: the new ids as one
-- array, in batch order (one value to decode instead of a row per item). All or nothing: when one of the
-- batch's `queues` is draining nothing is inserted, `ids` is NULL and `draining` names it: a primary-key
-- probe of `queues` per distinct queue.
WITH draining AS (
    SELECT min(q.name) AS queue FROM {schema}.queues q
     WHERE q.name = ANY(%(queues)s::text[]) AND q.state = 'draining'
), ins AS (
    INSERT INTO {schema}.items (queue, kind, title, instructions, payload, metadata, priority, run_at,
                                max_attempts, backoff_seconds, lease_seconds)
    SELECT coalesce(n.queue, %(queue)s::text), n.kind, n.title, n.instructions, coalesce(n.payload, '{}'::jsonb),
           n.metadata, coalesce(n.priority, %(priority)s::int), coalesce(n.run_at, now()),
           coalesce(n.max_attempts, %(max_attempts)s::int), coalesce(n.backoff, %(backoff)s::float8),
           coalesce(n.lease, %(lease)s::float8)
      FROM jsonb_to_recordset(%(items)s::jsonb)
           AS n(queue text, kind text, title text, instructions text, payload jsonb, metadata jsonb,
                priority int, run_at timestamptz, max_attempts int, backoff float8, lease float8)
     WHERE (SELECT queue FROM draining) IS NULL
    RETURNING id, queue
), ev AS (
    INSERT INTO {schema}.item_events (item_id, event, agent)
    SELECT id, 'enqueued', %(agent)s::text FROM ins
), notified AS (
    SELECT pg_notify(%(channel)s, queue) FROM (SELECT DISTINCT queue FROM ins) q
)
SELECT (SELECT array_agg(id ORDER BY id) FROM ins WHERE (SELECT count(*) FROM notified) >= 0) AS ids,
       (SELECT queue FROM draining) AS draining;

-- name: lease_recover_expired
-- Give back items whose lease ran out: to pending when attempts remain, else to failed ("lease expired").
-- Run by claim-next itself, so no separate rescuer process is needed. SKIP LOCKED never waits, so the lock
-- order cannot deadlock. Wakes the queues' listeners when an item became pending again. An item that ended
-- failed and has dependents cancels them (item_cancel_dependents, after every row here is updated: the
-- aggregate reads all of `upd` before the one call).
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
    RETURNING i.id, i.queue, i.status, i.attempts, i.lease_token, i.has_dependents
), ev AS (
    INSERT INTO {schema}.item_events (item_id, event, agent, detail)
    SELECT id, 'lease_expired', NULL,
           jsonb_build_object('attempt', attempts, 'now', status, 'lease', lease_token) FROM upd
), notified AS (
    SELECT pg_notify(%(channel)s, queue) FROM (SELECT DISTINCT queue FROM upd WHERE status = 'pending') q
), cascaded AS (
    SELECT {schema}.item_cancel_dependents(array_agg(id ORDER BY id), array_agg(status ORDER BY id), NULL)
      FROM upd WHERE status = 'failed' AND has_dependents HAVING count(*) > 0
)
SELECT id, status FROM upd WHERE (SELECT count(*) FROM notified) + (SELECT count(*) FROM cascaded) >= 0;

-- name: item_claim
-- Claim up to `limit` due items from one or more queues: highest priority, then earliest run_at, then FIFO.
-- Each queue is read through items_claimable_idx in index order (a scalar `queue =` per queue keeps the
-- order; `queue = ANY(...)` would not and forces a sort of every pending row). Every eligibility filter sits
-- inside the locking subquery with its LIMIT, so no more rows are locked than can be returned; SKIP LOCKED
-- lets concurrent workers take disjoint rows without waiting. `allowed` is what each queue's controls let
-- this claim take: nothing from a paused queue; all `limit` from a queue with no row or no limits (one
-- lookup in `queues`, by primary key or, while the table is one page, by reading that page; the CASE never
-- calls the function); for a limited queue, what queue_claim_allowance says, which locks the queue's row
-- until this transaction ends (in name order, so two claims of several limited queues cannot deadlock).
-- `plan` says how many rows each queue may lock: all `allowed` for one queue; for several, how many of the
-- best `limit` candidates each holds within its allowance, read first without locking (locking `limit` per
-- queue and cutting the merge would leave the extras locked until the caller's transaction ends). Only the
-- branch for the number of queues given runs (a one-time filter). Rows a concurrent claim holds are skipped,
-- so several queues may yield fewer than `limit` while more are due: the caller claims again. Each item
-- claimed from a limited queue is added to its rate window's counter as its event is written
-- (queue_claim_record; the row is locked already), and the event keeps the count it brought the window to.
-- (Done there rather than in a CTE of its own: a separate step cost every claim, limited or not, ~0.1 ms.)
WITH allowed AS (
    SELECT s.name, s.limited,
           CASE WHEN s.state = 'paused' THEN 0
                WHEN NOT s.limited THEN %(limit)s::int
                ELSE {schema}.queue_claim_allowance(s.name, %(limit)s::int) END AS take
      FROM (SELECT q.name, c.state, coalesce(c.concurrency_limit, c.rate_limit) IS NOT NULL AS limited
              FROM unnest(%(queues)s::text[]) AS q(name)
              LEFT JOIN {schema}.queues c ON c.name = q.name
             ORDER BY q.name) s
), plan AS (
    SELECT name, take FROM allowed
     WHERE cardinality(%(queues)s::text[]) = 1
    UNION ALL
    SELECT c.queue, count(*)::int
      FROM (SELECT c.queue
              FROM allowed a
              CROSS JOIN LATERAL (
                  SELECT queue, id, priority, run_at FROM {schema}.items
                   WHERE queue = a.name AND status = 'pending' AND run_at <= now()
                   ORDER BY priority DESC, run_at, id
                   LIMIT a.take
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
    SELECT id, 'claimed', claimed_by,
           CASE WHEN queue IN (SELECT name FROM allowed WHERE limited)
                THEN jsonb_strip_nulls(jsonb_build_object('attempt', attempts,
                                       'rate_window_claims', {schema}.queue_claim_record(queue, 1)))
                ELSE jsonb_build_object('attempt', attempts) END
      FROM claimed
)
-- The columns of an Item, no more: every one is decoded for every claimed item.
SELECT id, queue, kind, title, instructions, payload, priority, status, dedupe_key, run_at, attempts, max_attempts,
       claimed_by, lease_token, lease_expires_at, progress_note, progress_percent, result, last_error, created_at,
       updated_at, claimed_at, finished_at, metadata
  FROM claimed ORDER BY priority DESC, run_at, id;

-- name: item_claim_one
-- `item_claim` for one queue, the common case (a worker of one queue, `claim-next --queue Q`): the same
-- controls, order, locking and events without the multi-queue planning, which the planner otherwise works
-- through on every call — planning is most of a small claim's time (0.8 → 0.3 ms under EXPLAIN ANALYZE,
-- ~0.1 ms less per claim of one item). Same parameters as item_claim; the queue is the array's only name.
WITH allowed AS (
    SELECT c.name, coalesce(c.concurrency_limit, c.rate_limit) IS NOT NULL AS limited,
           CASE WHEN c.state = 'paused' THEN 0
                WHEN coalesce(c.concurrency_limit, c.rate_limit) IS NULL THEN %(limit)s::int
                ELSE {schema}.queue_claim_allowance(c.name, %(limit)s::int) END AS take
      FROM (SELECT (%(queues)s::text[])[1] AS name) q
      LEFT JOIN {schema}.queues c ON c.name = q.name
), next AS (
    SELECT c.id
      FROM allowed
      CROSS JOIN LATERAL (
          SELECT id FROM {schema}.items
           WHERE queue = (%(queues)s::text[])[1] AND status = 'pending' AND run_at <= now()
           ORDER BY priority DESC, run_at, id
           LIMIT allowed.take
           FOR UPDATE SKIP LOCKED
      ) c
     LIMIT %(limit)s::int  -- never more: tells the planner how few rows the update joins
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
    SELECT id, 'claimed', claimed_by,
           CASE WHEN (SELECT limited FROM allowed)
                THEN jsonb_strip_nulls(jsonb_build_object('attempt', attempts,
                                       'rate_window_claims', {schema}.queue_claim_record(queue, 1)))
                ELSE jsonb_build_object('attempt', attempts) END
      FROM claimed
)
-- The columns of an Item, no more: every one is decoded for every claimed item.
SELECT id, queue, kind, title, instructions, payload, priority, status, dedupe_key, run_at, attempts, max_attempts,
       claimed_by, lease_token, lease_expires_at, progress_note, progress_percent, result, last_error, created_at,
       updated_at, claimed_at, finished_at, metadata
  FROM claimed ORDER BY priority DESC, run_at, id;

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
-- Heartbeat for a worker: renew every listed lease it still holds; returns the ids still held (with the
-- token as text: the caller's key for the lease, compared as given).
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
RETURNING i.id, i.lease_token::text AS token;

-- name: item_complete
-- Mark a held item done with its result; fenced by the lease token (and the holder when one is named).
-- Only an item flagged has_dependents (read from the row as locked: a dependent enqueued while this waited
-- for the lock is flagged) calls item_release_dependents, in this statement and so this transaction.
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
), released AS (
    SELECT {schema}.item_release_dependents(array_agg(id), min(claimed_by), %(channel)s)
      FROM upd WHERE has_dependents HAVING count(*) > 0
)
SELECT * FROM upd WHERE (SELECT count(*) FROM released) >= 0;

-- name: item_complete_many
-- Mark a batch of held items done in one statement; returns the ids whose lease was still held (token as
-- text, as lease_extend_many).
-- Each listed lease is checked and locked by its own primary-key lookup, in the order given — the caller
-- sorts by id, so every multi-row statement takes its locks in id order and two of them (a heartbeat and a
-- finisher) cannot deadlock. (A LATERAL with FOR UPDATE is never flattened into a join: the plan stays one
-- index lookup per item whatever the statistics say.) The update then finds each row by id: a row renewed
-- by a concurrent statement while this one waited for its lock is still found (a row address taken before
-- the wait would point at the old version and match nothing). Items flagged has_dependents release their
-- dependents in one call of item_release_dependents after every row here is done (the aggregate reads all
-- of `upd` first): the items this finishes are locked before any dependent (see the lock order in 0003).
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
    RETURNING i.id, i.lease_token AS token, i.has_dependents
), ev AS (
    INSERT INTO {schema}.item_events (item_id, event, agent)
    SELECT id, 'done', %(agent)s::text FROM upd
), released AS (
    SELECT {schema}.item_release_dependents(array_agg(id ORDER BY id), %(agent)s::text, %(channel)s)
      FROM upd WHERE has_dependents HAVING count(*) > 0
)
SELECT id, token::text AS token FROM upd WHERE (SELECT count(*) FROM released) >= 0;

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
), cascaded AS (
    -- Failed for good with dependents: they are cancelled, transitively, in this transaction.
    SELECT {schema}.item_cancel_dependents(ARRAY[id], ARRAY['failed'], holder)
      FROM upd WHERE NOT again AND has_dependents
)
SELECT * FROM upd WHERE (SELECT count(*) FROM notified) + (SELECT count(*) FROM cascaded) >= 0;

-- name: lease_release_many
-- Give held items back to pending without charging the attempt (graceful shutdown); returns released ids
-- (token as text, as lease_extend_many) and wakes the queues' listeners, so another worker takes them up at
-- once.
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
SELECT id, token::text AS token FROM upd WHERE (SELECT count(*) FROM notified) >= 0;

-- name: item_cancel
-- Cancel a pending or waiting item; its waiting dependents are cancelled too, transitively, with a reason
-- naming it (item_cancel_dependents, only when it has dependents).
WITH upd AS (
    UPDATE {schema}.items
       SET status = 'cancelled', waiting_for = 0, finished_at = now(), updated_at = now()
     WHERE id = %(id)s AND status IN ('pending', 'waiting')
    RETURNING *
), ev AS (
    INSERT INTO {schema}.item_events (item_id, event, agent, detail)
    SELECT id, 'cancelled', %(agent)s::text, jsonb_strip_nulls(jsonb_build_object('reason', %(reason)s::text)) FROM upd
), cascaded AS (
    SELECT {schema}.item_cancel_dependents(ARRAY[id], ARRAY['cancelled'], %(agent)s::text)
      FROM upd WHERE has_dependents
)
SELECT * FROM upd WHERE (SELECT count(*) FROM cascaded) >= 0;

-- name: item_requeue
-- Put a failed (or cancelled) item back with a fresh set of attempts: pending now, or waiting when some of
-- its prerequisites are not done (waiting_for counts them; a failed or cancelled one must be retried for it
-- to run). The prerequisites are locked and read after the lock, in the order of migration 0003 (those not
-- waiting first, then the waiting ones, each in id order), so one completing at the same moment is either
-- seen done here or waits for this and then releases the item. For an item without prerequisites that is
-- one probe of item_dependencies. Wakes the queue's listeners when the item became pending.
WITH pre AS (
    SELECT p.status
      FROM unnest(ARRAY(SELECT d.prerequisite_id
                          FROM {schema}.item_dependencies d
                          JOIN {schema}.items pi ON pi.id = d.prerequisite_id
                         WHERE d.item_id = %(id)s::bigint
                         ORDER BY pi.status = 'waiting', pi.id)) AS o(id)
     CROSS JOIN LATERAL (SELECT i.status FROM {schema}.items i WHERE i.id = o.id FOR UPDATE) p
), unfinished AS (
    SELECT count(*) FILTER (WHERE status <> 'done')::int AS n FROM pre
), upd AS (
    UPDATE {schema}.items i
       SET status = CASE WHEN u.n > 0 THEN 'waiting' ELSE 'pending' END, waiting_for = u.n,
           attempts = 0, run_at = now(), finished_at = NULL, claimed_by = NULL, lease_expires_at = NULL,
           updated_at = now()
      FROM unfinished u
     WHERE i.id = %(id)s AND i.status IN ('failed', 'cancelled')
    RETURNING i.*
), ev AS (
    INSERT INTO {schema}.item_events (item_id, event, agent, detail)
    SELECT id, 'requeued', %(agent)s::text,
           CASE WHEN status = 'waiting' THEN jsonb_build_object('now', 'waiting', 'waiting_for', waiting_for) END
      FROM upd
), notified AS (
    SELECT pg_notify(%(channel)s, queue) FROM upd WHERE status = 'pending'
)
SELECT * FROM upd WHERE (SELECT count(*) FROM notified) >= 0;

-- name: item_get
-- One item by id.
SELECT * FROM {schema}.items WHERE id = %(id)s;

-- name: item_list
-- Items filtered by queue, status and metadata (JSON containment: items_metadata_idx can serve it), newest
-- first.
SELECT * FROM {schema}.items
 WHERE (%(queue)s::text IS NULL OR queue = %(queue)s)
   AND (%(status)s::text IS NULL OR status = %(status)s)
   AND (%(metadata)s::jsonb IS NULL OR metadata @> %(metadata)s::jsonb)
 ORDER BY id DESC
 LIMIT %(limit)s::int;

-- name: item_history
-- The event history of one item, oldest first.
SELECT id, item_id, at, event, agent, detail FROM {schema}.item_events WHERE item_id = %(id)s ORDER BY id;

-- name: queue_status
-- Counts per queue and status, the age of the oldest due pending item, leases past their expiry, dedupe keys
-- still held in their cooldown by finished items, and the counts by kind and by priority (JSON objects; a
-- kind of NULL is "(none)", which no kind name can be). One pass over items grouped by all four, then folded.
WITH cells AS (
    SELECT queue, status, kind, priority, count(*) AS items,
           min(run_at) FILTER (WHERE status = 'pending' AND run_at <= now()) AS oldest_due,
           count(*) FILTER (WHERE status = 'claimed' AND lease_expires_at < now()) AS expired_leases,
           count(*) FILTER (WHERE dedupe_held AND status IN ('done', 'failed', 'cancelled')
                              AND dedupe_cooldown IS NOT NULL AND finished_at + dedupe_cooldown > now())
             AS dedupe_in_cooldown
      FROM {schema}.items
     WHERE (%(queue)s::text IS NULL OR queue = %(queue)s)
     GROUP BY queue, status, kind, priority
), kinds AS (
    SELECT queue, status, jsonb_object_agg(kind, items) AS by_kind
      FROM (SELECT queue, status, coalesce(kind, '(none)') AS kind, sum(items) AS items
              FROM cells GROUP BY 1, 2, 3) k
     GROUP BY queue, status
), priorities AS (
    SELECT queue, status, jsonb_object_agg(priority::text, items) AS by_priority
      FROM (SELECT queue, status, priority, sum(items) AS items FROM cells GROUP BY 1, 2, 3) p
     GROUP BY queue, status
)
SELECT c.queue, c.status, sum(c.items) AS items,
       extract(epoch FROM now() - min(c.oldest_due)) AS oldest_pending_seconds,
       sum(c.expired_leases) AS expired_leases, sum(c.dedupe_in_cooldown) AS dedupe_in_cooldown,
       k.by_kind, p.by_priority
  FROM cells c
  JOIN kinds k USING (queue, status)
  JOIN priorities p USING (queue, status)
 GROUP BY c.queue, c.status, k.by_kind, p.by_priority
 ORDER BY c.queue, c.status;

-- name: queue_next_due
-- Seconds until the earliest pending item in these queues becomes due (NULL when none is waiting).
SELECT extract(epoch FROM min(run_at) - now()) AS seconds
  FROM {schema}.items WHERE queue = ANY(%(queues)s::text[]) AND status = 'pending';

-- name: item_claim_by_id
-- Claim one pending item by id, due or not: `clawnsole handlers run` enqueues its item and claims it in one
-- transaction, so no worker ever sees it pending. Fenced on status = 'pending' (zero rows: it is not). The
-- queue's pause and limits are not consulted: a person asked for this very item to run now.
WITH claimed AS (
    UPDATE {schema}.items i
       SET status = 'claimed', claimed_by = %(agent)s::text, attempts = i.attempts + 1,
           lease_token = gen_random_uuid(),
           lease_seconds = coalesce(%(lease)s::float8, i.lease_seconds),
           lease_expires_at = now() + make_interval(secs => coalesce(%(lease)s::float8, i.lease_seconds)),
           claimed_at = now(), updated_at = now(), progress_note = NULL, progress_percent = NULL
     WHERE i.id = %(id)s::bigint AND i.status = 'pending'
    RETURNING i.*
), ev AS (
    INSERT INTO {schema}.item_events (item_id, event, agent, detail)
    SELECT id, 'claimed', claimed_by, jsonb_build_object('attempt', attempts) FROM claimed
)
SELECT * FROM claimed;
