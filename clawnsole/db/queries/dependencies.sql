-- Statements of dependency chains (`enqueue --after`), named subject-then-verb like items.sql. The release
-- and the cascade that finishing a prerequisite triggers are the functions of migration 0003, called by
-- item_complete, item_complete_many, item_fail, lease_recover_expired and item_cancel.

-- name: item_enqueue_after
-- item_enqueue for an item with prerequisites (`after`: distinct ids). Each prerequisite is locked and read
-- after its lock, in the order of migration 0003 (those not waiting first, then the waiting ones, each in id
-- order): a prerequisite finishing at the same moment is either seen done here, or waits for this insert and
-- then finds its new dependent. The item is cancelled at once when a prerequisite already ended failed or
-- cancelled (its `cancelled` event names the first such), waiting while any is not done (waiting_for counts
-- them), else pending. The prerequisites are flagged has_dependents — written even when already set, so a
-- completion in a REPEATABLE READ transaction that raced this gets a serialization failure rather than
-- missing the new dependent from its snapshot. Nothing is written when one does not
-- exist or the queue is draining: the one row returned then says `missing` (the smallest unknown id) or
-- `draining`, its item columns NULL. Otherwise like item_enqueue: the dedupe key's holder comes back with
-- created = false, and no row at all means a racing holder committed after this snapshot (retry).
WITH pre AS (
    SELECT p.id, p.status
      FROM unnest(ARRAY(SELECT i.id FROM {schema}.items i WHERE i.id = ANY(%(after)s::bigint[])
                         ORDER BY i.status = 'waiting', i.id)) AS o(id)
     CROSS JOIN LATERAL (
          SELECT i.id, i.status FROM {schema}.items i WHERE i.id = o.id FOR UPDATE
      ) p
), gate AS (
    SELECT (SELECT min(a) FROM unnest(%(after)s::bigint[]) AS a WHERE a NOT IN (SELECT id FROM pre)) AS missing,
           EXISTS (SELECT 1 FROM {schema}.queues q WHERE q.name = %(queue)s::text AND q.state = 'draining')
             AS draining,
           (SELECT min(id) FROM pre WHERE status IN ('failed', 'cancelled')) AS ended,
           (SELECT count(*) FROM pre WHERE status <> 'done')::int AS unfinished
), ins AS (
    INSERT INTO {schema}.items (queue, kind, title, instructions, payload, metadata, priority, dedupe_key,
                                dedupe_cooldown, dedupe_held, run_at, max_attempts, backoff_seconds,
                                lease_seconds, status, waiting_for, finished_at)
    SELECT %(queue)s::text, %(kind)s::text, %(title)s::text, %(instructions)s::text, %(payload)s::jsonb,
           %(metadata)s::jsonb, %(priority)s::int, %(dedupe_key)s::text,
           make_interval(secs => %(cooldown)s::float8), %(dedupe_key)s::text IS NOT NULL,
           coalesce(%(run_at)s::timestamptz, now() + make_interval(secs => coalesce(%(delay)s::float8, 0))),
           %(max_attempts)s::int, %(backoff)s::float8, %(lease)s::float8,
           CASE WHEN g.ended IS NOT NULL THEN 'cancelled' WHEN g.unfinished > 0 THEN 'waiting' ELSE 'pending' END,
           CASE WHEN g.ended IS NULL THEN g.unfinished ELSE 0 END,
           CASE WHEN g.ended IS NOT NULL THEN now() END
      FROM gate g WHERE g.missing IS NULL AND NOT g.draining
    ON CONFLICT (queue, dedupe_key) WHERE dedupe_held DO NOTHING
    RETURNING *
), deps AS (
    INSERT INTO {schema}.item_dependencies (item_id, prerequisite_id)
    SELECT ins.id, pre.id FROM ins, pre
), flagged AS (
    UPDATE {schema}.items i SET has_dependents = true
      FROM pre
     WHERE i.id = pre.id AND EXISTS (SELECT 1 FROM ins)
), ev AS (
    INSERT INTO {schema}.item_events (item_id, event, agent, detail)
    SELECT id, 'enqueued', %(agent)s::text, jsonb_build_object('after', %(after)s::bigint[]) FROM ins
    UNION ALL
    SELECT ins.id, 'cancelled', %(agent)s::text,
           jsonb_build_object('reason', format('prerequisite %%s %%s', g.ended, p.status), 'prerequisite', g.ended)
      FROM ins, gate g JOIN pre p ON p.id = g.ended
)
SELECT ins.*, true AS created, false AS cooled, NULL::text AS refused, NULL::bigint AS missing,
       (SELECT format('prerequisite %%s %%s', g.ended, p.status) FROM gate g JOIN pre p ON p.id = g.ended) AS note,
       CASE WHEN ins.status = 'pending' THEN pg_notify(%(channel)s, ins.queue) IS NULL ELSE false END AS notified
  FROM ins
UNION ALL
SELECT i.*, false AS created,
       i.status IN ('done', 'failed', 'cancelled') AND i.dedupe_cooldown IS NOT NULL
         AND i.finished_at + i.dedupe_cooldown <= now() AS cooled,
       NULL, NULL, NULL, false
  FROM {schema}.items i
 WHERE %(dedupe_key)s::text IS NOT NULL AND i.queue = %(queue)s AND i.dedupe_key = %(dedupe_key)s AND i.dedupe_held
   AND NOT EXISTS (SELECT 1 FROM ins) AND (SELECT missing IS NULL AND NOT draining FROM gate)
UNION ALL
SELECT (NULL::{schema}.items).*, false, false,
       CASE WHEN g.missing IS NOT NULL THEN 'missing' ELSE 'draining' END, g.missing, NULL, false
  FROM gate g WHERE g.missing IS NOT NULL OR g.draining;

-- name: item_enqueue_many_after
-- item_enqueue_many (the same parameters) for a batch in which some items have prerequisites (`after` of
-- each, distinct ids of items that exist already). Every prerequisite of the batch is locked once, in the
-- order of item_enqueue_after, before any insert; each item's status and waiting_for come from its own
-- prerequisites as read after those locks.
-- All or nothing: with an unknown prerequisite or a draining queue nothing is written and the row returned
-- says which (`refused`: missing or draining; `ids` NULL). Rows are inserted in batch order, so the n-th new
-- id (`ids` is in batch order, like item_enqueue_many's) is the n-th item's, which is how its dependencies
-- find it.
WITH wanted AS (
    SELECT DISTINCT a.id
      FROM jsonb_to_recordset(%(items)s::jsonb) AS n(after bigint[])
     CROSS JOIN LATERAL unnest(n.after) AS a(id)
), pre AS (
    SELECT p.id, p.status
      FROM unnest(ARRAY(SELECT i.id FROM {schema}.items i WHERE i.id IN (SELECT id FROM wanted)
                         ORDER BY i.status = 'waiting', i.id)) AS o(id)
     CROSS JOIN LATERAL (
          SELECT i.id, i.status FROM {schema}.items i WHERE i.id = o.id FOR UPDATE
      ) p
), gate AS (
    SELECT (SELECT min(id) FROM wanted WHERE id NOT IN (SELECT id FROM pre)) AS missing,
           (SELECT min(q.name) FROM {schema}.queues q
             WHERE q.name = ANY(%(queues)s::text[]) AND q.state = 'draining') AS draining
), batch AS (
    SELECT n.*, s.ended, s.ended_status, s.unfinished
      FROM ROWS FROM (jsonb_to_recordset(%(items)s::jsonb)
               AS (queue text, kind text, title text, instructions text, payload jsonb, metadata jsonb,
                   priority int, run_at timestamptz, max_attempts int, backoff float8, lease float8,
                   after bigint[])) WITH ORDINALITY AS n(queue, kind, title, instructions, payload, metadata,
                                                        priority, run_at, max_attempts, backoff, lease,
                                                        after, ord)
     CROSS JOIN LATERAL (
          SELECT (array_agg(p.id ORDER BY p.id) FILTER (WHERE p.status IN ('failed', 'cancelled')))[1] AS ended,
                 (array_agg(p.status ORDER BY p.id) FILTER (WHERE p.status IN ('failed', 'cancelled')))[1]
                   AS ended_status,
                 (count(*) FILTER (WHERE p.status <> 'done'))::int AS unfinished
            FROM pre p WHERE p.id = ANY(coalesce(n.after, '{}'))
      ) s
), ins AS (
    INSERT INTO {schema}.items (queue, kind, title, instructions, payload, metadata, priority, run_at,
                                max_attempts, backoff_seconds, lease_seconds, status, waiting_for, finished_at)
    SELECT coalesce(b.queue, %(queue)s::text), b.kind, b.title, b.instructions, coalesce(b.payload, '{}'::jsonb),
           b.metadata, coalesce(b.priority, %(priority)s::int), coalesce(b.run_at, now()),
           coalesce(b.max_attempts, %(max_attempts)s::int), coalesce(b.backoff, %(backoff)s::float8),
           coalesce(b.lease, %(lease)s::float8),
           CASE WHEN b.ended IS NOT NULL THEN 'cancelled' WHEN b.unfinished > 0 THEN 'waiting' ELSE 'pending' END,
           CASE WHEN b.ended IS NULL THEN b.unfinished ELSE 0 END,
           CASE WHEN b.ended IS NOT NULL THEN now() END
      FROM batch b
     WHERE (SELECT missing IS NULL AND draining IS NULL FROM gate)
     ORDER BY b.ord
    RETURNING id, queue, status
), numbered AS (
    SELECT i.id, i.queue, i.status, b.after, b.ended, b.ended_status
      FROM (SELECT ins.*, row_number() OVER (ORDER BY ins.id) AS ord FROM ins) i
      JOIN batch b ON b.ord = i.ord
), deps AS (
    INSERT INTO {schema}.item_dependencies (item_id, prerequisite_id)
    SELECT n.id, a.id FROM numbered n CROSS JOIN LATERAL unnest(n.after) AS a(id)
), flagged AS (
    UPDATE {schema}.items i SET has_dependents = true
      FROM pre
     WHERE i.id = pre.id AND EXISTS (SELECT 1 FROM ins)
), ev AS (
    INSERT INTO {schema}.item_events (item_id, event, agent, detail)
    SELECT id, 'enqueued', %(agent)s::text,
           CASE WHEN after IS NOT NULL THEN jsonb_build_object('after', after) END
      FROM numbered
    UNION ALL
    SELECT id, 'cancelled', %(agent)s::text,
           jsonb_build_object('reason', format('prerequisite %%s %%s', ended, ended_status), 'prerequisite', ended)
      FROM numbered WHERE ended IS NOT NULL
), notified AS (
    SELECT pg_notify(%(channel)s, queue) FROM (SELECT DISTINCT queue FROM ins WHERE status = 'pending') q
)
SELECT (SELECT array_agg(id ORDER BY id) FROM ins WHERE (SELECT count(*) FROM notified) >= 0) AS ids,
       CASE WHEN g.missing IS NOT NULL THEN 'missing' WHEN g.draining IS NOT NULL THEN 'draining' END AS refused,
       g.draining, g.missing
  FROM gate g;

-- name: item_links
-- An item's prerequisites and dependents with their status, for `show` (both directions by index).
SELECT 'prerequisite' AS role, i.id, i.status, i.queue, i.title
  FROM {schema}.item_dependencies d JOIN {schema}.items i ON i.id = d.prerequisite_id
 WHERE d.item_id = %(id)s::bigint
UNION ALL
SELECT 'dependent', i.id, i.status, i.queue, i.title
  FROM {schema}.item_dependencies d JOIN {schema}.items i ON i.id = d.item_id
 WHERE d.prerequisite_id = %(id)s::bigint
ORDER BY role DESC, id;
