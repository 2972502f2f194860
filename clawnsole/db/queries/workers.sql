-- Statements only the worker runtime needs, named subject-then-verb like items.sql. `{schema}` is replaced
-- by the quoted schema name when the registry is loaded.

-- name: queue_next_wakeup
-- Seconds until an idle worker has something to try in these queues: the earliest pending run_at, or the
-- earliest lease held by another agent running out (claim recovers it). NULL when there is neither.
SELECT extract(epoch FROM least(
         (SELECT min(run_at) FROM {schema}.items
           WHERE queue = ANY(%(queues)s::text[]) AND status = 'pending'),
         (SELECT min(lease_expires_at) FROM {schema}.items
           WHERE queue = ANY(%(queues)s::text[]) AND status = 'claimed'
             AND claimed_by IS DISTINCT FROM %(agent)s::text)
       ) - now()) AS seconds;

-- name: worker_ping
-- A heartbeat with no lease to renew: proves the connection and the server still answer (systemd watchdog).
SELECT 1 AS ok;
