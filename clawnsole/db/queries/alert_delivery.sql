-- Statements of the alert sender (clawnsole/alerts/delivery.py), named subject-then-verb like items.sql.
-- A notice is claimed in one short transaction (marked in flight by pushing next_attempt_at out, like a
-- lease), sent with no transaction open, then recorded in another: no row lock is ever held during a send.
-- `attempts` is the fence: a claim increments it, and recording or releasing needs the value it claimed, so a
-- sender whose in-flight time ran out (and whose row another sender took) changes nothing.

-- name: alert_outbox_claim
-- Take up to `limit` due notices (alert_outbox_sendable_idx) in id order (SKIP LOCKED: senders never wait on each other), counting the
-- attempt and holding them in flight for `lease` seconds. Channels this process cannot send through are
-- left `grace` seconds for a sender that can, then taken (to be recorded as not configured).
WITH due AS (
    SELECT id FROM {schema}.alert_outbox
     WHERE sent_at IS NULL AND given_up_at IS NULL AND next_attempt_at <= now()
       AND (channel = ANY(%(channels)s::text[]) OR created_at <= now() - make_interval(secs => %(grace)s::float8))
     ORDER BY id
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
)
UPDATE {schema}.alert_outbox o
   SET attempts = o.attempts + 1, next_attempt_at = now() + make_interval(secs => %(lease)s::float8)
  FROM due
 WHERE o.id = due.id
RETURNING o.id, o.alert_id, o.channel, o.kind, o.message, o.created_at, o.attempts;

-- name: alert_outbox_claim_one
-- Take one notice by id, due or not (a test notice its writer holds in flight from the start, so that no
-- running sender takes it first). A row another transaction holds locked is skipped, not waited for.
WITH one AS (
    SELECT id FROM {schema}.alert_outbox
     WHERE id = %(id)s::bigint AND sent_at IS NULL AND given_up_at IS NULL
       FOR UPDATE SKIP LOCKED
)
UPDATE {schema}.alert_outbox o
   SET attempts = o.attempts + 1, next_attempt_at = now() + make_interval(secs => %(lease)s::float8)
  FROM one
 WHERE o.id = one.id
RETURNING o.id, o.alert_id, o.channel, o.kind, o.message, o.created_at, o.attempts;

-- name: alert_outbox_record
-- Record one attempt (always, in alert_deliveries) and its outcome on the notice, fenced by the attempt
-- claimed: sent; or failed and due again after `delay` seconds; or given up (`final`, or attempts used up,
-- or older than `give_up_after` seconds), which takes it out of alert_outbox_sendable_idx.
WITH cur AS (
    SELECT id, (NOT %(ok)s::bool AND (%(final)s::bool OR attempts >= %(max_attempts)s::int
                OR created_at <= now() - make_interval(secs => %(give_up_after)s::float8))) AS give_up
      FROM {schema}.alert_outbox
     WHERE id = %(id)s::bigint AND attempts = %(attempt)s::int AND sent_at IS NULL AND given_up_at IS NULL
       FOR UPDATE
), upd AS (
    UPDATE {schema}.alert_outbox o
       SET sent_at = CASE WHEN %(ok)s::bool THEN now() END,
           last_error = CASE WHEN %(ok)s::bool THEN o.last_error ELSE %(error)s::text END,
           given_up_at = CASE WHEN cur.give_up THEN now() END,
           next_attempt_at = CASE WHEN %(ok)s::bool OR cur.give_up THEN o.next_attempt_at
                                  ELSE now() + make_interval(secs => %(delay)s::float8) END
      FROM cur
     WHERE o.id = cur.id
    RETURNING o.id, o.sent_at, o.given_up_at, o.next_attempt_at, o.attempts
), ins AS (
    INSERT INTO {schema}.alert_deliveries (outbox_id, attempt, channel, ok, status_code, error, agent)
    VALUES (%(id)s::bigint, %(attempt)s::int, %(channel)s::text, %(ok)s::bool, %(status_code)s::int,
            %(error)s::text, %(agent)s::text)
)
SELECT * FROM upd;

-- name: alert_outbox_release
-- Hand a claimed notice back without counting the attempt (its channel failed on an earlier notice of the
-- same batch, so this one was not tried), due again after `delay` seconds; fenced by the attempt claimed.
UPDATE {schema}.alert_outbox
   SET attempts = attempts - 1, next_attempt_at = now() + make_interval(secs => %(delay)s::float8)
 WHERE id = %(id)s::bigint AND attempts = %(attempt)s::int AND sent_at IS NULL AND given_up_at IS NULL
RETURNING id;

-- name: alert_outbox_insert_test
-- Write a test notice (`clawnsole alert test`) for one channel, about no alert (alert_id NULL), held in
-- flight for `lease` seconds so that its writer sends it (alert_outbox_claim_one); should the writer die
-- first, any sender takes it once that passes.
INSERT INTO {schema}.alert_outbox (alert_id, channel, kind, message, next_attempt_at)
VALUES (NULL, %(channel)s::text, 'test', %(message)s::jsonb, now() + make_interval(secs => %(lease)s::float8))
RETURNING id, created_at;

-- name: alert_outbox_next_due
-- Seconds until the earliest notice this process would take comes due (negative: overdue; NULL: none), so
-- the sender sleeps exactly that long. Uses alert_outbox_sendable_idx.
SELECT extract(epoch FROM min(next_attempt_at) - now())::float8 AS seconds
  FROM {schema}.alert_outbox
 WHERE sent_at IS NULL AND given_up_at IS NULL
   AND (channel = ANY(%(channels)s::text[]) OR created_at <= now() - make_interval(secs => %(grace)s::float8));

-- name: alert_outbox_get
-- One notice with its state and its attempts, oldest attempt first (what `alert test` reports).
SELECT o.id, o.alert_id, o.channel, o.kind, o.message, o.created_at, o.attempts, o.sent_at, o.given_up_at,
       o.next_attempt_at, o.last_error,
       coalesce((SELECT jsonb_agg(jsonb_build_object('attempt', d.attempt, 'at', d.at, 'ok', d.ok,
                                                     'status_code', d.status_code, 'error', d.error)
                                  ORDER BY d.id)
                   FROM {schema}.alert_deliveries d WHERE d.outbox_id = o.id), '[]'::jsonb) AS deliveries
  FROM {schema}.alert_outbox o
 WHERE o.id = %(id)s::bigint;

-- name: alert_outbox_history
-- The newest notices, newest first, optionally of one severity, rule, or job/queue/schedule name — what
-- `alert history` lists. Filters read the message as written, so a rule renamed since keeps its old notices.
SELECT o.id, o.alert_id, o.channel, o.kind, o.message, o.created_at, o.attempts, o.sent_at, o.given_up_at,
       o.next_attempt_at, o.last_error
  FROM {schema}.alert_outbox o
 WHERE (%(severity)s::text IS NULL OR o.message->>'severity' = %(severity)s::text)
   AND (%(rule)s::text IS NULL OR o.message->>'rule' = %(rule)s::text)
   AND (%(subject)s::text IS NULL OR o.message->'subject'->>'name' = %(subject)s::text)
 ORDER BY o.id DESC
 LIMIT %(limit)s::int;

-- name: alert_failures_since
-- The time of the newest failure-like event (failed, retry_scheduled, lease_expired) after `after`, and the
-- database's clock: the alert daemon's prompt path asks this on every items-channel wake-up and every few
-- seconds, then evaluates the rules at once when there is one. The BRIN index on `at` keeps it to the newest
-- block ranges. (An event whose transaction began before `after` but committed later is left to the next
-- interval's evaluation.)
SELECT (SELECT max(at) FROM {schema}.item_events
         WHERE at > coalesce(%(after)s::timestamptz, now())
           AND event IN ('failed', 'retry_scheduled', 'lease_expired')) AS last,
       now() AS now;
