DROP TABLE auth_signing_keys;
DROP TABLE auth_refresh_tokens;
DROP TABLE auth_sessions;
DROP TABLE auth_password_credentials;
DROP TABLE auth_users;
