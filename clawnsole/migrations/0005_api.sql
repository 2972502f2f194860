-- 0005_api: the HTTP API's bearer tokens and the audit log of what was changed through it.
--
-- Applied with search_path set to the Clawnsole schema, so names are unqualified.
-- For a running deployment: two new tables, nothing else is touched; workers of the previous version keep
-- claiming while this runs. Nothing uses them until `clawnsole serve` runs.

-- Tokens --------------------------------------------------------------------------------------------------
-- One row per named token. The secret itself is never stored: `hash` is the sha256 (hex) of the whole
-- secret (`cln_` + 32 random bytes, urlsafe base64), shown once by `clawnsole token create`. A lookup by
-- hash is an index probe, and a stolen copy of this table authenticates nobody.
CREATE TABLE api_tokens (
    name          text        PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}$'),
    hash          text        NOT NULL UNIQUE CHECK (hash ~ '^[0-9a-f]{64}$'),
    scopes        text[]      NOT NULL
                  CHECK (cardinality(scopes) > 0
                         AND scopes <@ ARRAY['read', 'enqueue', 'work', 'operate', 'admin']),
    -- The queues the token sees and touches; NULL: all of them.
    queues        text[]      CHECK (queues IS NULL OR cardinality(queues) > 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz,
    -- Touched at most once a minute per token (api_token_authenticate), so busy clients do not queue up
    -- behind one row lock.
    last_used_at  timestamptz
);

-- Audit ---------------------------------------------------------------------------------------------------
-- Every mutation made through the API (and the dashboard), allowed or refused. `detail` never holds a
-- secret, a lease token or an item's instructions.
CREATE TABLE audit_log (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    token_name  text,
    action      text        NOT NULL,
    target      text,
    outcome     text        NOT NULL,
    detail      jsonb
);
-- `clawnsole audit --since` reads newest first by time; `--token` narrows to one token.
CREATE INDEX audit_log_at_idx ON audit_log (at);
CREATE INDEX audit_log_token_idx ON audit_log (token_name, id);
