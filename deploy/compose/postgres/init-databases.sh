#!/bin/bash
# Run once by the postgres image on an empty data directory: one role and one
# database per service that owns one (auth; media and search for their jobs).
# A service that gains a database gets its own line here and its own secrets.
set -euo pipefail

create() {  # create ROLE_AND_DATABASE PASSWORD_FILE
  local name="$1" password
  password="$(cat "$2")"
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    --set=name="$name" --set=password="$password" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
}

create auth /run/secrets/auth_db_password
create media /run/secrets/media_db_password
create search /run/secrets/search_db_password
