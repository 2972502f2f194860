-- Retention: deleting finished items with their history, in short batches. `{schema}` is replaced by the
-- quoted schema name when the registry is loaded. Times come from the database clock (now()).

-- name: retention_cutoff
-- The instant a cleanup works to, taken once from the database clock so every batch (and a dry run's count)
-- agrees on which items are old enough.
SELECT now() - make_interval(secs => %(older_than)s::float8) AS cutoff;

-- name: item_cleanup_batch
-- Delete up to `batch` finished items that finished before the cutoff, with their events and dependency rows,
-- in one short statement (its own transaction). Candidates are walked in id order from `after` (the last id
-- the previous batch looked at), so each batch starts where the last one stopped instead of rescanning the
-- kept rows, and are locked FOR UPDATE SKIP LOCKED in that order: a row someone else holds is left for the
-- next cleanup, never waited for. Kept: an item whose dedupe key is still in its cooldown (deleting it would
-- free the key early), and a prerequisite of an item still waiting (its release reads the prerequisite).
-- Events have no foreign key to items (migration 0001), so they go in this same statement; the ON DELETE SET
-- NULL keys of schedules.last_item_id and schedule_runs.item_id are cleared through their partial indexes.
-- The delete re-checks the status (the fence); `last_id` is the highest id this batch looked at.
WITH doomed AS (
    SELECT i.id
      FROM {schema}.items i
     WHERE i.id > %(after)s::bigint
       AND i.status = ANY(%(statuses)s::text[])
       AND i.finished_at < %(cutoff)s::timestamptz
       AND (%(queue)s::text IS NULL OR i.queue = %(queue)s::text)
       AND NOT (i.dedupe_held AND i.dedupe_cooldown IS NOT NULL AND i.finished_at + i.dedupe_cooldown > now())
       AND NOT EXISTS (SELECT 1
                         FROM {schema}.item_dependencies d
                         JOIN {schema}.items w ON w.id = d.item_id
                        WHERE d.prerequisite_id = i.id AND w.status = 'waiting')
     ORDER BY i.id
     LIMIT %(batch)s::int
       FOR UPDATE OF i SKIP LOCKED
), items_gone AS (
    DELETE FROM {schema}.items i
     USING doomed
     WHERE i.id = doomed.id AND i.status = ANY(%(statuses)s::text[])
    RETURNING i.id
), events_gone AS (
    DELETE FROM {schema}.item_events e
     USING items_gone g
     WHERE e.item_id = g.id
    RETURNING 1
), edges_gone AS (
    DELETE FROM {schema}.item_dependencies x
     USING items_gone g
     WHERE x.item_id = g.id OR x.prerequisite_id = g.id
    RETURNING 1
)
SELECT (SELECT count(*) FROM items_gone) AS items,
       (SELECT count(*) FROM events_gone) AS events,
       (SELECT count(*) FROM edges_gone) AS dependencies,
       (SELECT count(*) FROM doomed) AS candidates,
       (SELECT max(id) FROM doomed) AS last_id;

-- name: item_cleanup_count
-- What a cleanup with these filters would delete (a dry run), and what it keeps on purpose: items whose
-- dedupe key is still in its cooldown, and prerequisites of waiting items. Reads only; takes no row locks.
SELECT count(*) FILTER (WHERE NOT c.cooling AND NOT c.prerequisite) AS items,
       coalesce(sum(c.events) FILTER (WHERE NOT c.cooling AND NOT c.prerequisite), 0) AS events,
       count(*) FILTER (WHERE c.cooling) AS kept_in_cooldown,
       count(*) FILTER (WHERE c.prerequisite AND NOT c.cooling) AS kept_as_prerequisite
  FROM (SELECT i.dedupe_held AND i.dedupe_cooldown IS NOT NULL AND i.finished_at + i.dedupe_cooldown > now()
                 AS cooling,
               EXISTS (SELECT 1
                         FROM {schema}.item_dependencies d
                         JOIN {schema}.items w ON w.id = d.item_id
                        WHERE d.prerequisite_id = i.id AND w.status = 'waiting') AS prerequisite,
               (SELECT count(*) FROM {schema}.item_events e WHERE e.item_id = i.id) AS events
          FROM {schema}.items i
         WHERE i.status = ANY(%(statuses)s::text[])
           AND i.finished_at < %(cutoff)s::timestamptz
           AND (%(queue)s::text IS NULL OR i.queue = %(queue)s::text)) c;
