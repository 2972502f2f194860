-- Statements only the worker runtime needs, named subject-then-verb like items.sql. `{schema}` is replaced
-- by the quoted schema name when the registry is loaded.

-- name: queue_next_wakeup
-- Seconds until an idle worker has something to try in these queues: the earliest pending run_at, or the
-- earliest lease held by another agent running out (claim recovers it). NULL when there is neither. A paused
-- queue's pending items are left out: nothing can be claimed from it, and `queue resume` sends a NOTIFY, so
-- a worker sleeps until then instead of looking again every quarter second.
SELECT extract(epoch FROM least(
         (SELECT min(run_at) FROM {schema}.items
           WHERE queue = ANY(ARRAY(SELECT unnest(%(queues)s::text[])
                                   EXCEPT SELECT name FROM {schema}.queues WHERE state = 'paused'))
             AND status = 'pending'),
         (SELECT min(lease_expires_at) FROM {schema}.items
           WHERE queue = ANY(%(queues)s::text[]) AND status = 'claimed'
             AND claimed_by IS DISTINCT FROM %(agent)s::text)
       ) - now()) AS seconds;

-- name: worker_ping
-- A heartbeat with no lease to renew: proves the connection and the server still answer (systemd watchdog).
SELECT 1 AS ok;

-- name: worker_register
-- A worker's row in the registry, written at start: a new row, or the row of an earlier start of the same
-- agent replaced with this start's (counts from zero).
INSERT INTO {schema}.workers AS w (agent, instance, host, pid, queues, version, concurrency, heartbeat_seconds)
VALUES (%(agent)s::text, %(instance)s::uuid, %(host)s::text, %(pid)s::int, %(queues)s::text[],
        %(version)s::text, %(concurrency)s::int, %(heartbeat_seconds)s::float8)
ON CONFLICT (agent) DO UPDATE
   SET instance = excluded.instance, host = excluded.host, pid = excluded.pid, queues = excluded.queues,
       version = excluded.version, concurrency = excluded.concurrency,
       heartbeat_seconds = excluded.heartbeat_seconds, started_at = now(), last_seen_at = now(),
       stopped_at = NULL, in_flight = 0, done_count = 0, failed_count = 0
RETURNING agent;

-- name: worker_register_if_absent
-- The heartbeat's registration when its row went missing (aged out during a long outage): a row only if the
-- agent has none, so a newer process started under the same name keeps its row. DO NOTHING takes no lock
-- on an existing row, so the heartbeat never waits here.
INSERT INTO {schema}.workers (agent, instance, host, pid, queues, version, concurrency, heartbeat_seconds)
VALUES (%(agent)s::text, %(instance)s::uuid, %(host)s::text, %(pid)s::int, %(queues)s::text[],
        %(version)s::text, %(concurrency)s::int, %(heartbeat_seconds)s::float8)
ON CONFLICT (agent) DO NOTHING
RETURNING agent;

-- name: worker_refresh
-- The heartbeat's refresh of its row: last seen now, with the counts it has. Fenced by the instance: a
-- process whose row was taken over (same agent name) or aged out changes nothing and learns it (`ours`
-- false), and registers again without replacing a newer instance's row. SKIP LOCKED: a row someone holds
-- locked (an operator's open transaction) skips this refresh (`refreshed` false, `ours` true) instead of
-- making the heartbeat wait.
WITH target AS (
    SELECT agent FROM {schema}.workers
     WHERE agent = %(agent)s::text AND instance = %(instance)s::uuid AND stopped_at IS NULL
       FOR UPDATE SKIP LOCKED
), upd AS (
    UPDATE {schema}.workers w
       SET last_seen_at = now(), in_flight = %(in_flight)s::int, done_count = %(done)s::bigint,
           failed_count = %(failed)s::bigint
      FROM target
     WHERE w.agent = target.agent
    RETURNING w.agent
)
SELECT EXISTS (SELECT 1 FROM upd) AS refreshed,
       EXISTS (SELECT 1 FROM {schema}.workers
                WHERE agent = %(agent)s::text AND instance = %(instance)s::uuid AND stopped_at IS NULL) AS ours;

-- name: worker_stop
-- A clean stop: the row says when, with the final counts; fenced by the instance, and SKIP LOCKED like the
-- refresh (a stopping worker does not wait on an operator's lock: its row then goes gone by silence).
WITH target AS (
    SELECT agent FROM {schema}.workers
     WHERE agent = %(agent)s::text AND instance = %(instance)s::uuid AND stopped_at IS NULL
       FOR UPDATE SKIP LOCKED
)
UPDATE {schema}.workers w
   SET last_seen_at = now(), stopped_at = now(), in_flight = 0, done_count = %(done)s::bigint,
       failed_count = %(failed)s::bigint
  FROM target
 WHERE w.agent = target.agent
RETURNING w.agent;

-- name: worker_prune
-- Delete up to `limit` rows of workers gone for more than `keep` seconds (stopped, or silent for 3 × their
-- heartbeat interval, 60 s when a row does not say): run by every registering worker, so the table stays
-- the size of the fleet without a janitor. last_seen_at is never later than when a row went gone, so the
-- index on it narrows the scan before the exact test. SKIP LOCKED, in agent order: two registering workers
-- never wait on each other (nor on a heartbeat's refresh).
WITH gone AS (
    SELECT agent FROM {schema}.workers
     WHERE last_seen_at < now() - make_interval(secs => %(keep)s::float8)
       AND coalesce(stopped_at,
                    last_seen_at + make_interval(secs => 3 * coalesce(heartbeat_seconds, 60)))
           < now() - make_interval(secs => %(keep)s::float8)
     ORDER BY agent
     LIMIT %(limit)s::int
     FOR UPDATE SKIP LOCKED
)
DELETE FROM {schema}.workers w USING gone WHERE w.agent = gone.agent
RETURNING w.agent;
