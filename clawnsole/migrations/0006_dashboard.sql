-- 0006_dashboard: sign-in sessions of the dashboard (`clawnsole serve` at `/`).
--
-- Applied with search_path set to the Clawnsole schema, so names are unqualified.
-- For a running deployment: one new table, nothing else is touched.

-- A session is opened by signing in with an API token and is only ever as strong as that token: every
-- request looks the token up again, so revoking or expiring the token ends its sessions at once. The
-- browser holds the session's secret in an HttpOnly cookie; only its sha256 (hex) is stored here.
CREATE TABLE dashboard_sessions (
    hash        text        PRIMARY KEY CHECK (hash ~ '^[0-9a-f]{64}$'),
    token_name  text        NOT NULL REFERENCES api_tokens (name) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
-- Signing out everywhere and pruning expired sessions find them by token and by time.
CREATE INDEX dashboard_sessions_token_idx ON dashboard_sessions (token_name);
CREATE INDEX dashboard_sessions_expires_idx ON dashboard_sessions (expires_at);

-- The overview counts waiting items per queue from an index, as it counts pending (items_claimable_idx),
-- claimed (items_lease_idx) and failed ones (items_trouble_idx): no count on a page scans the finished
-- items. Only waiting rows are in it, so the claim and completion path never writes to it.
CREATE INDEX items_waiting_idx ON items (queue) WHERE status = 'waiting';

-- The event feed (the API's SSE stream and the dashboard's live updates) reads the history after an event
-- id. No b-tree leads with id (the primary key is (item_id, id), so an item's history reads in order), and
-- without this every poll of a feed scanned the whole history. Ids grow with the table's physical order,
-- so a BRIN index finds the recent tail in a few block ranges, at almost no cost to the inserts.
CREATE INDEX item_events_id_brin ON item_events USING brin (id);
