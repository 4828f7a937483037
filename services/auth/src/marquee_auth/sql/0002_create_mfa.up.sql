-- TOTP second factors, recovery codes and the MFA challenges a password login
-- answers with. TOTP seeds are stored sealed (AES-GCM, see secret_box.py).
CREATE TABLE auth_totp (
    user_id uuid PRIMARY KEY REFERENCES auth_users (id) ON DELETE CASCADE,
    -- The active seed, once an enrollment was confirmed.
    secret_sealed bytea,
    confirmed_at timestamptz,
    -- The newest accepted time step: a code of this step or an older one is
    -- refused (replay). Checked and set in one UPDATE.
    last_step bigint,
    -- An enrollment waiting for its first code.
    pending_secret_sealed bytea,
    pending_expires_at timestamptz
);

-- One-time codes that stand in for a TOTP code; only a SHA-256 is kept (each
-- code has 80 random bits, so a slow hash adds nothing).
CREATE TABLE auth_recovery_codes (
    code_hash bytea PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES auth_users (id) ON DELETE CASCADE,
    used_at timestamptz
);
CREATE INDEX auth_recovery_codes_user ON auth_recovery_codes (user_id);

-- Issued by a password (or OIDC) login for a user with a second factor.
-- Single use; a few wrong codes end it.
CREATE TABLE auth_mfa_challenges (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES auth_users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    failed_attempts integer NOT NULL DEFAULT 0,
    used_at timestamptz
);
