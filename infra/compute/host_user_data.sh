#!/bin/bash
# mlstack EC2 host bootstrap (Amazon Linux 2023): Docker, the compose plugin, the ECR credential helper,
# the CloudWatch agent, the model package, and a systemd unit that runs the repository's compose file.
# The Auto Scaling group holds this host in Pending:Wait (a launch lifecycle hook) until the last step below
# has seen the service ready, so an instance refresh never takes the old host away before this one serves.
# Rendered by infra/compute/ec2_host.py, which fills in the double-at placeholders; every $ is bash's.
set -euo pipefail

readonly HOOK_NAME='@@{lifecycle_hook_name}'
readonly REGION='@@{region}'
readonly SERVICE_PORT='@@{host_port}'

# retry ATTEMPTS COMMAND...: run COMMAND until it succeeds, doubling the pause (2 s, 4 s, ...) between tries.
retry() {
  local attempts=$1 pause=2 try=1
  shift
  until "$@"; do
    if ((try >= attempts)); then
      echo "mlstack-boot: giving up after $try tries: $*" >&2
      return 1
    fi
    echo "mlstack-boot: try $try failed, again in $pause s: $*" >&2
    sleep "$pause"
    pause=$((pause * 2))
    try=$((try + 1))
  done
}

# download_verified URL SHA256 TARGET: TARGET only ever holds a file whose sha256 is SHA256.
download_verified() {
  local url=$1 sha256=$2 target=$3
  curl -fsSL --connect-timeout 10 --max-time 300 -o "$target.download" "$url" || return 1
  if ! echo "$sha256  $target.download" | sha256sum --check --status -; then
    echo "mlstack-boot: sha256 of $url is not $sha256" >&2
    rm -f "$target.download"
    return 1
  fi
  mv "$target.download" "$target"
}

# The package must be complete: a prefix with nothing in it copies nothing and "succeeds".
download_model() {
  aws s3 cp --recursive --only-show-errors --region "$REGION" '@@{model_uri}' /opt/mlstack/model/ \
    && test -s /opt/mlstack/model/metadata.json && test -s /opt/mlstack/model/model.onnx
}

instance_id() {
  local token
  token=$(curl -fsS -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' http://169.254.169.254/latest/api/token)
  curl -fsS -H "X-aws-ec2-metadata-token: $token" http://169.254.169.254/latest/meta-data/instance-id
}

# complete_launch CONTINUE|ABANDON: tell this host's Auto Scaling group whether the host may take traffic.
complete_launch() {
  local id group
  id=$(instance_id)
  group=$(aws autoscaling describe-auto-scaling-instances --region "$REGION" --instance-ids "$id" \
    --query 'AutoScalingInstances[0].AutoScalingGroupName' --output text)
  retry 5 aws autoscaling complete-lifecycle-action --region "$REGION" --auto-scaling-group-name "$group" \
    --lifecycle-hook-name "$HOOK_NAME" --instance-id "$id" --lifecycle-action-result "$1"
}

# keep_launch_waiting: a heartbeat to the launch hook, so a host still waiting for its image is not abandoned.
keep_launch_waiting() {
  local id group
  id=$(instance_id)
  group=$(aws autoscaling describe-auto-scaling-instances --region "$REGION" --instance-ids "$id" \
    --query 'AutoScalingInstances[0].AutoScalingGroupName' --output text)
  retry 5 aws autoscaling record-lifecycle-action-heartbeat --region "$REGION" --auto-scaling-group-name "$group" \
    --lifecycle-hook-name "$HOOK_NAME" --instance-id "$id"
}

service_ready() {
  curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$SERVICE_PORT/v2/health/ready"
}

# Any failure above the last step abandons the launch at once instead of waiting out the hook's heartbeat.
trap 'complete_launch ABANDON || true' ERR

retry 5 dnf install -y docker amazon-ecr-credential-helper amazon-cloudwatch-agent awscli-2

mkdir -p /usr/local/lib/docker/cli-plugins
retry 5 download_verified \
  "https://github.com/docker/compose/releases/download/@@{compose_version}/docker-compose-linux-x86_64" \
  '@@{compose_sha256}' /usr/local/lib/docker/cli-plugins/docker-compose
chmod 0755 /usr/local/lib/docker/cli-plugins/docker-compose
mkdir -p /root/.docker
echo '{"credHelpers": {"@@{registry_host}": "ecr-login"}}' > /root/.docker/config.json
systemctl enable --now docker

cat > /opt/amazon-cloudwatch-agent.json <<'JSON'
@@{cloudwatch_agent_config}
JSON
/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s \
  -c file:/opt/amazon-cloudwatch-agent.json

mkdir -p /opt/mlstack/model
# The host reads the model package with its own role; no container needs, or can reach, the instance role.
retry 5 download_model

cat > /opt/mlstack/compose.yaml <<'YAML'
@@{compose_file}
YAML
@@{monitoring_files}
# The prediction log and labels (host_label_join.py): a folder of the service's, and the id key, before compose.
@@{label_setup}

cat > /opt/mlstack/.env <<'ENV'
@@{label_env}
@@{drift_env}
MLSTACK_IMAGE=@@{image}
MLSTACK_PROMETHEUS_IMAGE=@@{prometheus_image}
MLSTACK_GRAFANA_IMAGE=@@{grafana_image}
MLSTACK_MODEL_DIR=/opt/mlstack/model
MLSTACK_HOST_PORT=@@{host_port}
MLSTACK_GRPC_HOST_PORT=@@{grpc_host_port}
AWS_REGION=@@{region}
ENV

cat > /etc/systemd/system/mlstack.service <<'UNIT'
[Unit]
Description=mlstack model service (docker compose)
After=docker.service network-online.target
Requires=docker.service

[Service]
WorkingDirectory=/opt/mlstack
ExecStart=/usr/bin/docker compose --env-file /opt/mlstack/.env up --no-build --remove-orphans
ExecStop=/usr/bin/docker compose --env-file /opt/mlstack/.env down
Restart=always
RestartSec=5
TimeoutStopSec=60

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now mlstack.service

# The label join's timer (host_label_join.py).
@@{label_join}

# Up to 45 minutes, 5 s apart, with a heartbeat to the launch hook every 5 minutes: on a stack's first deploy the
# pipeline pushes this commit's image only after `pulumi up` has created the registry (and this host), so the host
# may wait for its image before the pull and the model's warm-up. systemd retries compose until the image is there.
retry_ready=0
until service_ready; do
  retry_ready=$((retry_ready + 1))
  if ((retry_ready >= 540)); then
    echo "mlstack-boot: the service did not turn ready on port $SERVICE_PORT" >&2
    false
  fi
  if ((retry_ready % 60 == 0)); then
    keep_launch_waiting
  fi
  sleep 5
done
trap - ERR
complete_launch CONTINUE
