-- 0002_schedules: recurring enqueues (cron in a time zone, or a fixed interval) and their run log.
--
-- Applied with search_path set to the Clawnsole schema, so names are unqualified.
-- For a running deployment: two new tables and nothing else; `items` is untouched, so workers of the
-- previous version keep claiming while this runs and afterwards (they accept a newer schema). Run
-- `clawnsole migrate` before upgrading the code: this version refuses a schema without this migration.
-- Nothing fires until a scheduler runs (`clawnsole scheduler run`, `scheduler tick` from cron, or
-- `worker-loop --with-scheduler`).

CREATE TABLE schedules (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name              text        NOT NULL UNIQUE,
    -- The item each window enqueues.
    queue             text        NOT NULL,
    kind              text,
    title             text        NOT NULL,
    instructions      text,
    payload           jsonb       NOT NULL DEFAULT '{}'::jsonb,
    priority          integer     NOT NULL DEFAULT 50,
    max_attempts      integer     NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    -- When: a five-field cron expression read on the wall clock of `timezone`, or every interval_seconds.
    cron              text,
    timezone          text        NOT NULL DEFAULT 'UTC',
    interval_seconds  bigint      CHECK (interval_seconds > 0),
    status            text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused')),
    catch_up          text        NOT NULL DEFAULT 'latest' CHECK (catch_up IN ('latest', 'all', 'none')),
    overlap           text        NOT NULL DEFAULT 'allow' CHECK (overlap IN ('allow', 'skip')),
    description       text,
    -- The next window; a tick fires every active schedule whose next_run_at has come, then advances it.
    next_run_at       timestamptz NOT NULL,
    last_run_at       timestamptz,
    -- The newest item this schedule enqueued: `overlap: skip` waits while it is pending or claimed.
    last_item_id      bigint      REFERENCES items (id) ON DELETE SET NULL,
    run_count         bigint      NOT NULL DEFAULT 0,
    skip_count        bigint      NOT NULL DEFAULT 0,
    error_count       bigint      NOT NULL DEFAULT 0,
    last_error        text,
    last_error_at     timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK ((cron IS NULL) <> (interval_seconds IS NULL))
);

-- A tick reads only this index: active schedules in due order. Paused ones leave it.
CREATE INDEX schedules_due_idx ON schedules (next_run_at) WHERE status = 'active';

-- Deleting items (a future purge) clears last_item_id through this index rather than a scan per item.
CREATE INDEX schedules_last_item_idx ON schedules (last_item_id) WHERE last_item_id IS NOT NULL;

-- The run log: what each window became. Kept short per schedule (the tick trims it), so it never grows
-- with the age of a schedule.
CREATE TABLE schedule_runs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    schedule_id  bigint      NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    -- The window (for `missed`, the first missed window; detail.until is the first one not missed).
    fire_at      timestamptz NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    outcome      text        NOT NULL CHECK (outcome IN ('enqueued', 'duplicate', 'skipped', 'missed',
                                                         'error', 'run_now')),
    item_id      bigint      REFERENCES items (id) ON DELETE SET NULL,
    agent        text,
    detail       jsonb
);

CREATE INDEX schedule_runs_schedule_idx ON schedule_runs (schedule_id, id);
CREATE INDEX schedule_runs_item_idx ON schedule_runs (item_id) WHERE item_id IS NOT NULL;
