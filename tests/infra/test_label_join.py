"""The prediction log and the label join in the recorded graph: the CronJob and its own role, the serving pods' env
and write-only access, the shared prediction-id key, and lifecycle rules that follow `monitoring.predictionLog`."""

import base64
import gzip
import json
import subprocess
from typing import Any

import pytest
import yaml

from infra.config import StackConfigError, parse_stack_config
from infra.preview.engine import StackRun
from tests.conftest import REPO_ROOT, RunStack, stack_config
from tests.infra.test_workloads import container, env_of, manifests, one, rollout

ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ASSOCIATION = "aws:eks/podIdentityAssociation:PodIdentityAssociation"
LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
JOIN_ACCOUNT = "model-service-label-join"
EKS_STACKS = ("staging", "prod")


def _statements(run: StackRun, service_account: str) -> list[dict[str, Any]]:
    (association,) = [a for a in run.of_type(ASSOCIATION) if a.inputs["serviceAccount"] == service_account]
    (role,) = [r for r in run.of_type(ROLE) if r.outputs.get("arn") == association.inputs["roleArn"]]
    policies = [p for p in run.of_type(ROLE_POLICY) if p.inputs["role"] == role.id]
    return [statement for policy in policies for statement in json.loads(policy.inputs["policy"])["Statement"]]


def _grants(statements: list[dict[str, Any]], action: str) -> list[str]:
    """The resources (after the bucket ARN) an action is allowed on."""
    found = []
    for statement in statements:
        if action in statement["Action"]:
            resources = statement["Resource"]
            for resource in [resources] if isinstance(resources, str) else resources:
                found.append(resource.split(":::", 1)[-1].partition("/")[2] or "(bucket)")
    return sorted(found)


def _bucket_lifecycle(run: StackRun) -> dict[str, dict[str, Any]]:
    (lifecycle,) = [r for r in run.of_type(LIFECYCLE) if r.name == "models-lifecycle"]
    return {rule["id"]: rule for rule in lifecycle.inputs["rules"]}


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_the_label_join_runs_on_schedule_under_its_own_role(committed_runs: dict[str, StackRun], stack: str) -> None:
    run = committed_runs[stack]
    cron = one(run, "CronJob", JOIN_ACCOUNT)
    log = parse_stack_config(stack, stack_config(stack)).config.monitoring.prediction_log
    assert cron["spec"]["schedule"] == log.join_schedule
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == JOIN_ACCOUNT
    assert pod["automountServiceAccountToken"] is False
    join = pod["containers"][0]
    assert join["command"] == ["python", "-m", "mlstack_service.label_join"]
    args = dict(zip(join["args"][::2], join["args"][1::2], strict=True))
    bucket = env_of(rollout(run))["MLSTACK_MODEL_URI"].split("/")[2]
    assert args == {
        "--model-name": "loan-approval",
        "--predictions": f"s3://{bucket}/{log.prefix}",
        "--feedback": f"s3://{bucket}/{log.feedback_prefix}",
        "--output": f"s3://{bucket}/{log.labelled_prefix}",
    }
    assert join["image"].rsplit(":", 1)[1] == container(rollout(run))["image"].rsplit(":", 1)[1]
    statements = _statements(run, JOIN_ACCOUNT)
    assert _grants(statements, "s3:PutObject") == ["labelled/*"]
    assert _grants(statements, "s3:GetObject") == ["feedback/*", "predictions/*"]
    (listing,) = [s for s in statements if "s3:ListBucket" in s["Action"]]
    assert listing["Condition"]["StringLike"]["s3:prefix"] == ["predictions/*", "feedback/*"]


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_serving_pods_write_the_log_and_labels_but_cannot_read_them_back(
    committed_runs: dict[str, StackRun], stack: str
) -> None:
    run = committed_runs[stack]
    statements = _statements(run, "model-service")
    assert _grants(statements, "s3:PutObject") == ["feedback/*", "predictions/*"]
    assert _grants(statements, "s3:GetObject") == ["labelled/loan-approval/summary.json", "models/*"]
    env = env_of(rollout(run))
    bucket = env["MLSTACK_MODEL_URI"].split("/")[2]
    log = parse_stack_config(stack, stack_config(stack)).config.monitoring.prediction_log
    assert env["MLSTACK_PREDICTION_LOG_URI"] == f"s3://{bucket}/predictions/"
    assert env["MLSTACK_FEEDBACK_URI"] == f"s3://{bucket}/feedback/"
    assert env["MLSTACK_REALIZED_SUMMARY_URI"] == f"s3://{bucket}/labelled/loan-approval/summary.json"
    assert float(env["MLSTACK_PREDICTION_LOG_SAMPLE_RATE"]) == log.sample_rate
    assert env["MLSTACK_PREDICTION_LOG_FEATURES"] == str(log.log_features).lower()


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_every_replica_mounts_the_same_prediction_id_key(committed_runs: dict[str, StackRun], stack: str) -> None:
    run = committed_runs[stack]
    workload = rollout(run)
    key_file = env_of(workload)["MLSTACK_PREDICTION_ID_KEY_FILE"]
    directory, _, name = key_file.rpartition("/")
    (mount,) = [m for m in container(workload)["volumeMounts"] if m["mountPath"] == directory]
    assert mount["readOnly"] is True
    (volume,) = [v for v in workload["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    secret = one(run, "Secret", volume["secret"]["secretName"])
    assert list(secret["stringData"]) == [name]
    (password,) = [r for r in run.of_type("random:index/randomPassword:RandomPassword") if "prediction-id" in r.name]
    assert password.inputs["length"] >= 32


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_the_log_and_the_labels_expire_after_the_configured_retentions(
    committed_runs: dict[str, StackRun], stack: str
) -> None:
    rules = _bucket_lifecycle(committed_runs[stack])
    log = parse_stack_config(stack, stack_config(stack)).config.monitoring.prediction_log
    assert rules["expire-prediction-log"]["filter"]["prefix"] == log.prefix
    assert rules["expire-prediction-log"]["expiration"]["days"] == log.retention_days
    assert rules["expire-feedback"]["filter"]["prefix"] == log.feedback_prefix
    assert rules["expire-feedback"]["expiration"]["days"] == log.feedback_retention_days


def test_the_stack_config_moves_prefixes_retentions_and_the_schedule(run_stack: RunStack) -> None:
    config = stack_config("staging")
    config.setdefault("mlstack:monitoring", {})["predictionLog"] = {
        "prefix": "logs/predictions/",
        "feedbackPrefix": "logs/labels/",
        "labelledPrefix": "training/",
        "retentionDays": 30,
        "feedbackRetentionDays": 400,
        "joinSchedule": "0 */6 * * *",
        "sampleRate": 1,
        "logFeatures": False,
    }
    run = run_stack("staging", config)
    rules = _bucket_lifecycle(run)
    assert (rules["expire-prediction-log"]["filter"]["prefix"], rules["expire-prediction-log"]["expiration"]) == (
        "logs/predictions/",
        {"days": 30},
    )
    assert rules["expire-feedback"]["expiration"] == {"days": 400}
    assert one(run, "CronJob", JOIN_ACCOUNT)["spec"]["schedule"] == "0 */6 * * *"
    assert _grants(_statements(run, "model-service"), "s3:PutObject") == ["logs/labels/*", "logs/predictions/*"]
    assert _grants(_statements(run, JOIN_ACCOUNT), "s3:PutObject") == ["training/*"]
    env = env_of(rollout(run))
    assert env["MLSTACK_PREDICTION_LOG_FEATURES"] == "false"
    assert env["MLSTACK_REALIZED_SUMMARY_URI"].endswith("/training/loan-approval/summary.json")


def test_switched_off_there_is_no_join_no_log_and_no_write_access(run_stack: RunStack) -> None:
    config = stack_config("prod")
    config.setdefault("mlstack:monitoring", {})["predictionLog"] = {"enabled": False}
    run = run_stack("prod", config)
    assert not [m for m in manifests(run) if m["kind"] == "CronJob" and m["metadata"]["name"] == JOIN_ACCOUNT]
    assert "MLSTACK_PREDICTION_LOG_URI" not in env_of(rollout(run))
    assert _grants(_statements(run, "model-service"), "s3:PutObject") == []
    assert "expire-prediction-log" not in _bucket_lifecycle(run)


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ({"feedbackPrefix": "predictions/labels/"}, "predictionLog.feedbackPrefix: 'predictions/labels/' lies under"),
        ({"prefix": "models/log/"}, "predictionLog.prefix: 'models/log/' overlaps modelBucket.modelPrefix"),
        ({"sampleRate": 0}, "predictionLog.sampleRate: 0 is not allowed"),
        ({"retentionDays": 0}, "predictionLog.retentionDays: 0 is not allowed"),
    ],
)
def test_wrong_prediction_log_settings_are_refused_naming_the_key(block: dict[str, Any], expected: str) -> None:
    config = stack_config("prod")
    config.setdefault("mlstack:monitoring", {})["predictionLog"] = block
    with pytest.raises(StackConfigError) as caught:
        parse_stack_config("prod", config)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def _dev_user_data(run: StackRun) -> str:
    (template,) = run.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    return gzip.decompress(base64.b64decode(template.inputs["userData"])).decode()


def test_the_dev_host_logs_to_a_folder_and_joins_on_a_timer(committed_runs: dict[str, StackRun]) -> None:
    run = committed_runs["dev"]
    script = _dev_user_data(run)
    log = parse_stack_config("dev", stack_config("dev")).config.monitoring.prediction_log
    env_file = script[script.index("cat > /opt/mlstack/.env <<'ENV'") :].split("\nENV\n", 1)[0]
    env = dict(line.split("=", 1) for line in env_file.splitlines()[1:] if "=" in line)
    assert env["MLSTACK_PREDICTION_LOG_URI"] == f"file:///labels/{log.prefix}"
    assert env["MLSTACK_FEEDBACK_URI"] == f"file:///labels/{log.feedback_prefix}"
    assert env["MLSTACK_LABELS_DIR"] == "/opt/mlstack/labels"
    minute, hour = log.join_schedule.split()[:2]
    assert f"OnCalendar=*-*-* {int(hour):02d}:{int(minute):02d}:00 UTC" in script
    assert "systemctl enable --now mlstack-label-join.timer" in script
    assert "python -m mlstack_service.label_join --model-name loan-approval" in script
    # The join container has no network: no container on the host reaches the instance role (IMDS hop limit 1).
    assert "--network none" in script
    assert "--network host" not in script
    assert "--predictions file:///join/predictions/" in script
    assert subprocess.run(["bash", "-n", "-c", script], capture_output=True, check=False).returncode == 0
    compose = yaml.safe_load((REPO_ROOT / "compose.yaml").read_text())
    service = compose["services"]["model-service"]
    assert "${MLSTACK_LABELS_DIR:-mlstack-labels}:/labels" in service["volumes"]
    assert service["environment"]["MLSTACK_FEEDBACK_URI"] == "${MLSTACK_FEEDBACK_URI:-}"
    host_role_policy = [p for p in run.of_type(ROLE_POLICY) if "pull-and-read-models" in p.name]
    (policy,) = host_role_policy
    statements = json.loads(policy.inputs["policy"])["Statement"]
    assert _grants(statements, "s3:PutObject") == ["feedback/*", "labelled/*", "predictions/*"]


def test_the_dev_host_takes_daily_schedules_only() -> None:
    config = stack_config("dev")
    config.setdefault("mlstack:monitoring", {})["predictionLog"] = {"joinSchedule": "0 */6 * * *"}
    with pytest.raises(StackConfigError, match=r"predictionLog.joinSchedule: .*daily 'M H \* \* \*'"):
        parse_stack_config("dev", config)
