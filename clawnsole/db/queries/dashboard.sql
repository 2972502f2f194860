-- The dashboard's sign-in sessions. `{schema}` is replaced by the quoted schema name when the registry is
-- loaded.

-- name: dashboard_session_open
-- Open a session for a live token (its hash given), ending when the token does or after `seconds`,
-- whichever is first. No row: the token is unknown, expired or revoked. Prunes the expired sessions.
WITH token AS (
    SELECT name, scopes, queues, expires_at FROM {schema}.api_tokens
     WHERE hash = %(token_hash)s::text AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
), pruned AS (
    DELETE FROM {schema}.dashboard_sessions WHERE expires_at <= now()
)
INSERT INTO {schema}.dashboard_sessions (hash, token_name, expires_at)
SELECT %(session_hash)s::text, token.name,
       least(coalesce(token.expires_at, 'infinity'), now() + make_interval(secs => %(seconds)s::float8))
  FROM token
RETURNING token_name, expires_at;

-- name: dashboard_session_principal
-- The token behind a live session, with its grants and the database's clock (what a page's relative times
-- are measured from); no row when the session or its token has ended.
SELECT t.name, t.scopes, t.queues, now() AS now
  FROM {schema}.dashboard_sessions s
  JOIN {schema}.api_tokens t ON t.name = s.token_name
 WHERE s.hash = %(session_hash)s::text AND s.expires_at > now()
   AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now());

-- name: dashboard_session_close
-- End one session (signing out); no row when it had ended already.
DELETE FROM {schema}.dashboard_sessions WHERE hash = %(session_hash)s::text RETURNING token_name;

