#!/bin/sh
# build-venv.sh SERVICE [PACKAGE ...]: /opt/venv with what services/SERVICE needs, in the
# image's build stage; PACKAGEs are locked packages the service imports but its
# pyproject.toml does not list yet.
# Wheels first, with the build tools' pip (hatchling and setuptools from the lock):
# the service's part of requirements.lock, hash-checked and unresolved (--no-deps);
# a package published only as an sdist (pysyncobj) is built with the locked
# setuptools, not an unpinned one (--no-build-isolation). Then the workspace
# members, from the build context. The venv gets exactly those wheels, offline.
set -eu
service="$1"
shift
select=/usr/local/lib/marquee/select_requirements.py
tools=/opt/build-tools/bin/pip
python "$select" /src "marquee-$service" "$@" > /tmp/requirements.txt
"$tools" wheel --require-hashes --no-deps --no-build-isolation --wheel-dir /tmp/wheels \
  -r /tmp/requirements.txt
folders=$(python "$select" --folders /src "marquee-$service")
# shellcheck disable=SC2086 # one folder per word
"$tools" wheel --no-deps --no-build-isolation --wheel-dir /tmp/wheels $folders
python -m venv /opt/venv
/opt/venv/bin/pip install --no-deps --no-index /tmp/wheels/*.whl
/opt/venv/bin/pip uninstall --yes pip
rm -rf /tmp/wheels /tmp/requirements.txt
