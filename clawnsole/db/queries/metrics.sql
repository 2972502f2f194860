-- Metrics: what `/metrics` reads from the event history that the stats statements do not already give.
-- `{schema}` is replaced by the quoted schema name when the registry is loaded. Times come from the database
-- clock (now()); every read of item_events by time says `e.at >= …` so the BRIN index on `at` narrows it.

-- name: metrics_run_time_buckets
-- The run-time histogram of `/metrics`: attempts that ended (done, failed, retry_scheduled) since `since`
-- seconds ago, per queue, kind and outcome, counted in the bucket of the first bound (of `bounds`, ascending)
-- at or above their run time (`bucket` = len(bounds) for the +Inf bucket), with the sum of their run times.
-- Run time as in stats_outcomes: from the attempt's last `claimed` event before the outcome. Grouped in SQL
-- so a day of events comes back as a few rows per queue and kind, not one row per attempt.
WITH ev AS (
    SELECT e.id, e.item_id, e.at, e.event, i.queue, i.kind
      FROM {schema}.item_events e
      JOIN {schema}.items i ON i.id = e.item_id
     WHERE e.at >= now() - make_interval(secs => %(since)s::float8)
       AND e.event IN ('done', 'failed', 'retry_scheduled')
), runs AS (
    SELECT ev.queue, ev.kind,
           CASE WHEN ev.event = 'retry_scheduled' THEN 'retried' ELSE ev.event END AS outcome,
           extract(epoch FROM ev.at - run.at)::float8 AS run_seconds
      FROM ev
      JOIN LATERAL (
          SELECT p.at FROM {schema}.item_events p
           WHERE p.item_id = ev.item_id AND p.id < ev.id AND p.event = 'claimed'
           ORDER BY p.id DESC LIMIT 1
      ) run ON true
)
SELECT queue, kind, outcome,
       (SELECT count(*) FROM unnest(%(bounds)s::float8[]) AS b(le) WHERE b.le < runs.run_seconds) AS bucket,
       count(*) AS count,
       sum(run_seconds) AS sum
  FROM runs
 GROUP BY 1, 2, 3, 4
 ORDER BY 1, 2 NULLS FIRST, 3, 4;
