-- Dead letters: failed items (attempts used up, `fail --no-retry`, or a lease that expired on the last
-- attempt), listed and replayed in bulk. `{schema}` is replaced by the quoted schema name when the registry
-- is loaded; times come from the database clock (now()).
--
-- Every statement here filters with the same conditions, each switched off by a NULL parameter (a custom
-- plan folds the switched-off ones away, so `queue = $1` is left as an index condition):
--   queue, kind          one queue, one kind
--   exclude_kinds        kinds left out (an item without a kind is never left out by it)
--   cutoff, since        finished at or after `cutoff`, else after now() - `since` seconds
--   error                the last error contains this text (case-insensitive)
--   ids                  only these ids
--   max_replays          only items replayed fewer times than this (the seed's `maxRetries`)
-- They read through items_trouble_idx (queue, status, id) WHERE status IN ('failed', 'cancelled'): with a
-- queue, one range of it; without, its failed entries — never a done row.

-- name: deadletter_list
-- Dead letters matching the filter, newest failure first (a sort over the matching dead letters only).
SELECT * FROM {schema}.items
 WHERE status = 'failed'
   AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
   AND (%(kind)s::text IS NULL OR kind = %(kind)s::text)
   AND (kind IS NULL OR kind <> ALL(%(exclude_kinds)s::text[]))
   AND finished_at >= coalesce(%(cutoff)s::timestamptz, now() - make_interval(secs => %(since)s::float8),
                               '-infinity')
   AND (%(error)s::text IS NULL OR strpos(lower(last_error), lower(%(error)s::text)) > 0)
   AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s::bigint[]))
   AND (%(max_replays)s::int IS NULL OR %(max_replays)s::int > (
          SELECT count(*) FROM {schema}.item_events e
           WHERE e.item_id = items.id AND e.event = 'requeued' AND e.detail @> '{"replay": true}'))
 ORDER BY finished_at DESC, id DESC
 LIMIT %(limit)s::int;

-- name: deadletter_groups
-- Dead letters matching the filter counted per queue, kind and error (the first line of the last error,
-- at most 200 characters: a traceback's later lines differ where the cause does not), the group with the
-- newest failure first: what the dashboard's dead-letter page shows. A sort over the matching dead letters
-- only, like deadletter_list.
SELECT queue, kind, left(split_part(coalesce(last_error, ''), E'\n', 1), 200) AS error, count(*) AS items,
       max(finished_at) AS last_failed_at, min(finished_at) AS first_failed_at, max(id) AS last_id
  FROM {schema}.items
 WHERE status = 'failed'
   AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
   AND (%(kind)s::text IS NULL OR kind = %(kind)s::text)
   AND (kind IS NULL OR kind <> ALL(%(exclude_kinds)s::text[]))
   AND finished_at >= coalesce(%(cutoff)s::timestamptz, now() - make_interval(secs => %(since)s::float8),
                               '-infinity')
   AND (%(error)s::text IS NULL OR strpos(lower(last_error), lower(%(error)s::text)) > 0)
   AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s::bigint[]))
   AND (%(max_replays)s::int IS NULL OR %(max_replays)s::int > (
          SELECT count(*) FROM {schema}.item_events e
           WHERE e.item_id = items.id AND e.event = 'requeued' AND e.detail @> '{"replay": true}'))
 GROUP BY 1, 2, 3
 ORDER BY last_failed_at DESC NULLS LAST, last_id DESC
 LIMIT %(limit)s::int;

-- name: deadletter_count
-- How many dead letters match, per queue, with the highest matching id and the cutoff used: the plan of a
-- replay, which then touches no item above that id (an item failing meanwhile waits for the next replay)
-- and no item that failed before that cutoff, however long the replay takes.
SELECT queue, count(*) AS items, max(id) AS through_id,
       coalesce(%(cutoff)s::timestamptz, now() - make_interval(secs => %(since)s::float8)) AS cutoff
  FROM {schema}.items
 WHERE status = 'failed'
   AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
   AND (%(kind)s::text IS NULL OR kind = %(kind)s::text)
   AND (kind IS NULL OR kind <> ALL(%(exclude_kinds)s::text[]))
   AND finished_at >= coalesce(%(cutoff)s::timestamptz, now() - make_interval(secs => %(since)s::float8),
                               '-infinity')
   AND (%(error)s::text IS NULL OR strpos(lower(last_error), lower(%(error)s::text)) > 0)
   AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s::bigint[]))
   AND (%(max_replays)s::int IS NULL OR %(max_replays)s::int > (
          SELECT count(*) FROM {schema}.item_events e
           WHERE e.item_id = items.id AND e.event = 'requeued' AND e.detail @> '{"replay": true}'))
 GROUP BY queue
 ORDER BY queue;

-- name: deadletter_replay_batch
-- Replay one batch: the next `batch` matching dead letters with ids in (after, through], back to pending
-- now with fresh attempts — or to waiting when a prerequisite is not done, with waiting_for counting them,
-- as item_requeue does. Unlike item_requeue (which also takes cancelled items, whose prerequisites may still
-- change) the prerequisites are read without a lock: a failed item was claimed, so every prerequisite it has
-- was done by then, and done is final; only one deleted by cleanup is missing, and it does not count. Each row is
-- locked by its own primary-key lookup in id order (FOR UPDATE, not SKIP LOCKED: a row another
-- transaction holds for a moment is waited for, not left behind) and re-checked under the lock, so of two
-- concurrent replays the second finds the row pending and leaves it: each item is requeued once. Records
-- `requeued` with {"by", "replay": true}, wakes each queue that got pending items once, and returns the
-- highest id looked at (the next batch starts after it, even when every row of this one was taken by a
-- concurrent replay), the ids requeued, and how many went to waiting.
WITH batch AS MATERIALIZED (
    SELECT id FROM {schema}.items
     WHERE status = 'failed' AND id > %(after)s::bigint AND id <= %(through)s::bigint
       AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
       AND (%(kind)s::text IS NULL OR kind = %(kind)s::text)
       AND (kind IS NULL OR kind <> ALL(%(exclude_kinds)s::text[]))
       AND finished_at >= coalesce(%(cutoff)s::timestamptz, now() - make_interval(secs => %(since)s::float8),
                                   '-infinity')
       AND (%(error)s::text IS NULL OR strpos(lower(last_error), lower(%(error)s::text)) > 0)
       AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s::bigint[]))
       AND (%(max_replays)s::int IS NULL OR %(max_replays)s::int > (
              SELECT count(*) FROM {schema}.item_events e
               WHERE e.item_id = items.id AND e.event = 'requeued' AND e.detail @> '{"replay": true}'))
     ORDER BY id
     LIMIT %(batch)s::int
), locked AS (
    SELECT l.id
      FROM batch b
     CROSS JOIN LATERAL (
          SELECT i.id FROM {schema}.items i WHERE i.id = b.id AND i.status = 'failed' FOR UPDATE
      ) l
), unfinished AS (
    SELECT l.id, (SELECT count(*)::int FROM {schema}.item_dependencies d
                    JOIN {schema}.items p ON p.id = d.prerequisite_id
                   WHERE d.item_id = l.id AND p.status <> 'done') AS n
      FROM locked l
), upd AS (
    UPDATE {schema}.items i
       SET status = CASE WHEN u.n > 0 THEN 'waiting' ELSE 'pending' END, waiting_for = u.n,
           attempts = 0, run_at = now(), finished_at = NULL, claimed_by = NULL, lease_expires_at = NULL,
           updated_at = now()
      FROM unfinished u
     WHERE i.id = u.id AND i.status = 'failed'
    RETURNING i.id, i.queue, i.status, i.waiting_for
), ev AS (
    INSERT INTO {schema}.item_events (item_id, event, agent, detail)
    SELECT id, 'requeued', %(agent)s::text,
           jsonb_build_object('by', %(agent)s::text, 'replay', true)
             || CASE WHEN status = 'waiting' THEN jsonb_build_object('now', 'waiting', 'waiting_for', waiting_for)
                     ELSE '{}'::jsonb END
      FROM upd
), notified AS (
    SELECT pg_notify(%(channel)s, queue) FROM (SELECT DISTINCT queue FROM upd WHERE status = 'pending') q
)
SELECT (SELECT max(id) FROM batch) AS last_id,
       coalesce((SELECT array_agg(id ORDER BY id) FROM upd), '{}'::bigint[]) AS ids,
       coalesce((SELECT jsonb_object_agg(queue, n)
                   FROM (SELECT queue, count(*) AS n FROM upd GROUP BY queue) q), '{}'::jsonb) AS queues,
       (SELECT count(*) FROM upd WHERE status = 'waiting') AS waiting,
       (SELECT count(*) FROM notified) AS notified;
