"""The dev host's prediction log, labels and label join (compute.mode ec2): a host folder and a systemd timer.

No container on the host reaches the instance role (IMDS hop limit 1, ec2_host.py), so the service writes its log
and labels into /opt/mlstack/labels (file:// URIs, service/mlstack_service/local_objects.py). On
`monitoring.predictionLog.joinSchedule` a systemd timer copies them to the model bucket with the host's role, runs
the label join from the service image in the host's network namespace (where the role's credentials are reachable:
no bridge hop), and brings the summary back for the service's /metrics. Log files the bucket holds are removed from
the host after a day; labels stay for `feedbackRetentionDays`, since their files are what keeps the first label.
"""

from infra.config.models import DAILY_SCHEDULE, PredictionLogConfig
from infra.storage.label_prefixes import summary_key

HOST_FOLDER = "/opt/mlstack/labels"
CONTAINER_FOLDER = "/labels"  # compose.yaml mounts HOST_FOLDER here
SERVICE_USER = 10001  # infra/workloads/pod_template.py RUN_AS: the image's user


def on_calendar(schedule: str) -> str:
    """systemd's OnCalendar for a daily cron schedule `M H * * *` (the config refuses others in ec2 mode)."""
    match = DAILY_SCHEDULE.match(" ".join(schedule.split()))
    if match is None:
        raise ValueError(f"{schedule!r} is not a daily 'M H * * *' schedule")
    return f"*-*-* {int(match[2]):02d}:{int(match[1]):02d}:00 UTC"


def compose_env(config: PredictionLogConfig, model_name: str) -> str:
    """The .env lines compose.yaml passes to the service: its stores are the host folder."""
    if not config.enabled:
        return ""
    root = f"file://{CONTAINER_FOLDER}/"
    return "\n".join(
        [
            f"MLSTACK_LABELS_DIR={HOST_FOLDER}",
            f"MLSTACK_PREDICTION_LOG_URI={root}{config.prefix}",
            f"MLSTACK_PREDICTION_LOG_SAMPLE_RATE={config.sample_rate}",
            f"MLSTACK_PREDICTION_LOG_FEATURES={str(config.log_features).lower()}",
            f"MLSTACK_FEEDBACK_URI={root}{config.feedback_prefix}",
            f"MLSTACK_REALIZED_SUMMARY_URI={root}{summary_key(config, model_name)}",
            f"MLSTACK_PREDICTION_ID_KEY_FILE={CONTAINER_FOLDER}/prediction-id-key",
        ]
    )


def setup_script(config: PredictionLogConfig) -> str:
    """Before compose starts: the folder, owned by the service's user, and the id key, drawn once per host."""
    if not config.enabled:
        return ""
    folders = " ".join(f"{HOST_FOLDER}/{prefix}" for prefix in (config.prefix, config.feedback_prefix))
    return f"""mkdir -p {folders}
if [ ! -s {HOST_FOLDER}/prediction-id-key ]; then
  head -c 48 /dev/urandom | base64 -w0 > {HOST_FOLDER}/prediction-id-key
fi
chown -R {SERVICE_USER}:{SERVICE_USER} {HOST_FOLDER}
chmod 0700 {HOST_FOLDER}
chmod 0400 {HOST_FOLDER}/prediction-id-key"""


def timer_script(config: PredictionLogConfig, *, bucket: str, image: str, region: str, model_name: str) -> str:
    """The join script and its systemd service and timer."""
    if not config.enabled:
        return ""
    s3 = f"s3://{bucket}/"
    summary = summary_key(config, model_name)
    return f"""cat > /opt/mlstack/label-join.sh <<'SCRIPT'
#!/bin/bash
# Copy the host's prediction log and labels to the model bucket; copy the bucket's (this model's log within its
# retention, every label) into a folder; join there in a container with no network, so no container on the host
# reaches the instance role (IMDS hop limit 1); copy the dataset and summary back to the bucket.
set -euo pipefail
aws s3 sync --only-show-errors --region {region} {HOST_FOLDER}/{config.prefix} {s3}{config.prefix}
aws s3 sync --only-show-errors --region {region} {HOST_FOLDER}/{config.feedback_prefix} {s3}{config.feedback_prefix}
work=$(mktemp -d /var/tmp/mlstack-label-join.XXXXXX)
trap 'rm -rf "$work"' EXIT
aws s3 sync --only-show-errors --region {region} {s3}{config.prefix}{model_name}/ "$work/{config.prefix}{model_name}/"
aws s3 sync --only-show-errors --region {region} {s3}{config.feedback_prefix} "$work/{config.feedback_prefix}"
chown -R {SERVICE_USER}:{SERVICE_USER} "$work"
docker run --rm --network none --read-only --tmpfs /tmp -v "$work:/join" '{image}' \\
  python -m mlstack_service.label_join --model-name {model_name} --predictions file:///join/{config.prefix} \\
  --feedback file:///join/{config.feedback_prefix} --output file:///join/{config.labelled_prefix}
aws s3 sync --only-show-errors --region {region} "$work/{config.labelled_prefix}" {s3}{config.labelled_prefix}
mkdir -p {HOST_FOLDER}/{summary.rsplit("/", 1)[0]}
cp "$work/{summary}" {HOST_FOLDER}/{summary}
chown -R {SERVICE_USER}:{SERVICE_USER} {HOST_FOLDER}
find {HOST_FOLDER}/{config.prefix} -type f -mmin +1440 -delete
find {HOST_FOLDER}/{config.feedback_prefix} -type f -mtime +{config.feedback_retention_days} -delete
SCRIPT
chmod 0755 /opt/mlstack/label-join.sh
cat > /etc/systemd/system/mlstack-label-join.service <<'UNIT'
[Unit]
Description=mlstack label join (prediction log and labels to S3, then mlstack_service.label_join)
After=docker.service network-online.target
Requires=docker.service

[Service]
Type=oneshot
ExecStart=/opt/mlstack/label-join.sh
UNIT
cat > /etc/systemd/system/mlstack-label-join.timer <<'UNIT'
[Unit]
Description=mlstack label join, on monitoring.predictionLog.joinSchedule

[Timer]
OnCalendar={on_calendar(config.join_schedule)}
Persistent=true

[Install]
WantedBy=timers.target
UNIT
systemctl daemon-reload
systemctl enable --now mlstack-label-join.timer"""
