DROP TABLE auth_oidc_links;
DROP TABLE auth_oidc_logins;
