#!/usr/bin/env bash
# Build the deployment assets the AWS Solutions way (see deployment/README.md):
#
#   deployment/build-s3-dist.sh BUCKET_PREFIX SOLUTION_NAME VERSION [options]
#
# writes deployment/global-s3-assets/ and deployment/regional-s3-assets/. Options go to `python deployment/package.py build`
# (--model-dir, --models, --no-fetch, --out). Timestamps come from SOURCE_DATE_EPOCH,
# by default the time of the last commit, so a rebuild of a commit is byte-identical.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"

if [ "$#" -lt 3 ]; then
    echo "usage: $0 BUCKET_PREFIX SOLUTION_NAME VERSION [--model-dir DIR] [--models A,B] [--no-fetch] [--out DIR]" >&2
    echo "  e.g. $0 my-bucket superres-kit v1.0.0" >&2
    exit 2
fi

python="${PYTHON:-}"
if [ -z "$python" ]; then
    if [ -x "$root/.venv/bin/python" ]; then python="$root/.venv/bin/python"; else python=python3; fi
fi
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH="$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 315532800)"
fi
export SOURCE_DATE_EPOCH
export PYTHONPATH="$root/source${PYTHONPATH:+:$PYTHONPATH}"

exec "$python" "$here/package.py" build "$@"
