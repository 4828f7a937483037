#!/bin/sh
# Creates the secret files compose.yaml reads, once: random values, never committed
# (secrets/.gitignore). Existing files are kept, so running it again changes nothing.
# The directory is 0700; the files 0644 so the services' user (uid 10001) can read
# them through compose's bind mount.
set -eu
cd "$(dirname "$0")"
umask 077
mkdir -p secrets
chmod 700 secrets
random() { python3 -c "import secrets, sys; print(secrets.token_urlsafe(int(sys.argv[1])))" "$1"; }
put() {  # put NAME VALUE: writes secrets/NAME unless it exists
  if [ ! -e "secrets/$1" ]; then
    printf '%s\n' "$2" > "secrets/$1"
    chmod 644 "secrets/$1"
    echo "created secrets/$1"
  fi
}
put cluster_secret "$(random 32)"
put coordinator_admin_token "$(random 32)"
put postgres_password "$(random 24)"
put auth_db_password "$(random 24)"
put auth_database_url "postgresql://auth:$(cat secrets/auth_db_password)@postgres:5432/auth"
put media_db_password "$(random 24)"
put media_database_url "postgresql://media:$(cat secrets/media_db_password)@postgres:5432/media"
put search_db_password "$(random 24)"
put search_database_url "postgresql://search:$(cat secrets/search_db_password)@postgres:5432/search"
put auth_encryption_key "$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')"
put s3_access_key "marquee-$(random 6)"
put s3_secret_key "$(random 30)"
put typesense_api_key "$(random 32)"
put grafana_admin_password "$(random 18)"
