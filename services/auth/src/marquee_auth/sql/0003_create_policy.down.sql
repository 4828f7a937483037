DROP TABLE auth_casbin_rules;
