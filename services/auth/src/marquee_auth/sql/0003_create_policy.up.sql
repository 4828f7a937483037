-- The RBAC policy in Casbin's rule shape: ptype 'p' rows are (subject, object,
-- action, effect), 'g' rows are (user or role, role). Unused fields hold ''
-- rather than NULL, so removing a rule can match every field exactly.
CREATE TABLE auth_casbin_rules (
    id bigserial PRIMARY KEY,
    ptype text NOT NULL,
    v0 text NOT NULL DEFAULT '',
    v1 text NOT NULL DEFAULT '',
    v2 text NOT NULL DEFAULT '',
    v3 text NOT NULL DEFAULT '',
    v4 text NOT NULL DEFAULT '',
    v5 text NOT NULL DEFAULT '',
    UNIQUE (ptype, v0, v1, v2, v3, v4, v5)
);

-- Role `admin` may do anything: with keyMatch objects and "*" actions this rule
-- grants what it says (the system this replaces compared exactly, so it never did).
INSERT INTO auth_casbin_rules (ptype, v0, v1, v2, v3) VALUES ('p', 'admin', '*', '*', 'allow');
