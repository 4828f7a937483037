#!/bin/sh
# Creates the Secrets the manifests reference, with random values, straight in
# the cluster (nothing is written to disk). Existing Secrets are left alone.
#   deploy/k8s/overlays/dev/create-secrets.sh [NAMESPACE] [AUTH_DATABASE_URL] [S3_ACCESS_KEY] [S3_SECRET_KEY] [TYPESENSE_API_KEY] [MEDIA_DATABASE_URL] [SEARCH_DATABASE_URL]
# The backend credentials are your dev backends'; the others are generated.
set -eu
ns="${1:-marquee-dev}"
kubectl="${KUBECTL:-kubectl}"
random() { python3 -c "import secrets, sys; print(secrets.token_urlsafe(int(sys.argv[1])))" "$1"; }
exists() { "$kubectl" -n "$ns" get secret "$1" >/dev/null 2>&1; }
exists marquee-coordinator || "$kubectl" -n "$ns" create secret generic marquee-coordinator \
  --from-literal=cluster-secret="$(random 32)" --from-literal=admin-token="$(random 32)"
exists marquee-auth || "$kubectl" -n "$ns" create secret generic marquee-auth \
  --from-literal=database-url="${2:?the auth database URL, postgresql://auth:PASSWORD@HOST:5432/auth}" \
  --from-literal=encryption-key="$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')"
exists marquee-media || "$kubectl" -n "$ns" create secret generic marquee-media \
  --from-literal=s3-access-key="${3:?S3 access key}" --from-literal=s3-secret-key="${4:?S3 secret key}" \
  --from-literal=database-url="${6:?the media database URL, postgresql://media:PASSWORD@HOST:5432/media}"
exists marquee-search || "$kubectl" -n "$ns" create secret generic marquee-search \
  --from-literal=typesense-api-key="${5:?Typesense API key}" \
  --from-literal=database-url="${7:?the search database URL, postgresql://search:PASSWORD@HOST:5432/search}"
