-- 0001_items: work items and their append-only history.
--
-- Applied with search_path set to the Clawnsole schema (default "clawnsole"), so names are unqualified.
-- The hot path (claim-next) reads only the partial index items_claimable_idx, which finished rows leave:
-- a table with millions of done items claims as fast as an empty one.

CREATE TABLE items (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue             text        NOT NULL,
    kind              text,
    title             text        NOT NULL,
    instructions      text,
    payload           jsonb       NOT NULL DEFAULT '{}'::jsonb,
    priority          integer     NOT NULL DEFAULT 50,
    status            text        NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'claimed', 'done', 'failed', 'cancelled')),
    dedupe_key        text,
    -- A finished item keeps its dedupe key held until finished_at + dedupe_cooldown (forever when NULL).
    dedupe_cooldown   interval,
    dedupe_held       boolean     NOT NULL DEFAULT false,
    run_at            timestamptz NOT NULL DEFAULT now(),
    attempts          integer     NOT NULL DEFAULT 0,
    max_attempts      integer     NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    backoff_seconds   double precision NOT NULL DEFAULT 10 CHECK (backoff_seconds >= 0),
    lease_seconds     double precision NOT NULL DEFAULT 300 CHECK (lease_seconds > 0),
    claimed_by        text,
    lease_token       uuid,
    lease_expires_at  timestamptz,
    progress_note     text,
    progress_percent  smallint CHECK (progress_percent BETWEEN 0 AND 100),
    result            jsonb,
    last_error        text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    claimed_at        timestamptz,
    finished_at       timestamptz,
    CHECK ((dedupe_key IS NOT NULL) OR NOT dedupe_held),
    -- Exactly the claimed items hold a lease (items_lease_idx relies on it).
    CHECK ((status = 'claimed') = (lease_expires_at IS NOT NULL))
);

-- Claim-next walks this index in order and stops after LIMIT rows: no sort step, no finished rows.
CREATE INDEX items_claimable_idx ON items (queue, priority DESC, run_at, id) WHERE status = 'pending';

-- Expired leases are found here by claim-next itself, so cron-only deployments need no rescuer daemon.
-- Its predicate is "has a lease" (the same rows as status = 'claimed', checked below) rather than the
-- status: the fenced writes (done, fail, progress, heartbeat, release) say `status = 'claimed'`, and with
-- a partial index on that predicate the planner may scan every claimed row — and the dead entries of
-- every finished claim — for each of them instead of looking the item up by id. Written this way only
-- statements about lease expiry can use it.
CREATE INDEX items_lease_idx ON items (lease_expires_at) WHERE lease_expires_at IS NOT NULL;

-- Idempotent enqueue: at most one item per (queue, key) holds the key at a time.
CREATE UNIQUE INDEX items_dedupe_idx ON items (queue, dedupe_key) WHERE dedupe_held;

-- Listing failed and cancelled items by queue without scanning the done ones. Only those two statuses are
-- indexed: every index on items costs each claim and each completion an insert (status changes are never
-- HOT updates), and a (queue, status) index over all rows cost the claim→done path ~25 % of its speed.
-- Pending items are listed through items_claimable_idx, claimed ones through items_lease_idx, done ones
-- newest first through the primary key.
CREATE INDEX items_trouble_idx ON items (queue, status, id) WHERE status IN ('failed', 'cancelled');

-- Rows churn through pending -> claimed -> done; leave room for HOT updates and vacuum eagerly.
ALTER TABLE items SET (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.02,
                      autovacuum_analyze_scale_factor = 0.02);

-- No foreign key to items, on purpose: an event is only ever written by the statement that inserts or
-- changes its item, so the item exists; and Clawnsole never deletes items (a future prune must delete an
-- item's events in the same statement). The key check cost every event an index probe and a row lock —
-- a WAL record — on the item: a third of batched enqueue's speed.
CREATE TABLE item_events (
    id       bigint GENERATED ALWAYS AS IDENTITY,
    item_id  bigint      NOT NULL,
    at       timestamptz NOT NULL DEFAULT now(),
    event    text        NOT NULL CHECK (event IN ('enqueued', 'claimed', 'progress', 'done', 'failed',
                                                   'retry_scheduled', 'lease_expired', 'cancelled',
                                                   'requeued', 'released')),
    agent    text,
    detail   jsonb,
    -- One index serves both uniqueness and an item's history in order: every claim and completion writes
    -- an event, and a second index (on id alone) would cost each of them one more insert.
    PRIMARY KEY (item_id, id)
);
