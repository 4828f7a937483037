-- Accounts, password credentials, sessions with rotating refresh tokens, and
-- the keys that sign access tokens. Secrets (private keys) are stored
-- encrypted by the service (AES-GCM under MARQUEE_AUTH_ENCRYPTION_KEY).
CREATE TABLE auth_users (
    id uuid PRIMARY KEY,
    username text NOT NULL,
    email text NOT NULL,
    display_name text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Repeated wrong passwords: backoff, then a lockout until locked_until.
    failed_logins integer NOT NULL DEFAULT 0,
    locked_until timestamptz
);
-- Usernames and emails are unique without regard to case.
CREATE UNIQUE INDEX auth_users_username ON auth_users (lower(username));
CREATE UNIQUE INDEX auth_users_email ON auth_users (lower(email));

CREATE TABLE auth_password_credentials (
    user_id uuid PRIMARY KEY REFERENCES auth_users (id) ON DELETE CASCADE,
    -- An argon2id PHC string: it carries its own parameters and salt.
    hash text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- A session is one login; its refresh tokens form a family. Revoking the
-- session ends every token of the family.
CREATE TABLE auth_sessions (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES auth_users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    revoked_reason text
);
CREATE INDEX auth_sessions_user ON auth_sessions (user_id) WHERE revoked_at IS NULL;

-- Only a SHA-256 of each refresh token is stored. A token is spent once it is
-- rotated; presenting a spent one again revokes its session (theft signal).
CREATE TABLE auth_refresh_tokens (
    token_hash bytea PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES auth_sessions (id) ON DELETE CASCADE,
    issued_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    spent_at timestamptz
);
CREATE INDEX auth_refresh_tokens_session ON auth_refresh_tokens (session_id);

-- Access-token signing keys. The newest active key signs; retired keys stay
-- published (GetJwks) until every token they signed has expired.
CREATE TABLE auth_signing_keys (
    kid text PRIMARY KEY,
    algorithm text NOT NULL,
    public_jwk jsonb NOT NULL,
    private_key_encrypted bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    retired_at timestamptz
);
