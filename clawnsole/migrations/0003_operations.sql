-- 0003_operations: what an operator runs the queue with — queue controls and limits, dependency chains,
-- the workers registry, item metadata and step timings.
--
-- Applied with search_path set to the Clawnsole schema, so names are unqualified.
-- For a running deployment: new tables, new nullable or defaulted columns (no table rewrite), a wider
-- status CHECK (validated without blocking writes for long: it only reads). Workers of the previous version
-- keep claiming while this runs; run `clawnsole migrate` before upgrading the code, since this version
-- refuses a schema without it.

-- Queue controls ------------------------------------------------------------------------------------------
-- A row exists only for a queue someone has controlled: no row means active and unlimited, so the claim
-- of an uncontrolled queue pays one probe of this (tiny) table's primary key and nothing else.
CREATE TABLE queues (
    name                 text        PRIMARY KEY,
    -- paused: claims return nothing, enqueues are accepted; draining: enqueues are refused, claims go on.
    state                text        NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'paused', 'draining')),
    state_since          timestamptz NOT NULL DEFAULT now(),
    state_by             text,
    -- At most this many items of the queue claimed at once, across every worker and machine.
    concurrency_limit    integer     CHECK (concurrency_limit > 0),
    -- At most rate_limit claims per window of rate_window_seconds (windows aligned on the epoch).
    rate_limit           integer     CHECK (rate_limit > 0),
    rate_window_seconds  integer     CHECK (rate_window_seconds > 0),
    rate_window_start    timestamptz,
    rate_window_claims   integer     NOT NULL DEFAULT 0,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CHECK ((rate_limit IS NULL) = (rate_window_seconds IS NULL))
);

-- Dependency chains ---------------------------------------------------------------------------------------
-- `waiting`: enqueued with prerequisites not yet done; it leaves items_claimable_idx like every status but
-- pending.
ALTER TABLE items DROP CONSTRAINT items_status_check;
ALTER TABLE items ADD CONSTRAINT items_status_check
    CHECK (status IN ('waiting', 'pending', 'claimed', 'done', 'failed', 'cancelled')) NOT VALID;
ALTER TABLE items VALIDATE CONSTRAINT items_status_check;

-- Which items wait for which. A prerequisite exists when its dependent is enqueued (so no cycle can form).
CREATE TABLE item_dependencies (
    item_id          bigint NOT NULL,
    prerequisite_id  bigint NOT NULL,
    PRIMARY KEY (item_id, prerequisite_id)
);
-- A finishing prerequisite finds its dependents here.
CREATE INDEX item_dependencies_prerequisite_idx ON item_dependencies (prerequisite_id, item_id);

-- Workers registry ----------------------------------------------------------------------------------------
-- One row per running (or recently gone) worker, refreshed by the heartbeat it already sends.
CREATE TABLE workers (
    agent              text        PRIMARY KEY,
    host               text,
    pid                integer,
    queues             text[]      NOT NULL,
    version            text,
    concurrency        integer,
    heartbeat_seconds  double precision,
    started_at         timestamptz NOT NULL DEFAULT now(),
    last_seen_at       timestamptz NOT NULL DEFAULT now(),
    stopped_at         timestamptz,
    in_flight          integer     NOT NULL DEFAULT 0,
    done_count         bigint      NOT NULL DEFAULT 0,
    failed_count       bigint      NOT NULL DEFAULT 0
);
CREATE INDEX workers_last_seen_idx ON workers (last_seen_at);

-- Metadata and history ------------------------------------------------------------------------------------
-- Free-form JSON a producer attaches to an item (shown, filterable); NULL when none was given.
ALTER TABLE items ADD COLUMN metadata jsonb;

-- `unblocked`: a waiting item's last prerequisite finished; `step`: a handler timed one of its steps.
ALTER TABLE item_events DROP CONSTRAINT item_events_event_check;
ALTER TABLE item_events ADD CONSTRAINT item_events_event_check
    CHECK (event IN ('enqueued', 'claimed', 'progress', 'done', 'failed', 'retry_scheduled', 'lease_expired',
                     'cancelled', 'requeued', 'released', 'unblocked', 'step')) NOT VALID;
ALTER TABLE item_events VALIDATE CONSTRAINT item_events_event_check;

-- Stats and cleanup read events by time; events are appended in time order, so a BRIN index (a few pages,
-- next to nothing per insert) narrows a time range to its blocks.
CREATE INDEX item_events_at_idx ON item_events USING brin (at);
