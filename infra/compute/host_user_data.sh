#!/bin/bash
# mlstack EC2 host bootstrap (Amazon Linux 2023): Docker, the compose plugin, the ECR credential helper,
# the CloudWatch agent, and a systemd unit that runs the repository's compose file and restarts on reboot.
set -euo pipefail

dnf install -y docker amazon-ecr-credential-helper amazon-cloudwatch-agent
mkdir -p /usr/local/lib/docker/cli-plugins
curl -fsSL -o /usr/local/lib/docker/cli-plugins/docker-compose \
  "https://github.com/docker/compose/releases/download/${compose_version}/docker-compose-linux-x86_64"
chmod 0755 /usr/local/lib/docker/cli-plugins/docker-compose
mkdir -p /root/.docker
echo '{"credHelpers": {"${registry_host}": "ecr-login"}}' > /root/.docker/config.json
systemctl enable --now docker

cat > /opt/amazon-cloudwatch-agent.json <<'JSON'
${cloudwatch_agent_config}
JSON
/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s \
  -c file:/opt/amazon-cloudwatch-agent.json

mkdir -p /opt/mlstack
cat > /opt/mlstack/compose.yaml <<'YAML'
${compose_file}
YAML
${monitoring_files}
cat > /opt/mlstack/.env <<'ENV'
MLSTACK_IMAGE=${image}
MLSTACK_PROMETHEUS_IMAGE=${prometheus_image}
MLSTACK_GRAFANA_IMAGE=${grafana_image}
MLSTACK_MODEL_URI=${model_uri}
AWS_REGION=${region}
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
