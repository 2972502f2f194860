-- Every runtime statement on schedules, named subject-then-verb. `{schema}` is replaced by the quoted
-- schema name when the registry is loaded. Times come from the database clock, injectable for tests:
-- coalesce(%(now)s::timestamptz, now()). Changes to a schedule wake sleeping schedulers with a NOTIFY on
-- the channel `<items channel>:schedules` (the driver passes the items channel as %(channel)s).

-- name: schedule_clock
-- The time a schedule operation works at: the injected instant, else the database clock.
SELECT coalesce(%(now)s::timestamptz, now()) AS now;

-- name: schedule_insert
-- Create a schedule; no row when the name is taken. Wakes sleeping schedulers.
WITH ins AS (
    INSERT INTO {schema}.schedules (name, queue, kind, title, instructions, payload, priority, max_attempts,
                                    cron, timezone, interval_seconds, status, catch_up, overlap, description,
                                    next_run_at, created_at, updated_at)
    VALUES (%(name)s::text, %(queue)s::text, %(kind)s::text, %(title)s::text, %(instructions)s::text,
            %(payload)s::jsonb, %(priority)s::int, %(max_attempts)s::int, %(cron)s::text, %(timezone)s::text,
            %(interval_seconds)s::bigint, %(status)s::text, %(catch_up)s::text, %(overlap)s::text,
            %(description)s::text, %(next_run_at)s::timestamptz,
            coalesce(%(now)s::timestamptz, now()), coalesce(%(now)s::timestamptz, now()))
    ON CONFLICT (name) DO NOTHING
    RETURNING *
)
SELECT ins.*, pg_notify(%(channel)s || ':schedules', ins.name) IS NULL AS notified FROM ins;

-- name: schedule_get
-- One schedule by name.
SELECT * FROM {schema}.schedules WHERE name = %(name)s::text;

-- name: schedule_lock
-- One schedule by name, locked until the end of the transaction (waits for a tick firing it to finish).
SELECT * FROM {schema}.schedules WHERE name = %(name)s::text FOR UPDATE;

-- name: schedule_list
-- Schedules by name, optionally only those with one status.
SELECT * FROM {schema}.schedules
 WHERE (%(status)s::text IS NULL OR status = %(status)s::text)
 ORDER BY name;

-- name: schedule_update
-- Rewrite a schedule's definition and next run (the caller holds its row lock). Wakes sleeping schedulers.
WITH upd AS (
    UPDATE {schema}.schedules
       SET queue = %(queue)s::text, kind = %(kind)s::text, title = %(title)s::text,
           instructions = %(instructions)s::text, payload = %(payload)s::jsonb, priority = %(priority)s::int,
           max_attempts = %(max_attempts)s::int, cron = %(cron)s::text, timezone = %(timezone)s::text,
           interval_seconds = %(interval_seconds)s::bigint, status = %(status)s::text,
           catch_up = %(catch_up)s::text, overlap = %(overlap)s::text, description = %(description)s::text,
           next_run_at = %(next_run_at)s::timestamptz, updated_at = coalesce(%(now)s::timestamptz, now())
     WHERE id = %(id)s::bigint
    RETURNING *
)
SELECT upd.*, pg_notify(%(channel)s || ':schedules', upd.name) IS NULL AS notified FROM upd;

-- name: schedule_delete
-- Remove a schedule and its run log; the items it enqueued stay. Wakes sleeping schedulers.
WITH del AS (
    DELETE FROM {schema}.schedules WHERE name = %(name)s::text RETURNING *
)
SELECT del.*, pg_notify(%(channel)s || ':schedules', del.name) IS NULL AS notified FROM del;

-- name: schedule_import_lock
-- Serialise imports (and prunes) for the rest of the transaction, so two imports never interleave.
SELECT pg_advisory_xact_lock(hashtextextended('clawnsole-schedule-import:' || %(channel)s, 0));

-- name: schedule_list_due
-- Ids of active schedules whose next run has come, most overdue first. No lock: each is then fired in its
-- own transaction by schedule_lock_due, which skips what another scheduler holds.
SELECT id FROM {schema}.schedules
 WHERE status = 'active' AND next_run_at <= coalesce(%(now)s::timestamptz, now())
 ORDER BY next_run_at, id
 LIMIT %(limit)s::int;

-- name: schedule_lock_due
-- Lock one schedule if it is still active and due and no other scheduler holds it (SKIP LOCKED). The lock
-- lasts until commit, covering the enqueue of its windows and the advance of next_run_at: that, with the
-- window's dedupe key, is what makes each window's item exactly once across schedulers. Also returns the
-- status of its newest item (for `overlap: skip`) and the time the tick works at.
SELECT s.*, i.status AS last_item_status, coalesce(%(now)s::timestamptz, now()) AS now
  FROM {schema}.schedules s
  LEFT JOIN {schema}.items i ON i.id = s.last_item_id
 WHERE s.id = %(id)s::bigint AND s.status = 'active'
   AND s.next_run_at <= coalesce(%(now)s::timestamptz, now())
   FOR UPDATE OF s SKIP LOCKED;

-- name: schedule_advance
-- Move a fired schedule to its next window and count what the tick did. Sends no NOTIFY: the scheduler
-- that advanced it is the one that will fire it next, and others find it on their own next due time.
UPDATE {schema}.schedules
   SET next_run_at   = %(next_run_at)s::timestamptz,
       last_run_at   = coalesce(%(last_run_at)s::timestamptz, last_run_at),
       last_item_id  = coalesce(%(last_item_id)s::bigint, last_item_id),
       run_count     = run_count + %(runs)s::int,
       skip_count    = skip_count + %(skips)s::int,
       error_count   = error_count + %(errors)s::int,
       last_error    = CASE WHEN %(errors)s::int > 0 THEN %(last_error)s::text ELSE last_error END,
       last_error_at = CASE WHEN %(errors)s::int > 0 THEN coalesce(%(now)s::timestamptz, now())
                            ELSE last_error_at END
 WHERE id = %(id)s::bigint
RETURNING *;

-- name: schedule_run_record
-- Append to a schedule's run log, and trim it to about the newest %(keep)s entries (the trim sees the log
-- as it was before this statement, so it may briefly hold one tick's worth more).
WITH ins AS (
    INSERT INTO {schema}.schedule_runs (schedule_id, fire_at, at, outcome, item_id, agent, detail)
    SELECT %(schedule_id)s::bigint, f, coalesce(%(now)s::timestamptz, now()), o, i, %(agent)s::text, d
      FROM unnest(%(fire_ats)s::timestamptz[], %(outcomes)s::text[], %(item_ids)s::bigint[],
                  %(details)s::jsonb[]) AS u(f, o, i, d)
    RETURNING id
)
DELETE FROM {schema}.schedule_runs
 WHERE schedule_id = %(schedule_id)s::bigint
   AND id < (SELECT id FROM {schema}.schedule_runs WHERE schedule_id = %(schedule_id)s::bigint
              ORDER BY id DESC OFFSET %(keep)s::int LIMIT 1);

-- name: schedule_run_list
-- A schedule's newest run-log entries, with the current status of the items they name.
SELECT r.id, r.schedule_id, r.fire_at, r.at, r.outcome, r.item_id, r.agent, r.detail, i.status AS item_status
  FROM {schema}.schedule_runs r
  LEFT JOIN {schema}.items i ON i.id = r.item_id
 WHERE r.schedule_id = %(schedule_id)s::bigint
 ORDER BY r.id DESC
 LIMIT %(limit)s::int;

-- name: schedule_run_latest
-- The newest run-log entry of every schedule that has one, with the current status of the item it names
-- (one probe of schedule_runs_schedule_idx per schedule, one primary-key lookup per item).
SELECT r.id, r.schedule_id, r.fire_at, r.at, r.outcome, r.item_id, r.agent, r.detail, i.status AS item_status
  FROM {schema}.schedules s
 CROSS JOIN LATERAL (SELECT * FROM {schema}.schedule_runs l WHERE l.schedule_id = s.id
                      ORDER BY l.id DESC LIMIT 1) r
  LEFT JOIN {schema}.items i ON i.id = r.item_id;

-- name: schedule_next_due
-- Seconds until the earliest active schedule is due (<= 0: due now; NULL: no active schedule).
SELECT extract(epoch FROM min(next_run_at) - coalesce(%(now)s::timestamptz, now()))::float8 AS seconds
  FROM {schema}.schedules WHERE status = 'active';
