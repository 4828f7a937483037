DROP TABLE auth_mfa_challenges;
DROP TABLE auth_recovery_codes;
DROP TABLE auth_totp;
