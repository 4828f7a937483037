-- Passkeys (WebAuthn credentials) and the ceremonies that create and use them.
CREATE TABLE auth_webauthn_credentials (
    -- The authenticator's credential id.
    id bytea PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES auth_users (id) ON DELETE CASCADE,
    public_key bytea NOT NULL,
    -- The authenticator's signature counter; 0 forever for many passkeys.
    sign_count bigint NOT NULL DEFAULT 0,
    transports text[] NOT NULL DEFAULT '{}',
    nickname text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz
);
CREATE INDEX auth_webauthn_credentials_user ON auth_webauthn_credentials (user_id);

-- A registration or login in progress: its challenge is kept server-side and
-- accepted once, before it expires.
CREATE TABLE auth_webauthn_ceremonies (
    id uuid PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('register', 'login')),
    -- Who registers; who logs in when known (a username or an MFA challenge).
    user_id uuid REFERENCES auth_users (id) ON DELETE CASCADE,
    -- Set when the login answers a password login's MFA challenge.
    mfa_challenge_id uuid REFERENCES auth_mfa_challenges (id) ON DELETE CASCADE,
    challenge bytea NOT NULL,
    nickname text NOT NULL DEFAULT '',
    expires_at timestamptz NOT NULL,
    used_at timestamptz
);
