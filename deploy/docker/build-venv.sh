#!/bin/sh
# build-venv.sh SERVICE: /opt/venv with what services/SERVICE needs, in the image's build stage.
# Third-party packages: the service's part of requirements.lock, hash-checked, no
# resolution (--no-deps). Workspace members: built from the context, no dependencies.
set -eu
service="$1"
select=/usr/local/lib/marquee/select_requirements.py
python "$select" /src "marquee-$service" > /tmp/requirements.txt
python -m venv /opt/venv
/opt/venv/bin/pip install --require-hashes --no-deps -r /tmp/requirements.txt
folders=$(python "$select" --folders /src "marquee-$service")
# shellcheck disable=SC2086 # one folder per word
/opt/build-tools/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/wheels $folders
/opt/venv/bin/pip install --no-deps --no-index /tmp/wheels/*.whl
/opt/venv/bin/pip uninstall --yes pip
rm -rf /tmp/wheels /tmp/requirements.txt
