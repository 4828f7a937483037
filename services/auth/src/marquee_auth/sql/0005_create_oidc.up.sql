-- OpenID Connect logins: the pending ones (state, nonce and PKCE verifier kept
-- server-side, accepted once, before they expire) and the links from a
-- provider's subject to a local user.
CREATE TABLE auth_oidc_logins (
    -- SHA-256 of the state handed to the browser: the state itself is not kept.
    state_hash bytea PRIMARY KEY,
    provider text NOT NULL,
    redirect_uri text NOT NULL,
    nonce text NOT NULL,
    code_verifier text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at timestamptz
);
CREATE INDEX auth_oidc_logins_expiry ON auth_oidc_logins (expires_at);

CREATE TABLE auth_oidc_links (
    provider text NOT NULL,
    -- The ID token's `sub`: stable per provider, unlike an email.
    subject text NOT NULL,
    user_id uuid NOT NULL REFERENCES auth_users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz,
    PRIMARY KEY (provider, subject),
    -- One identity per provider and user: a second one would be a takeover path.
    UNIQUE (provider, user_id)
);
