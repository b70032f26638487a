#!/bin/sh
# One image, two roles. `celery ...` runs the Fargate worker; anything else (the default CMD,
# a Lambda handler name) goes to the Lambda runtime interface as in the base image.
set -eu
if [ "${1:-}" = "celery" ]; then
    exec "$@"
fi
exec /lambda-entrypoint.sh "$@"
