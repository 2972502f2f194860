-- The HTTP API's tokens and audit log, and the reads the API pages through (keyset item pages, the event
-- feed for SSE). `{schema}` is replaced by the quoted schema name when the registry is loaded.

-- name: api_token_create
-- Store a new token's hash and grants. Returns no row when the name is taken (a revoked token keeps its
-- name, so an audit row always names one token).
INSERT INTO {schema}.api_tokens (name, hash, scopes, queues, expires_at)
VALUES (%(name)s::text, %(hash)s::text, %(scopes)s::text[], %(queues)s::text[],
        CASE WHEN %(expires_seconds)s::float8 IS NULL THEN NULL
             ELSE now() + make_interval(secs => %(expires_seconds)s::float8) END)
ON CONFLICT (name) DO NOTHING
RETURNING name, scopes, queues, created_at, expires_at, revoked_at, last_used_at;

-- name: api_token_list
-- Every token with its grants and dates (never the hash), by name.
SELECT name, scopes, queues, created_at, expires_at, revoked_at, last_used_at
  FROM {schema}.api_tokens ORDER BY name;

-- name: api_token_revoke
-- Revoke a live token; fenced on `revoked_at IS NULL`, so no row: no such token, or revoked already.
UPDATE {schema}.api_tokens SET revoked_at = now()
 WHERE name = %(name)s::text AND revoked_at IS NULL
RETURNING name, scopes, queues, created_at, expires_at, revoked_at, last_used_at;

-- name: api_token_get
-- One token by name (never the hash), to explain why a revoke changed nothing.
SELECT name, scopes, queues, created_at, expires_at, revoked_at, last_used_at
  FROM {schema}.api_tokens WHERE name = %(name)s::text;

-- name: api_token_authenticate
-- The token with this hash and whether it may be used now (`state`: live, expired or revoked). Marks it used
-- at most once a minute: a write per request would make every client of one token wait on its row lock.
WITH found AS (
    SELECT name, scopes, queues, expires_at, revoked_at, last_used_at,
           CASE WHEN revoked_at IS NOT NULL THEN 'revoked'
                WHEN expires_at IS NOT NULL AND expires_at <= now() THEN 'expired'
                ELSE 'live' END AS state
      FROM {schema}.api_tokens WHERE hash = %(hash)s::text
), touched AS (
    UPDATE {schema}.api_tokens t SET last_used_at = now()
      FROM found
     WHERE t.hash = %(hash)s::text AND found.state = 'live'
       AND (t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 minute')
    RETURNING t.name
)
SELECT found.*, (SELECT count(*) FROM touched) AS touched FROM found;

-- name: audit_write
-- One audit row: who (the token's name), what, on what, and how it ended.
INSERT INTO {schema}.audit_log (token_name, action, target, outcome, detail)
VALUES (%(token_name)s::text, %(action)s::text, %(target)s::text, %(outcome)s::text, %(detail)s::jsonb)
RETURNING id, at, token_name, action, target, outcome, detail;

-- name: audit_list
-- Audit rows newest first, since a time or for the last `since_seconds`, and/or of one token
-- (audit_log_at_idx / audit_log_token_idx); `before` (the last id of the previous page) pages by keyset.
SELECT id, at, token_name, action, target, outcome, detail
  FROM {schema}.audit_log
 WHERE (%(before)s::bigint IS NULL OR id < %(before)s::bigint)
   AND (%(since)s::timestamptz IS NULL OR at >= %(since)s::timestamptz)
   AND (%(since_seconds)s::float8 IS NULL OR at >= now() - make_interval(secs => %(since_seconds)s::float8))
   AND (%(token_name)s::text IS NULL OR token_name = %(token_name)s::text)
 ORDER BY id DESC
 LIMIT %(limit)s::int;

-- name: item_page
-- One page of items newest first, by keyset (`before`: the last id of the previous page) so a page costs
-- the same wherever it is; `queues` NULL means all queues (a token's grant), `queue` one of them; `text`
-- inside the title (ASCII letters in any case), `created_since` / `created_before` the creation time.
-- Run unfiltered or for a status with an index of its own (feed.item_page; else item_search): `claimed` is
-- asked as "has a lease" too, the predicate of items_lease_idx, so that index serves it.
SELECT * FROM {schema}.items
 WHERE (%(before)s::bigint IS NULL OR id < %(before)s::bigint)
   AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
   AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
   AND (%(status)s::text IS NULL OR status = %(status)s::text)
   AND (%(status)s::text IS DISTINCT FROM 'claimed' OR lease_expires_at IS NOT NULL)
   AND (%(kind)s::text IS NULL OR kind = %(kind)s::text)
   AND (%(text)s::text IS NULL OR strpos(lower(title COLLATE "C"), lower(%(text)s::text COLLATE "C")) > 0)
   AND (%(created_since)s::timestamptz IS NULL OR created_at >= %(created_since)s::timestamptz)
   AND (%(created_before)s::timestamptz IS NULL OR created_at < %(created_before)s::timestamptz)
 ORDER BY id DESC
 LIMIT %(limit)s::int;

-- name: item_search
-- item_page's filters where no index serves them (a text, a time, a kind, a queue's items of every status),
-- over at most `scan` items below `before` (by primary key): a search page costs a bounded stretch of the
-- table, never a walk through every finished item. Always one row at least: the stretch looked at
-- (`scan_lowest`, its lowest id; `scan_count`; `scan_newest`, its latest creation time) beside each
-- matching item's columns, or beside NULLs when nothing in it matched. Only the filtered columns of the
-- stretch are kept; the matches are read whole by primary key.
WITH examined AS MATERIALIZED (
    SELECT id, queue, status, kind, title, created_at FROM {schema}.items
     WHERE (%(before)s::bigint IS NULL OR id < %(before)s::bigint)
     ORDER BY id DESC
     LIMIT %(scan)s::int
), stretch AS (
    SELECT min(id) AS scan_lowest, count(*) AS scan_count, max(created_at) AS scan_newest FROM examined
), matched AS (
    SELECT id FROM examined
     WHERE (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
       AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
       AND (%(status)s::text IS NULL OR status = %(status)s::text)
       AND (%(kind)s::text IS NULL OR kind = %(kind)s::text)
       AND (%(text)s::text IS NULL OR strpos(lower(title COLLATE "C"), lower(%(text)s::text COLLATE "C")) > 0)
       AND (%(created_since)s::timestamptz IS NULL OR created_at >= %(created_since)s::timestamptz)
       AND (%(created_before)s::timestamptz IS NULL OR created_at < %(created_before)s::timestamptz)
     ORDER BY id DESC
     LIMIT %(limit)s::int
)
SELECT s.scan_lowest, s.scan_count, s.scan_newest, i.*
  FROM stretch s
  LEFT JOIN (matched m JOIN {schema}.items i ON i.id = m.id) ON true
 ORDER BY i.id DESC;

-- name: item_event_feed
-- Item events after an event id, oldest first, with each item's queue, for the SSE feed (resumed by
-- Last-Event-ID). Ids come from one identity, so `id > after` misses nothing committed in order; an event
-- whose transaction commits late behind a higher id is the feed's documented at-least-once edge. The recent
-- tail is found by item_events_id_brin (ids grow with the table's physical order).
SELECT e.id, e.item_id, e.at, e.event, e.agent, e.detail, i.queue
  FROM {schema}.item_events e JOIN {schema}.items i ON i.id = e.item_id
 WHERE e.id > %(after)s::bigint
   AND (%(queues)s::text[] IS NULL OR i.queue = ANY(%(queues)s::text[]))
 ORDER BY e.id
 LIMIT %(limit)s::int;

-- name: item_event_last
-- The newest event id, where a feed without Last-Event-ID starts (only what happens from now on): the
-- identity's last value, read without touching the table (max(id) would scan it: no b-tree leads with id).
SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence('{schema}.item_events', 'id')::regclass), 0) AS id;

-- The event stream beyond item events (GET /api/v1/events). Each source has its own position: schedule runs
-- by id, like item events; queue controls, schedules and alerts, which keep only their state as it is now, by
-- the time of their last change in microseconds since the epoch (`position`). A feed reads what changed after
-- a position, in position order; these tables hold a row per queue, schedule or alert, so they are read whole.

-- name: event_cursor_now
-- Where a stream that resumes nothing starts: the newest position of every source (0 with none), so it
-- streams only what happens from now on.
SELECT (SELECT coalesce(max(id), 0) FROM {schema}.item_events) AS item,
       (SELECT coalesce(max((extract(epoch FROM updated_at) * 1000000)::bigint), 0) FROM {schema}.queues) AS queue,
       (SELECT coalesce(max((extract(epoch FROM updated_at) * 1000000)::bigint), 0)
          FROM {schema}.schedules) AS schedule,
       (SELECT coalesce(max(id), 0) FROM {schema}.schedule_runs) AS run,
       (SELECT coalesce(max((extract(epoch FROM CASE WHEN state = 'firing' THEN fired_at ELSE resolved_at END)
                             * 1000000)::bigint), 0)
          FROM {schema}.alerts) AS alert;

-- name: event_cursor_at
-- The positions a bare item event id stands for (the Last-Event-ID of a stream that had sent only item
-- events): the other sources resume from that event's time. The newest event at or before the id stands in
-- for one deleted since (retention); with none, from the beginning.
WITH t AS (
    SELECT coalesce((SELECT at FROM {schema}.item_events WHERE id <= %(item)s::bigint ORDER BY id DESC LIMIT 1),
                    'epoch'::timestamptz) AS at
)
SELECT (extract(epoch FROM t.at) * 1000000)::bigint AS changed,
       (SELECT coalesce(max(r.id), 0) FROM {schema}.schedule_runs r WHERE r.at <= t.at) AS run
  FROM t;

-- name: queue_change_feed
-- Queues whose controls changed after a position (the token's `queues` only; NULL: all), oldest change
-- first. A row holds only the latest change: two changes between reads are seen as the second.
SELECT q.*, (extract(epoch FROM q.updated_at) * 1000000)::bigint AS position
  FROM {schema}.queues q
 WHERE (extract(epoch FROM q.updated_at) * 1000000)::bigint > %(after)s::bigint
   AND (%(queues)s::text[] IS NULL OR q.name = ANY(%(queues)s::text[]))
 ORDER BY position, q.name;

-- name: schedule_change_feed
-- Schedules created or changed (paused, resumed, edited) after a position, of the token's queues, oldest
-- first. A tick firing one does not count here: its runs are their own feed.
SELECT s.*, (extract(epoch FROM s.updated_at) * 1000000)::bigint AS position
  FROM {schema}.schedules s
 WHERE (extract(epoch FROM s.updated_at) * 1000000)::bigint > %(after)s::bigint
   AND (%(queues)s::text[] IS NULL OR s.queue = ANY(%(queues)s::text[]))
 ORDER BY position, s.id;

-- name: schedule_run_feed
-- Schedule runs (a window enqueued, a duplicate, skipped, missed, an error, a run-now) after a run id, with
-- their schedule's name and queue, of the token's queues, oldest first.
SELECT r.id, r.schedule_id, r.fire_at, r.at, r.outcome, r.item_id, r.agent, r.detail, s.name AS schedule,
       s.queue
  FROM {schema}.schedule_runs r JOIN {schema}.schedules s ON s.id = r.schedule_id
 WHERE r.id > %(after)s::bigint
   AND (%(queues)s::text[] IS NULL OR s.queue = ANY(%(queues)s::text[]))
 ORDER BY r.id
 LIMIT %(limit)s::int;

-- name: alert_change_feed
-- Alerts that fired or resolved after a position, with their rule's name and severity, oldest first; a token
-- limited to some queues sees only the alerts about one of them.
SELECT a.*, r.name AS rule, r.severity,
       (extract(epoch FROM CASE WHEN a.state = 'firing' THEN a.fired_at ELSE a.resolved_at END) * 1000000)::bigint
         AS position
  FROM {schema}.alerts a JOIN {schema}.alert_rules r ON r.id = a.rule_id
 WHERE (extract(epoch FROM CASE WHEN a.state = 'firing' THEN a.fired_at ELSE a.resolved_at END)
        * 1000000)::bigint > %(after)s::bigint
   AND (%(queues)s::text[] IS NULL OR (a.subject_type = 'queue' AND a.subject = ANY(%(queues)s::text[])))
 ORDER BY position, a.id;
