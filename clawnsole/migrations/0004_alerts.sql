-- 0004_alerts: alerting — settings, rules, the state of each alert, and the outbox its notices leave by.
--
-- Applied with search_path set to the Clawnsole schema, so names are unqualified.
-- For a running deployment: new tables and one function, nothing else; `items`, `item_events`, the schedule
-- and worker tables are only read (by the rule conditions), so workers of the previous version keep claiming
-- while this runs. Nothing is evaluated until an evaluator runs (`clawnsole alert evaluate`, or the daemon).
--
-- The evaluation round (clawnsole/alerts/engine.py) writes `alerts` and `alert_outbox` in one transaction
-- per rule, under the rule's row lock, then announces new outbox rows with
--     pg_notify('clawnsole:<schema>:alerts', '')
-- (`clawnsole.alerts.api.alert_channel(schema)` builds the name): the sender LISTENs there, and polls
-- `alert_outbox_due_idx` as the backstop.

-- Rules ---------------------------------------------------------------------------------------------------
-- The one row of settings (the file's `settings:`); `id` is always true so a second row cannot exist.
CREATE TABLE alert_settings (
    id                           boolean     PRIMARY KEY DEFAULT true CHECK (id),
    enabled                      boolean     NOT NULL DEFAULT true,
    -- The channels notices may go to; a rule's own channels are intersected with these.
    channels                     text[]      NOT NULL DEFAULT '{}'
                                 CHECK (channels <@ ARRAY['slack', 'discord', 'email', 'webhook']),
    slack_channel                text,
    slack_username               text,
    slack_icon_emoji             text,
    -- throttle.minInterval: seconds between two notices of one alert while it stays true.
    min_interval_seconds         integer     NOT NULL DEFAULT 300 CHECK (min_interval_seconds >= 0),
    -- throttle.maxAlertsPerJobPerHour: notices about one subject (job, queue or schedule), across rules.
    max_alerts_per_job_per_hour  integer     NOT NULL DEFAULT 10 CHECK (max_alerts_per_job_per_hour > 0),
    updated_at                   timestamptz NOT NULL DEFAULT now()
);
INSERT INTO alert_settings DEFAULT VALUES;

-- One rule of a group; `conditions` is the file's mapping as written (checked by clawnsole/alerts/rules.py).
CREATE TABLE alert_rules (
    id                 bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name               text        NOT NULL UNIQUE,
    rule_group         text        NOT NULL
                       CHECK (rule_group IN ('jobFailures', 'queueHealth', 'performance', 'schedules')),
    description        text,
    enabled            boolean     NOT NULL DEFAULT true,
    conditions         jsonb       NOT NULL,
    severity           text        NOT NULL CHECK (severity IN ('critical', 'high', 'medium', 'low')),
    channels           text[]      NOT NULL DEFAULT '{}'
                       CHECK (channels <@ ARRAY['slack', 'discord', 'email', 'webhook']),
    -- When an evaluator last evaluated it: two evaluators do not both evaluate a rule within their interval.
    last_evaluated_at  timestamptz,
    -- The last evaluation's failure (its transaction rolled back), cleared by the next good one.
    last_error         text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- One row per (rule, subject) that has ever fired; it stays (resolved) so a re-fire keeps its throttle.
-- Written only under its rule's row lock, so one evaluator at a time changes a rule's alerts.
CREATE TABLE alerts (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_id          bigint      NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    subject_type     text        NOT NULL CHECK (subject_type IN ('job', 'queue', 'schedule')),
    subject          text        NOT NULL,
    state            text        NOT NULL CHECK (state IN ('firing', 'resolved')),
    fired_at         timestamptz NOT NULL,
    resolved_at      timestamptz,
    -- Whether this firing has been announced (a fired notice written); only then is its resolve announced.
    notified         boolean     NOT NULL DEFAULT false,
    last_sent_at     timestamptz,
    sent_count       bigint      NOT NULL DEFAULT 0,
    -- The hour window of maxAlertsPerJobPerHour: notices sent since hour_started_at (a fixed hour).
    hour_started_at  timestamptz,
    hour_sent        integer     NOT NULL DEFAULT 0,
    -- Notices held back by the throttle since the last one sent; the next one says how many.
    suppressed       integer     NOT NULL DEFAULT 0,
    -- What the condition last found (numbers, item ids), and what the last notice was about: a change of
    -- `evidence` (a newer failure, say) while firing asks for a new notice.
    last_values      jsonb,
    evidence         text,
    sent_evidence    text,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (rule_id, subject_type, subject)
);
-- The per-subject hourly budget sums the subject's rows across rules.
CREATE INDEX alerts_subject_idx ON alerts (subject_type, subject);

-- Whether PostgreSQL's regular expressions accept a pattern (NULL) or why not: a jobPattern must work with
-- both Python's `re` (checked in rules.py) and `~`, which the conditions use.
CREATE FUNCTION alert_regex_error(pattern text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    PERFORM '' ~ pattern;
    RETURN NULL;
EXCEPTION WHEN invalid_regular_expression THEN
    RETURN SQLERRM;
END
$$;

-- Delivery (outbox) ---------------------------------------------------------------------------------------
-- Owned by the delivery half (clawnsole/alerts/delivery.py); rows are inserted by the evaluation round, one
-- per channel of the rule that settings enable. Message: {"rule", "description", "severity", "state":
-- "fired"|"resolved", "subject": {"type": "job"|"queue"|"schedule", "name"}, "summary": one line, "details":
-- {condition-specific numbers}, "since": ISO time, "item_ids": [...], "command": "clawnsole dlq list …",
-- "suppressed": N}.
CREATE TABLE alert_outbox (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id         bigint      NOT NULL,          -- the alerts row (fired/resolved subject) it is about
    channel          text        NOT NULL CHECK (channel IN ('slack', 'discord', 'email', 'webhook')),
    kind             text        NOT NULL CHECK (kind IN ('fired', 'resolved', 'test')),
    message          jsonb       NOT NULL,           -- what to say; see "Message" below
    created_at       timestamptz NOT NULL DEFAULT now(),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    attempts         integer     NOT NULL DEFAULT 0,
    sent_at          timestamptz,
    last_error       text
);
CREATE INDEX alert_outbox_due_idx ON alert_outbox (next_attempt_at) WHERE sent_at IS NULL;
-- (delivery) A test notice (`clawnsole alert test`) is about no alert.
ALTER TABLE alert_outbox ALTER COLUMN alert_id DROP NOT NULL;
-- (delivery) When the sender stopped trying: after `attempts` failed over 24 hours, or at once when the
-- channel is not configured. The sender's claim walks this index, which holds only the rows still to send
-- (alert_outbox_due_idx also keeps the given-up ones; with `AND given_up_at IS NULL` added to its predicate
-- it could replace this one).
ALTER TABLE alert_outbox ADD COLUMN given_up_at timestamptz;
CREATE INDEX alert_outbox_sendable_idx ON alert_outbox (next_attempt_at)
    WHERE sent_at IS NULL AND given_up_at IS NULL;

-- (delivery) Every attempt to send a notice, in order: what `alert history` and an operator read when a
-- channel is down. `status_code` is the HTTP status or SMTP reply code when there was one; `error` is
-- redacted (no webhook URL, token or password ever reaches it).
CREATE TABLE alert_deliveries (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    outbox_id    bigint      NOT NULL REFERENCES alert_outbox (id) ON DELETE CASCADE,
    attempt      integer     NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    channel      text        NOT NULL,
    ok           boolean     NOT NULL,
    status_code  integer,
    error        text,
    agent        text
);
CREATE INDEX alert_deliveries_outbox_idx ON alert_deliveries (outbox_id, id);
