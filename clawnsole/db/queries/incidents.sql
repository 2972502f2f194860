-- What an operator reaches for during an incident: the workers registry, who holds which lease, forcing a
-- lease back, and the doctor's checks. Named subject-then-verb like items.sql; `{schema}` is replaced by the
-- quoted schema name. Everything but lease_force_release only reads. Times come from now().

-- name: worker_list
-- The workers registry with each row's standing: `gone` is 'stopped' (a clean stop), 'silent' (not seen for
-- 3 × its heartbeat interval, 60 s when the row does not say) or NULL (alive). Cleanly stopped rows only
-- with `all`. The table holds the fleet and a day of departures: no index needed.
SELECT agent, host, pid, queues, version, concurrency, heartbeat_seconds, started_at, last_seen_at,
       stopped_at, in_flight, done_count, failed_count,
       CASE WHEN stopped_at IS NOT NULL THEN 'stopped'
            WHEN last_seen_at < now() - make_interval(secs => 3 * coalesce(heartbeat_seconds, 60)) THEN 'silent'
       END AS gone,
       extract(epoch FROM now() - last_seen_at)::float8 AS last_seen_seconds
  FROM {schema}.workers
 WHERE %(all)s::bool OR stopped_at IS NULL
 ORDER BY agent;

-- name: lease_list
-- Every lease held now (optionally of one queue, of one holder, or only those past their expiry), the most
-- urgent first: who holds it, since when, how long it has left (negative: expired, not yet recovered), and
-- its last progress. Read through items_lease_idx (`lease_expires_at IS NOT NULL` is its predicate: exactly
-- the claimed items). The last progress event of this claim is found by reading the item's events backwards
-- on the primary key; without one (a progress not recorded as an event) updated_at stands in when the item
-- carries a note or a percent.
SELECT i.id, i.queue, i.kind, i.title, i.claimed_by AS agent, i.attempts, i.max_attempts, i.claimed_at,
       i.lease_expires_at, extract(epoch FROM i.lease_expires_at - now())::float8 AS lease_left_seconds,
       i.progress_note, i.progress_percent,
       coalesce(p.at, CASE WHEN i.progress_note IS NOT NULL OR i.progress_percent IS NOT NULL
                           THEN i.updated_at END) AS progress_at
  FROM {schema}.items i
  LEFT JOIN LATERAL (
       SELECT e.at FROM {schema}.item_events e
        WHERE e.item_id = i.id AND e.event = 'progress' AND e.at >= i.claimed_at
        ORDER BY e.id DESC
        LIMIT 1
  ) p ON true
 WHERE i.lease_expires_at IS NOT NULL
   AND (%(queue)s::text IS NULL OR i.queue = %(queue)s::text)
   AND (%(agent)s::text IS NULL OR i.claimed_by = %(agent)s::text)
   AND (NOT %(expired)s::bool OR i.lease_expires_at < now())
 ORDER BY i.lease_expires_at, i.id
 LIMIT %(limit)s::int;

-- name: lease_force_release
-- An operator takes leases back: the item held with this id, or every item this agent holds, goes back to
-- pending without the attempt being charged, and its lease token is cleared, so the old holder's later
-- progress, done or fail match nothing (lease lost) even before anyone claims the item again. Rows are
-- locked in id order (ORDER BY under FOR UPDATE locks them as they come out of the sort), so two releases,
-- or a release and a heartbeat or a finisher (which also lock in id order), never deadlock; a row whose
-- holder finished while this waited for its lock is re-checked and left alone. The `released` event says
-- who did it and why; listeners of the queues are woken.
WITH target AS (
    SELECT id, claimed_by AS holder
      FROM {schema}.items
     WHERE lease_expires_at IS NOT NULL AND status = 'claimed'
       AND (%(id)s::bigint IS NOT NULL OR %(agent)s::text IS NOT NULL)
       AND (%(id)s::bigint IS NULL OR id = %(id)s::bigint)
       AND (%(agent)s::text IS NULL OR claimed_by = %(agent)s::text)
     ORDER BY id
       FOR UPDATE
), upd AS (
    UPDATE {schema}.items i
       SET status = 'pending', attempts = greatest(i.attempts - 1, 0), claimed_by = NULL, lease_token = NULL,
           lease_expires_at = NULL, updated_at = now()
      FROM target t
     WHERE i.id = t.id AND i.status = 'claimed'
    RETURNING i.id, i.queue, i.attempts, t.holder
), ev AS (
    INSERT INTO {schema}.item_events (item_id, event, agent, detail)
    SELECT id, 'released', %(by)s::text,
           jsonb_build_object('by', %(by)s::text, 'reason', %(reason)s::text, 'forced', true, 'holder', holder)
      FROM upd
), notified AS (
    SELECT pg_notify(%(channel)s, queue) FROM (SELECT DISTINCT queue FROM upd) q
)
SELECT id, queue, attempts, holder FROM upd WHERE (SELECT count(*) FROM notified) >= 0 ORDER BY id;

-- name: queue_first_pending
-- A queue with pending items (the first by name: one probe of items_claimable_idx), for explain-claim to
-- plan a claim that would find something; NULL when nothing is pending.
SELECT queue FROM {schema}.items WHERE status = 'pending' ORDER BY queue LIMIT 1;

-- name: doctor_timeouts
-- Bounds for one doctor check, local to its (rolled-back) transaction: a check that meets a lock held by a
-- migration or a stuck session reports that instead of hanging the doctor.
SELECT set_config('statement_timeout', '10s', true), set_config('lock_timeout', '2s', true);

-- name: doctor_migrations
-- The migrations this schema has (after schema_version said the ledger exists).
SELECT version FROM {schema}.schema_migrations ORDER BY version;

-- name: doctor_indexes
-- Every index of the schema's tables, with whether the planner may use it (indisvalid: false after a failed
-- CREATE INDEX CONCURRENTLY) and whether inserts maintain it (indisready).
SELECT c.relname AS index, t.relname AS "table", x.indisvalid AS valid, x.indisready AS ready
  FROM pg_index x
  JOIN pg_class c ON c.oid = x.indexrelid
  JOIN pg_class t ON t.oid = x.indrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
 WHERE n.nspname = %(schema)s::text
 ORDER BY c.relname;

-- name: doctor_table_stats
-- Live and dead rows and the last (auto)vacuum of the queue's two busy tables, from the statistics views.
SELECT relname AS "table", n_live_tup AS live, n_dead_tup AS dead,
       greatest(last_autovacuum, last_vacuum) AS last_vacuum,
       extract(epoch FROM now() - greatest(last_autovacuum, last_vacuum))::float8 AS vacuum_age_seconds
  FROM pg_stat_user_tables
 WHERE schemaname = %(schema)s::text AND relname IN ('items', 'item_events')
 ORDER BY relname;

-- name: doctor_oldest_transaction
-- The oldest open transaction of this database that holds back vacuum (a snapshot, backend_xmin, or a
-- transaction id), other than this session's own. A session of another role shows these columns only to
-- superusers and members of pg_read_all_stats.
SELECT pid, application_name, usename, state, backend_xmin::text AS backend_xmin,
       extract(epoch FROM now() - xact_start)::float8 AS age_seconds
  FROM pg_stat_activity
 WHERE pid <> pg_backend_pid() AND datname = current_database() AND xact_start IS NOT NULL
   AND (backend_xmin IS NOT NULL OR backend_xid IS NOT NULL)
 ORDER BY xact_start
 LIMIT 1;

-- name: doctor_notification_queue
-- How full the server's LISTEN/NOTIFY queue is (0 to 1); at 1, every NOTIFY, and so every enqueue, fails.
SELECT pg_notification_queue_usage()::float8 AS usage;

-- name: doctor_expired_leases
-- Leases past their expiry, per queue (through items_lease_idx): claim-next recovers them, so a count that
-- stays means no worker claims from that queue.
SELECT queue, count(*) AS leases, extract(epoch FROM now() - min(lease_expires_at))::float8 AS oldest_seconds
  FROM {schema}.items
 WHERE lease_expires_at IS NOT NULL AND lease_expires_at < now()
 GROUP BY queue
 ORDER BY queue;

-- name: doctor_queue_controls
-- Queues someone paused or set draining (no row, or `active`: claimed as usual).
SELECT name, state, state_by, extract(epoch FROM now() - state_since)::float8 AS since_seconds
  FROM {schema}.queues
 WHERE state <> 'active'
 ORDER BY name;
