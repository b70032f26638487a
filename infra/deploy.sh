#!/bin/sh
# Deploy the stack with its Fargate worker, first time and every release: `make deploy` runs
# this (docs/deploy.md). The worker runs the very image `sam build` made for the Lambda functions:
#
#   1. sam build    builds the image from infra/Dockerfile (with tasks/requirements.txt)
#   2. sam deploy   pushes it to ECR and moves the Lambda functions to it; the Fargate worker
#                   keeps the image it runs (on a first deploy there is no worker yet)
#   3. aws lambda get-function: the image (by digest) the Lambda consumer now runs
#   4. sam deploy   WorkerImageUri=<that image>: the worker runs the same code
#
# Settings, from the environment (or `make deploy NAME=value`):
#   WORKER_VPC_ID    the worker's VPC (vpc-...)              } needed on the first deploy; later
#   WORKER_SUBNETS   its subnets, subnet-a,subnet-b, no space } the stack's values are kept
#   AWS_REGION       or AWS_DEFAULT_REGION, or the AWS CLI's configured region
#   STACK_NAME       default galley (samconfig.toml's stack_name)
#   PARAMETERS       other template parameters: "AlarmEmail=ops@example.com WorkerMaxCapacity=8"
# Arguments go to both `sam deploy`s (e.g. --no-confirm-changeset in CI).
#
# Every deploy names the worker's parameters, so a parameter_overrides line saved in
# samconfig.toml (`sam deploy --guided` offers to) can never set WorkerImageUri back to empty,
# which would delete the worker. Parameters not named keep their previous values.
set -eu
set -f # PARAMETERS is split into words, never expanded as file names

SAM=${SAM:-sam}
AWS=${AWS:-aws}
STACK_NAME=${STACK_NAME:-galley}
PARAMETERS=${PARAMETERS:-}

fail() {
    echo "deploy: $*" >&2
    exit 1
}

command -v "$SAM" >/dev/null || fail "the SAM CLI ($SAM) is not installed: make tools"
command -v "$AWS" >/dev/null || fail "the AWS CLI ($AWS) is not installed"

region=${AWS_REGION:-${AWS_DEFAULT_REGION:-$("$AWS" configure get region 2>/dev/null || true)}}
[ -n "$region" ] || fail "no region: set AWS_REGION (or AWS_DEFAULT_REGION)"

# The deployed stack's value of a parameter or an output; nothing if there is no stack yet.
parameter() {
    "$AWS" cloudformation describe-stacks --region "$region" --stack-name "$STACK_NAME" \
        --query "Stacks[0].Parameters[?ParameterKey=='$1'].ParameterValue" --output text \
        2>/dev/null || true
}
output() {
    "$AWS" cloudformation describe-stacks --region "$region" --stack-name "$STACK_NAME" \
        --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text 2>/dev/null ||
        true
}

vpc=${WORKER_VPC_ID:-$(parameter WorkerVpcId)}
subnets=${WORKER_SUBNETS:-$(parameter WorkerSubnets)}
old_image=$(parameter WorkerImageUri)
first="stack $STACK_NAME has no Fargate worker yet: make deploy"
[ -n "$vpc" ] || fail "WORKER_VPC_ID is not set and $first WORKER_VPC_ID=vpc-... WORKER_SUBNETS=..."
[ -n "$subnets" ] || fail "WORKER_SUBNETS is not set and $first WORKER_SUBNETS=subnet-a,subnet-b"
case $subnets in
*" "*) fail "WORKER_SUBNETS must have no spaces: subnet-a,subnet-b (got '$subnets')" ;;
esac

worker="WorkerVpcId=$vpc WorkerSubnets=$subnets"
keep=""
[ -z "$old_image" ] || keep="WorkerImageUri=$old_image"

"$SAM" build
# $PARAMETERS, $worker and $keep are lists of Name=value words: split, unquoted.
# shellcheck disable=SC2086
"$SAM" deploy --stack-name "$STACK_NAME" --region "$region" \
    --parameter-overrides $PARAMETERS $worker $keep "$@"

consumer=$(output ConsumerFunctionArn)
[ -n "$consumer" ] || fail "stack $STACK_NAME has no output ConsumerFunctionArn: was it deployed?"
image=$("$AWS" lambda get-function --region "$region" --function-name "$consumer" \
    --query Code.ResolvedImageUri --output text)
if [ "$image" = "$old_image" ]; then
    echo "deploy: the Fargate worker already runs $image"
    exit 0
fi

# shellcheck disable=SC2086
"$SAM" deploy --stack-name "$STACK_NAME" --region "$region" \
    --parameter-overrides $PARAMETERS $worker "WorkerImageUri=$image" "$@"
echo "deploy: the Fargate worker runs $image, the Lambda functions' image"
