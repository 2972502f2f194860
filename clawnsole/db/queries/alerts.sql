-- Every runtime statement on alert rules, their state and their firing, named subject-then-verb. `{schema}`
-- is replaced by the quoted schema name when the registry is loaded; %(channel)s is the items channel
-- (`clawnsole:<schema>`), and new outbox rows are announced on `<channel>:alerts`. Times come from the
-- database clock, injectable for tests: coalesce(%(now)s::timestamptz, now()).
--
-- The conditions (alert_condition_*) are each one query over the queue's own tables — items, item_events,
-- queues, workers, schedules, schedule_runs — with no counters of their own. Each returns one row per
-- subject for which the condition holds now: subject_type, subject, since (when it started, if known),
-- item_ids (the items to look at, newest first), details (the numbers a notice shows) and evidence (what a
-- new occurrence changes: a newer failure's event id, say; constant for a level such as a backlog).

-- name: alert_clock
-- The time an alert operation works at: the injected instant, else the database clock.
SELECT coalesce(%(now)s::timestamptz, now()) AS now;

-- name: alert_settings_get
-- The one row of settings (the migration inserts it).
SELECT * FROM {schema}.alert_settings;

-- name: alert_settings_put
-- Replace the settings (one row, so no lock order to keep).
UPDATE {schema}.alert_settings
   SET enabled = %(enabled)s::boolean, channels = %(channels)s::text[], slack_channel = %(slack_channel)s::text,
       slack_username = %(slack_username)s::text, slack_icon_emoji = %(slack_icon_emoji)s::text,
       min_interval_seconds = %(min_interval_seconds)s::int,
       max_alerts_per_job_per_hour = %(max_alerts_per_job_per_hour)s::int,
       updated_at = coalesce(%(now)s::timestamptz, now())
 WHERE id
RETURNING *;

-- name: alert_settings_lock
-- The one row of settings, locked until the end of the transaction (a change of one of its fields, such as
-- enabling a channel, never undoes another made at the same time).
SELECT * FROM {schema}.alert_settings FOR UPDATE;

-- name: alert_import_lock
-- Serialise imports (and prunes) of alert rules for the rest of the transaction, so two never interleave.
SELECT pg_advisory_xact_lock(hashtextextended('clawnsole-alert-import:' || %(channel)s, 0));

-- name: alert_pattern_check
-- Which of these regular expressions PostgreSQL refuses, and why (the conditions match with `~`).
SELECT p AS pattern, {schema}.alert_regex_error(p) AS error
  FROM unnest(%(patterns)s::text[]) AS p
 WHERE {schema}.alert_regex_error(p) IS NOT NULL;

-- name: alert_rule_insert
-- Create a rule; no row when the name is taken.
INSERT INTO {schema}.alert_rules (name, rule_group, description, enabled, conditions, severity, channels,
                                  created_at, updated_at)
VALUES (%(name)s::text, %(group)s::text, %(description)s::text, %(enabled)s::boolean, %(conditions)s::jsonb,
        %(severity)s::text, %(channels)s::text[], coalesce(%(now)s::timestamptz, now()),
        coalesce(%(now)s::timestamptz, now()))
ON CONFLICT (name) DO NOTHING
RETURNING *;

-- name: alert_rule_get
-- One rule by name.
SELECT * FROM {schema}.alert_rules WHERE name = %(name)s::text;

-- name: alert_rule_lock
-- One rule by name, locked until the end of the transaction (waits for an evaluation of it to finish).
SELECT * FROM {schema}.alert_rules WHERE name = %(name)s::text FOR UPDATE;

-- name: alert_rule_list
-- Every rule, by name.
SELECT * FROM {schema}.alert_rules ORDER BY name;

-- name: alert_rule_update
-- Rewrite a rule's definition (the caller holds its row lock); the next round evaluates it afresh.
UPDATE {schema}.alert_rules
   SET rule_group = %(group)s::text, description = %(description)s::text, enabled = %(enabled)s::boolean,
       conditions = %(conditions)s::jsonb, severity = %(severity)s::text, channels = %(channels)s::text[],
       last_evaluated_at = NULL, updated_at = coalesce(%(now)s::timestamptz, now())
 WHERE id = %(id)s::bigint
RETURNING *;

-- name: alert_rule_delete
-- Remove a rule and (by cascade) its alerts; notices already in the outbox are still delivered.
DELETE FROM {schema}.alert_rules WHERE name = %(name)s::text RETURNING *;

-- name: alert_list
-- The alerts (one per rule and subject that ever fired) with their rule's name and severity, firing first.
SELECT a.*, r.name AS rule, r.severity
  FROM {schema}.alerts a JOIN {schema}.alert_rules r ON r.id = a.rule_id
 WHERE (%(rule)s::text IS NULL OR r.name = %(rule)s::text)
   AND (%(state)s::text IS NULL OR a.state = %(state)s::text)
 ORDER BY a.state = 'firing' DESC, a.fired_at DESC, a.id;

-- name: alert_rule_list_due
-- Ids of the enabled rules not evaluated within the last %(every)s seconds, in id order (the order they
-- are locked in). No lock: each is evaluated in its own transaction by alert_rule_lock_due.
SELECT id FROM {schema}.alert_rules
 WHERE enabled
   AND (%(groups)s::text[] IS NULL OR rule_group = ANY(%(groups)s::text[]))
   AND (last_evaluated_at IS NULL
        OR last_evaluated_at <= coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(every)s::float8))
 ORDER BY id;

-- name: alert_rule_lock_due
-- Lock one rule if it is still enabled and due and no other evaluator holds it (SKIP LOCKED). The lock lasts
-- until commit, covering the condition, the alerts' changes, the outbox rows and last_evaluated_at: with the
-- due check re-read on the locked row, each rule is evaluated by one evaluator per interval. Also returns the
-- settings and the time the round works at.
SELECT r.*, to_jsonb(s) AS settings, coalesce(%(now)s::timestamptz, now()) AS now
  FROM {schema}.alert_rules r CROSS JOIN {schema}.alert_settings s
 WHERE r.id = %(id)s::bigint AND r.enabled
   AND (r.last_evaluated_at IS NULL
        OR r.last_evaluated_at <= coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(every)s::float8))
   FOR UPDATE OF r SKIP LOCKED;

-- name: alert_rule_evaluated
-- Record an evaluation (and its error, NULL when it went well) on a rule this transaction holds.
UPDATE {schema}.alert_rules
   SET last_evaluated_at = coalesce(%(now)s::timestamptz, now()), last_error = %(error)s::text
 WHERE id = %(id)s::bigint
RETURNING id;

-- name: alert_state_lock
-- A rule's alerts, locked in id order (the rule's lock already keeps other evaluators out; this keeps the
-- rule of locking many rows in id order).
SELECT * FROM {schema}.alerts WHERE rule_id = %(rule_id)s::bigint ORDER BY id FOR UPDATE;

-- name: alert_subject_lock
-- Serialise the hourly budget of these subjects (rules of one job evaluated at once by two evaluators),
-- locked in the order given (the caller sorts them), so two rounds never wait on each other in a cycle.
SELECT count(pg_advisory_xact_lock(hashtextextended('clawnsole-alert-subject:' || %(channel)s || ':' || k, 0)))
       AS locked
  FROM unnest(%(keys)s::text[]) WITH ORDINALITY AS s(k, n);

-- name: alert_subject_hour_sent
-- Fired notices sent about each of these subjects in its current hour window, summed over every rule
-- (found through alerts_subject_idx).
SELECT a.subject_type, a.subject, sum(a.hour_sent)::int AS sent
  FROM {schema}.alerts a
 WHERE (a.subject_type, a.subject) IN (SELECT * FROM unnest(%(types)s::text[], %(subjects)s::text[]))
   AND a.hour_started_at > coalesce(%(now)s::timestamptz, now()) - interval '1 hour'
 GROUP BY a.subject_type, a.subject;

-- name: alert_insert
-- The first firing of a rule for a subject; no row if one exists (the caller then has a stale view).
INSERT INTO {schema}.alerts (rule_id, subject_type, subject, state, fired_at, notified, last_sent_at,
                             sent_count, hour_started_at, hour_sent, suppressed, last_values, evidence,
                             sent_evidence, updated_at)
VALUES (%(rule_id)s::bigint, %(subject_type)s::text, %(subject)s::text, 'firing', %(fired_at)s::timestamptz,
        %(notified)s::boolean, %(last_sent_at)s::timestamptz, %(sent_count)s::bigint,
        %(hour_started_at)s::timestamptz, %(hour_sent)s::int, %(suppressed)s::int, %(last_values)s::jsonb,
        %(evidence)s::text, %(sent_evidence)s::text, coalesce(%(now)s::timestamptz, now()))
ON CONFLICT (rule_id, subject_type, subject) DO NOTHING
RETURNING *;

-- name: alert_save
-- Store an alert's new state, fenced by the state the round read (no row: it changed meanwhile).
UPDATE {schema}.alerts
   SET state = %(state)s::text, fired_at = %(fired_at)s::timestamptz, resolved_at = %(resolved_at)s::timestamptz,
       notified = %(notified)s::boolean, last_sent_at = %(last_sent_at)s::timestamptz,
       sent_count = %(sent_count)s::bigint, hour_started_at = %(hour_started_at)s::timestamptz,
       hour_sent = %(hour_sent)s::int, suppressed = %(suppressed)s::int, last_values = %(last_values)s::jsonb,
       evidence = %(evidence)s::text, sent_evidence = %(sent_evidence)s::text,
       updated_at = coalesce(%(now)s::timestamptz, now())
 WHERE id = %(id)s::bigint AND state = %(expected_state)s::text
RETURNING *;

-- name: alert_outbox_insert
-- Queue one notice per channel, in the transaction of the firing, and wake the sender. The outbox's own
-- times are the real clock's, never an injected one: delivery happens now.
WITH ins AS (
    INSERT INTO {schema}.alert_outbox (alert_id, channel, kind, message)
    SELECT %(alert_id)s::bigint, c, %(kind)s::text, %(message)s::jsonb
      FROM unnest(%(channels)s::text[]) AS c
    RETURNING id
)
SELECT count(*) AS queued, pg_notify(%(channel)s || ':alerts', '') IS NULL AS notified FROM ins;

-- name: alert_condition_consecutive_failures
-- Jobs (kind, else queue) whose last %(threshold)s finished attempts within the window all failed. An attempt
-- ends with exactly one event — done, failed, retry_scheduled or lease_expired — so the events are the
-- attempts; the BRIN index on item_events.at narrows the scan to the window.
WITH ends AS (
    SELECT coalesce(i.kind, i.queue) AS job, i.kind IS NOT NULL AS by_kind, e.item_id, e.id, e.at, e.event,
           coalesce(e.detail ->> 'error', CASE WHEN e.event = 'lease_expired' THEN 'lease expired' END) AS error,
           row_number() OVER (PARTITION BY coalesce(i.kind, i.queue) ORDER BY e.at DESC, e.id DESC) AS n
      FROM {schema}.item_events e
      JOIN {schema}.items i ON i.id = e.item_id
     WHERE e.event IN ('done', 'failed', 'retry_scheduled', 'lease_expired')
       AND e.at > coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(window)s::float8)
       AND e.at <= coalesce(%(now)s::timestamptz, now())
       AND (%(pattern)s::text IS NULL OR coalesce(i.kind, i.queue) ~ %(pattern)s::text)
)
SELECT 'job' AS subject_type, job AS subject, min(at) AS since,
       (array_agg(item_id ORDER BY at DESC, id DESC))[1:50] AS item_ids,
       jsonb_build_object('failures', count(*), 'last_error', (array_agg(error ORDER BY at DESC, id DESC))[1],
                          'by_kind', bool_and(by_kind)) AS details,
       max(id)::text AS evidence
  FROM ends
 WHERE n <= %(threshold)s::int
 GROUP BY job
HAVING count(*) = %(threshold)s::int AND bool_and(event <> 'done');

-- name: alert_condition_failures
-- Jobs with at least %(threshold)s failed attempts within the window (with %(timeouts)s: only attempts
-- ended by an expired lease or a timeout error, as the exec handler's "timeout: …").
SELECT 'job' AS subject_type, coalesce(i.kind, i.queue) AS subject, min(e.at) AS since,
       (array_agg(e.item_id ORDER BY e.at DESC, e.id DESC))[1:50] AS item_ids,
       jsonb_build_object('failures', count(*), 'window_seconds', %(window)s::float8,
                          'last_error', (array_agg(coalesce(e.detail ->> 'error', 'lease expired')
                                                   ORDER BY e.at DESC, e.id DESC))[1],
                          'by_kind', bool_and(i.kind IS NOT NULL)) AS details,
       max(e.id)::text AS evidence
  FROM {schema}.item_events e
  JOIN {schema}.items i ON i.id = e.item_id
 WHERE e.event IN ('failed', 'retry_scheduled', 'lease_expired')
   AND e.at > coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(window)s::float8)
   AND e.at <= coalesce(%(now)s::timestamptz, now())
   AND (%(pattern)s::text IS NULL OR coalesce(i.kind, i.queue) ~ %(pattern)s::text)
   AND (NOT %(timeouts)s::boolean OR e.event = 'lease_expired'
        OR e.detail ->> 'error' ~* '(^|[^a-z])(timeout|timed out)')
 GROUP BY coalesce(i.kind, i.queue)
HAVING count(*) >= %(threshold)s::int;

-- name: alert_condition_dlq_size
-- Queues with at least %(threshold)s dead-lettered (failed) items, read through items_trouble_idx.
SELECT 'queue' AS subject_type, queue AS subject, min(finished_at) AS since,
       (array_agg(id ORDER BY id DESC))[1:50] AS item_ids,
       jsonb_build_object('failed', count(*)) AS details,
       max(finished_at)::text AS evidence
  FROM {schema}.items
 WHERE status = 'failed'
   AND (%(pattern)s::text IS NULL OR queue ~ %(pattern)s::text)
 GROUP BY queue
HAVING count(*) >= %(threshold)s::int;

-- name: alert_condition_pending_jobs
-- Queues with a backlog of at least %(threshold)s pending items (items_claimable_idx holds exactly those).
SELECT 'queue' AS subject_type, queue AS subject, NULL::timestamptz AS since,
       (array_agg(id ORDER BY run_at, id))[1:20] AS item_ids,
       jsonb_build_object('pending', count(*)) AS details,
       'backlog' AS evidence
  FROM {schema}.items
 WHERE status = 'pending'
   AND (%(pattern)s::text IS NULL OR queue ~ %(pattern)s::text)
 GROUP BY queue
HAVING count(*) >= %(threshold)s::int;

-- name: alert_condition_oldest_pending
-- Queues whose oldest due pending item has waited at least %(threshold)s seconds (since its run_at).
SELECT 'queue' AS subject_type, queue AS subject, min(run_at) AS since,
       (array_agg(id ORDER BY run_at, id))[1:20] AS item_ids,
       jsonb_build_object('oldest_pending_seconds',
                          round(extract(epoch FROM coalesce(%(now)s::timestamptz, now()) - min(run_at))),
                          'pending_due', count(*)) AS details,
       'waiting' AS evidence
  FROM {schema}.items
 WHERE status = 'pending' AND run_at <= coalesce(%(now)s::timestamptz, now())
   AND (%(pattern)s::text IS NULL OR queue ~ %(pattern)s::text)
 GROUP BY queue
HAVING coalesce(%(now)s::timestamptz, now()) - min(run_at) >= make_interval(secs => %(threshold)s::float8);

-- name: alert_condition_paused
-- Queues paused or draining for at least %(for_seconds)s seconds (a new pause is a new occurrence).
SELECT 'queue' AS subject_type, name AS subject, state_since AS since, '{}'::bigint[] AS item_ids,
       jsonb_build_object('state', state, 'by', state_by,
                          'for_seconds', round(extract(epoch FROM coalesce(%(now)s::timestamptz, now()) - state_since)))
         AS details,
       state || '@' || state_since::text AS evidence
  FROM {schema}.queues
 WHERE state IN ('paused', 'draining')
   AND state_since <= coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(for_seconds)s::float8)
   AND (%(pattern)s::text IS NULL OR name ~ %(pattern)s::text);

-- name: alert_condition_expired_leases
-- Queues with at least %(threshold)s claimed items whose lease ran out and no claim has recovered yet
-- (items_lease_idx holds exactly the leases).
SELECT 'queue' AS subject_type, queue AS subject, min(lease_expires_at) AS since,
       (array_agg(id ORDER BY lease_expires_at, id))[1:50] AS item_ids,
       jsonb_build_object('expired_leases', count(*)) AS details,
       'expired' AS evidence
  FROM {schema}.items
 WHERE lease_expires_at IS NOT NULL AND lease_expires_at < coalesce(%(now)s::timestamptz, now())
   AND (%(pattern)s::text IS NULL OR queue ~ %(pattern)s::text)
 GROUP BY queue
HAVING count(*) >= %(threshold)s::int;

-- name: alert_condition_no_workers
-- Queues with due pending items and no live worker serving them: none that lists the queue, has not
-- stopped, and was seen within 3 heartbeats (100 s, a default lease's third, when it did not say).
WITH waiting AS (
    SELECT queue, min(run_at) AS since, (array_agg(id ORDER BY run_at, id))[1:20] AS item_ids, count(*) AS n
      FROM {schema}.items
     WHERE status = 'pending' AND run_at <= coalesce(%(now)s::timestamptz, now())
       AND (%(pattern)s::text IS NULL OR queue ~ %(pattern)s::text)
     GROUP BY queue
)
SELECT 'queue' AS subject_type, q.queue AS subject, q.since, q.item_ids,
       jsonb_build_object('pending_due', q.n) AS details, 'unserved' AS evidence
  FROM waiting q
 WHERE NOT EXISTS (
     SELECT 1 FROM {schema}.workers w
      WHERE q.queue = ANY(w.queues) AND w.stopped_at IS NULL
        AND w.last_seen_at > coalesce(%(now)s::timestamptz, now())
                             - make_interval(secs => 3 * coalesce(w.heartbeat_seconds, 100)));

-- name: alert_condition_success_rate
-- Jobs whose share of successful attempts within the window is below %(threshold)s, over at least
-- %(min_runs)s finished attempts (the failed ones are the items to look at).
WITH ends AS (
    SELECT coalesce(i.kind, i.queue) AS job, i.kind IS NOT NULL AS by_kind, e.item_id, e.id, e.at, e.event
      FROM {schema}.item_events e
      JOIN {schema}.items i ON i.id = e.item_id
     WHERE e.event IN ('done', 'failed', 'retry_scheduled', 'lease_expired')
       AND e.at > coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(window)s::float8)
       AND e.at <= coalesce(%(now)s::timestamptz, now())
       AND (%(pattern)s::text IS NULL OR coalesce(i.kind, i.queue) ~ %(pattern)s::text)
)
SELECT 'job' AS subject_type, job AS subject, min(at) AS since,
       coalesce((array_agg(item_id ORDER BY at DESC, id DESC) FILTER (WHERE event <> 'done'))[1:50], '{}')
         AS item_ids,
       jsonb_build_object('runs', count(*), 'succeeded', count(*) FILTER (WHERE event = 'done'),
                          'success_rate', round((count(*) FILTER (WHERE event = 'done'))::numeric / count(*), 3),
                          'window_seconds', %(window)s::float8, 'by_kind', bool_and(by_kind)) AS details,
       'rate' AS evidence
  FROM ends
 GROUP BY job
HAVING count(*) >= %(min_runs)s::int
   AND (count(*) FILTER (WHERE event = 'done'))::float8 / count(*) < %(threshold)s::float8;

-- name: alert_condition_duration_increase
-- Jobs whose median run time (claim to done) within the window is at least %(threshold)s times the median
-- of the 24 hours before it, with at least %(min_runs)s runs in each. A run's claim is the latest `claimed`
-- event of its item before the `done` one, found through the events' primary key (item_id, id).
WITH runs AS (
    SELECT coalesce(i.kind, i.queue) AS job, i.kind IS NOT NULL AS by_kind, d.item_id, d.at,
           extract(epoch FROM d.at - c.at) AS seconds,
           d.at > coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(window)s::float8) AS recent
      FROM {schema}.item_events d
      JOIN {schema}.items i ON i.id = d.item_id
     CROSS JOIN LATERAL (
         SELECT c.at FROM {schema}.item_events c
          WHERE c.item_id = d.item_id AND c.id < d.id AND c.event = 'claimed'
          ORDER BY c.id DESC LIMIT 1
     ) c
     WHERE d.event = 'done'
       AND d.at > coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(window)s::float8)
                  - interval '24 hours'
       AND d.at <= coalesce(%(now)s::timestamptz, now())
       AND (%(pattern)s::text IS NULL OR coalesce(i.kind, i.queue) ~ %(pattern)s::text)
), medians AS (
    SELECT job, bool_and(by_kind) AS by_kind, min(at) FILTER (WHERE recent) AS since,
           (array_agg(item_id ORDER BY seconds DESC) FILTER (WHERE recent))[1:20] AS item_ids,
           count(*) FILTER (WHERE recent) AS runs, count(*) FILTER (WHERE NOT recent) AS baseline_runs,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) FILTER (WHERE recent) AS median,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) FILTER (WHERE NOT recent) AS baseline
      FROM runs
     GROUP BY job
)
SELECT 'job' AS subject_type, job AS subject, since, item_ids,
       jsonb_build_object('median_seconds', round(median::numeric, 3),
                          'baseline_median_seconds', round(baseline::numeric, 3),
                          'factor', round((median / baseline)::numeric, 2), 'runs', runs,
                          'baseline_runs', baseline_runs, 'by_kind', by_kind) AS details,
       'slow' AS evidence
  FROM medians
 WHERE runs >= %(min_runs)s::int AND baseline_runs >= %(min_runs)s::int AND baseline > 0
   AND median >= %(threshold)s::float8 * baseline;

-- name: alert_condition_concurrency_saturation
-- Limited queues whose claimed items are at least %(threshold)s of their concurrency limit.
SELECT 'queue' AS subject_type, q.name AS subject, c.since, c.item_ids,
       jsonb_build_object('claimed', c.n, 'limit', q.concurrency_limit,
                          'saturation', round(c.n::numeric / q.concurrency_limit, 3)) AS details,
       'saturated' AS evidence
  FROM {schema}.queues q
 CROSS JOIN LATERAL (
     SELECT count(*) AS n, min(claimed_at) AS since, (array_agg(id ORDER BY claimed_at, id))[1:20] AS item_ids
       FROM {schema}.items
      WHERE queue = q.name AND status = 'claimed'
 ) c
 WHERE q.concurrency_limit IS NOT NULL
   AND c.n::float8 / q.concurrency_limit >= %(threshold)s::float8
   AND (%(pattern)s::text IS NULL OR q.name ~ %(pattern)s::text);

-- name: alert_condition_missed_runs
-- Schedules with at least %(threshold)s missed windows recorded within the window. A `missed` run-log entry
-- covers fire_at up to detail.until: for an interval schedule that is (until - fire_at) / interval windows;
-- a cron schedule's entry counts as one (at least one window was missed).
SELECT 'schedule' AS subject_type, s.name AS subject, min(r.fire_at) AS since, '{}'::bigint[] AS item_ids,
       jsonb_build_object('missed', sum(m.windows), 'outages', count(*), 'window_seconds', %(window)s::float8)
         AS details,
       max(r.id)::text AS evidence
  FROM {schema}.schedule_runs r
  JOIN {schema}.schedules s ON s.id = r.schedule_id
 CROSS JOIN LATERAL (
     SELECT CASE WHEN s.interval_seconds IS NOT NULL AND r.detail ->> 'until' IS NOT NULL
                 THEN greatest(1, floor(extract(epoch FROM (r.detail ->> 'until')::timestamptz - r.fire_at)
                                        / s.interval_seconds))::bigint
                 ELSE 1 END AS windows
 ) m
 WHERE r.outcome = 'missed'
   AND r.at > coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(window)s::float8)
   AND r.at <= coalesce(%(now)s::timestamptz, now())
   AND (%(pattern)s::text IS NULL OR s.name ~ %(pattern)s::text)
 GROUP BY s.name
HAVING sum(m.windows) >= %(threshold)s::int;

-- name: alert_condition_not_finished
-- Schedules with an item (fired within the window) that is not done %(threshold)s seconds after it was
-- enqueued: still waiting, pending, claimed, or dead-lettered. A cancelled item was stopped on purpose.
SELECT 'schedule' AS subject_type, s.name AS subject, min(r.at) AS since,
       (array_agg(r.item_id ORDER BY r.at DESC))[1:20] AS item_ids,
       jsonb_build_object('late', count(*), 'statuses', jsonb_agg(DISTINCT i.status)) AS details,
       max(r.id)::text AS evidence
  FROM {schema}.schedule_runs r
  JOIN {schema}.schedules s ON s.id = r.schedule_id
  JOIN {schema}.items i ON i.id = r.item_id
 WHERE r.outcome IN ('enqueued', 'run_now')
   AND i.status NOT IN ('done', 'cancelled')
   AND r.at <= coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(threshold)s::float8)
   AND r.at > coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(threshold)s::float8)
              - make_interval(secs => %(window)s::float8)
   AND (%(pattern)s::text IS NULL OR s.name ~ %(pattern)s::text)
 GROUP BY s.name;
