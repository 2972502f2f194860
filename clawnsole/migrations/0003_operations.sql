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
    -- The window the counter is for and the claims made in it; only the claim statement writes these,
    -- under this row's lock (see queue_claim_allowance).
    rate_window_start    timestamptz,
    rate_window_claims   integer     NOT NULL DEFAULT 0,
    -- Who changed the limits last, and when (state_by/state_since are the same for the state).
    limits_by            text,
    limits_since         timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CHECK ((rate_limit IS NULL) = (rate_window_seconds IS NULL))
);

-- How many items a claim of `queue` may take now, at most `wanted`; the claim statement calls it only for a
-- queue whose row has a limit. It locks the queue's row until the claiming transaction ends, so the limited
-- claims of one queue run one after another, and each counts after the previous one committed: under READ
-- COMMITTED every statement of a VOLATILE function takes a fresh snapshot, where the claim statement's own
-- snapshot (taken before it waited for the lock) would miss the claims committed meanwhile (pgqueuer#761).
-- Claimed items whose lease ran out but were not recovered yet still count (conservative). The rate counter
-- is for the window of now() (the claim transaction's time, which its `claimed` events carry): a claim that
-- started in a window before the one already counted takes nothing (it claims again, in a later window),
-- so no window ever counts more than the limit. The function only reads: the claim statement adds what it
-- actually claimed with queue_claim_record. search_path is fixed to the schema this migration runs in.
CREATE FUNCTION queue_claim_allowance(queue text, wanted integer) RETURNS integer
    LANGUAGE plpgsql VOLATILE
    SET search_path FROM CURRENT
AS $$
DECLARE
    q queues%ROWTYPE;
    allowed integer := wanted;
    held integer;
    current_window timestamptz;
BEGIN
    SELECT * INTO q FROM queues WHERE name = queue FOR UPDATE;
    IF NOT FOUND THEN
        RETURN wanted;
    END IF;
    IF q.state = 'paused' THEN
        RETURN 0;
    END IF;
    IF q.concurrency_limit IS NOT NULL THEN
        -- Through items_lease_idx (exactly the claimed rows), stopping at the limit.
        SELECT count(*) INTO held
          FROM (SELECT 1 FROM items i
                 WHERE i.queue = q.name AND i.status = 'claimed' AND i.lease_expires_at IS NOT NULL
                 LIMIT q.concurrency_limit) c;
        allowed := least(allowed, q.concurrency_limit - held);
    END IF;
    IF q.rate_limit IS NOT NULL THEN
        current_window := date_bin(make_interval(secs => q.rate_window_seconds), now(), timestamptz 'epoch');
        IF current_window < q.rate_window_start THEN
            RETURN 0;
        END IF;
        allowed := least(allowed, q.rate_limit - CASE WHEN current_window = q.rate_window_start
                                                      THEN q.rate_window_claims ELSE 0 END);
    END IF;
    RETURN greatest(allowed, 0);
END
$$;

-- Add `claims` just made from `queue` to its rate window's counter (a new window starts from them) and
-- return the window's count; NULL for a queue without a rate. Called by the claim statement for each item
-- it claimed from a limited queue, whose row queue_claim_allowance locked: the statement's own snapshot may
-- predate the counter it adds to, this function's does not. A function rather than an UPDATE in the claim
-- statement, so an uncontrolled queue's claim plans no scan of `queues` for it.
CREATE FUNCTION queue_claim_record(queue text, claims integer) RETURNS integer
    LANGUAGE plpgsql VOLATILE
    SET search_path FROM CURRENT
AS $$
DECLARE
    current_window timestamptz;
    counted integer;
BEGIN
    SELECT date_bin(make_interval(secs => rate_window_seconds), now(), timestamptz 'epoch') INTO current_window
      FROM queues WHERE name = queue AND rate_limit IS NOT NULL;
    IF NOT FOUND THEN
        RETURN NULL;  -- a concurrency limit only: nothing to count
    END IF;
    UPDATE queues
       SET rate_window_claims = CASE WHEN rate_window_start = current_window THEN rate_window_claims + claims
                                     ELSE claims END,
           rate_window_start = current_window
     WHERE name = queue
    RETURNING rate_window_claims INTO counted;
    RETURN counted;
END
$$;

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

-- has_dependents: set on a prerequisite by the enqueue of a dependent, so a completion or a failure looks
-- for dependents only when there are some: an item without any (almost every item) pays nothing for chains
-- on its hot path. waiting_for: how many of a waiting item's prerequisites are not done yet; a completing
-- prerequisite decrements it under the item's row lock and the one that takes it to zero releases the item,
-- so two prerequisites finishing at the same moment release it exactly once (the second one waits for the
-- row, then re-reads it). Both are defaulted: no table rewrite.
ALTER TABLE items ADD COLUMN has_dependents boolean NOT NULL DEFAULT false,
                  ADD COLUMN waiting_for integer NOT NULL DEFAULT 0;

-- Lock order. A statement that locks several items takes them one primary-key lookup at a time in id order.
-- The statements that lock prerequisites (enqueue --after, requeue) take the ones not `waiting` first and
-- the `waiting` ones after them, each group in id order — the order of a batched completion too, which
-- locks the items it finishes (claimed) before their dependents (waiting): so no two of them deadlock. A
-- dependent's id is always above its prerequisites' (they existed before it), so walking a chain towards
-- its dependents is walking it in id order.

-- Release what waited for these prerequisites, which the calling statement (item_complete,
-- item_complete_many) has just marked done: each waiting dependent's waiting_for goes down by the number of
-- its prerequisites among them, and one that reaches zero becomes pending, with an `unblocked` event and a
-- NOTIFY of its queue on `channel`. A function because of the snapshot: under READ COMMITTED every
-- statement of a VOLATILE function takes a fresh one, here after the caller locked the prerequisites, so it
-- sees a dependency that an enqueue committed while it held a prerequisite's lock (the calling statement's
-- own snapshot, taken before it waited for that lock, does not). The dependents are locked one at a time in
-- id order. Returns how many became pending. search_path is fixed to the schema this migration runs in.
CREATE FUNCTION item_release_dependents(prerequisites bigint[], by_agent text, channel text) RETURNS integer
    LANGUAGE plpgsql VOLATILE
    SET search_path FROM CURRENT
AS $$
DECLARE
    dependent record;
    released_queue text;
    released integer := 0;
BEGIN
    FOR dependent IN
        SELECT d.item_id, array_agg(d.prerequisite_id ORDER BY d.prerequisite_id) AS done
          FROM item_dependencies d
         WHERE d.prerequisite_id = ANY(prerequisites)
         GROUP BY d.item_id
         ORDER BY d.item_id
    LOOP
        UPDATE items i
           SET waiting_for = greatest(i.waiting_for - cardinality(dependent.done), 0),
               status = CASE WHEN i.waiting_for <= cardinality(dependent.done) THEN 'pending' ELSE 'waiting' END,
               updated_at = now()
         WHERE i.id = dependent.item_id AND i.status = 'waiting'
        RETURNING CASE WHEN i.status = 'pending' THEN i.queue END INTO released_queue;
        IF released_queue IS NOT NULL THEN
            INSERT INTO item_events (item_id, event, agent, detail)
            VALUES (dependent.item_id, 'unblocked', by_agent, jsonb_build_object('prerequisites', dependent.done));
            PERFORM pg_notify(channel, released_queue);
            released := released + 1;
        END IF;
    END LOOP;
    RETURN released;
END
$$;

-- Cancel, transitively, what waited for these items, which the calling statement (item_fail,
-- lease_recover_expired, item_cancel) has just ended with `outcomes` ('failed' or 'cancelled', in the same
-- order): every waiting dependent becomes cancelled with a reason naming the prerequisite ("prerequisite 12
-- failed"), and so do the waiting dependents of each one cancelled. Candidates are visited smallest id
-- first, so the locks are taken in id order (a dependent's id is above its prerequisites'), each found by a
-- fresh snapshot taken after the lock of the item it depends on (see item_release_dependents): an enqueue
-- that committed a dependency before that lock is seen; one after it reads the prerequisite cancelled and
-- enqueues its item cancelled itself. Returns how many were cancelled.
CREATE FUNCTION item_cancel_dependents(ended bigint[], outcomes text[], by_agent text) RETURNS integer
    LANGUAGE plpgsql VOLATILE
    SET search_path FROM CURRENT
AS $$
DECLARE
    next_one record;
    passed bigint := 0;
    cancelled integer := 0;
BEGIN
    LOOP
        SELECT d.item_id, min(d.prerequisite_id) AS cause
          INTO next_one
          FROM item_dependencies d
          JOIN items i ON i.id = d.item_id
         WHERE d.prerequisite_id = ANY(ended) AND d.item_id > passed AND i.status = 'waiting'
         GROUP BY d.item_id
         ORDER BY d.item_id
         LIMIT 1;
        EXIT WHEN NOT FOUND;
        passed := next_one.item_id;
        UPDATE items i
           SET status = 'cancelled', waiting_for = 0, finished_at = now(), updated_at = now()
         WHERE i.id = next_one.item_id AND i.status = 'waiting';
        IF FOUND THEN
            INSERT INTO item_events (item_id, event, agent, detail)
            VALUES (next_one.item_id, 'cancelled', by_agent,
                    jsonb_build_object('reason', format('prerequisite %s %s', next_one.cause,
                                                        outcomes[array_position(ended, next_one.cause)]),
                                       'prerequisite', next_one.cause));
            ended := ended || next_one.item_id;
            outcomes := outcomes || 'cancelled'::text;
            cancelled := cancelled + 1;
        END IF;
    END LOOP;
    RETURN cancelled;
END
$$;

-- Workers registry ----------------------------------------------------------------------------------------
-- One row per running (or recently gone) worker, refreshed by the heartbeat it already sends. A worker is
-- gone when it stopped cleanly (stopped_at) or went silent: last_seen_at older than 3 × heartbeat_seconds.
-- Rows gone for more than a day are deleted by the next worker that registers (or `clawnsole workers
-- --prune`). done_count and failed_count count since started_at (a restart registers afresh).
CREATE TABLE workers (
    agent              text        PRIMARY KEY,
    -- Which start of this agent the row describes (random per start): the heartbeat's refresh is fenced by
    -- it, so a second process started under the same agent name takes the row over instead of both
    -- writing into it.
    instance           uuid        NOT NULL,
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
-- `list --metadata key=value` filters by containment (@>). Partial: only items that carry metadata pay for
-- the index on enqueue; a containment test implies NOT NULL, so the planner may use it for those filters.
CREATE INDEX items_metadata_idx ON items USING gin (metadata jsonb_path_ops) WHERE metadata IS NOT NULL;

-- `unblocked`: a waiting item's last prerequisite finished; `step`: a handler timed one of its steps.
ALTER TABLE item_events DROP CONSTRAINT item_events_event_check;
ALTER TABLE item_events ADD CONSTRAINT item_events_event_check
    CHECK (event IN ('enqueued', 'claimed', 'progress', 'done', 'failed', 'retry_scheduled', 'lease_expired',
                     'cancelled', 'requeued', 'released', 'unblocked', 'step')) NOT VALID;
ALTER TABLE item_events VALIDATE CONSTRAINT item_events_event_check;

-- Stats and cleanup read events by time; events are appended in time order, so a BRIN index (a few pages,
-- next to nothing per insert) narrows a time range to its blocks.
CREATE INDEX item_events_at_idx ON item_events USING brin (at);
