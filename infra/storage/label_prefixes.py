"""Where the prediction log, the labels and the label join's output live in the model bucket, and who may touch them.

`monitoring.predictionLog` names three prefixes of the model bucket (validated disjoint from each other, from the
model prefix and from the batch prefixes, so each grant below covers one of them only):
- `prefix`: the serving pods write sampled predictions (service/mlstack_service/prediction_log.py); the label join
  reads them. Expired after `retentionDays`.
- `feedbackPrefix`: the serving pods write one label per prediction id (feedback_store.py, write-once); the label
  join reads them. Expired after `feedbackRetentionDays`.
- `labelledPrefix`: the label join writes the labelled dataset and the realized-performance summary; the serving pods
  read the summary object only; retrain.yml (the retrain role) reads the dataset.
Nobody but the publish role writes under the model prefix (model_bucket.py's bucket policy) and the serving role
can't read the logged features back: a compromised pod can add log lines but not read what other pods logged.
"""

from typing import Any

import pulumi
import pulumi_aws as aws

from infra.config.models import PredictionLogConfig

SUMMARY_FILE = "summary.json"
DATASET_FOLDER = "dataset/"


def summary_key(config: PredictionLogConfig, model_name: str) -> str:
    """The label join's summary of realized performance (service/mlstack_service/label_join.py)."""
    return f"{config.labelled_prefix}{model_name}/{SUMMARY_FILE}"


def dataset_prefix(config: PredictionLogConfig, model_name: str) -> str:
    """What retrain.yml trains the next version on."""
    return f"{config.labelled_prefix}{model_name}/{DATASET_FOLDER}"


def lifecycle_rules(config: PredictionLogConfig) -> list[aws.s3.BucketLifecycleConfigurationRuleArgs]:
    """Expire the prediction log and the labels after their retentions (S3 then keeps the expired versions for the
    bucket's noncurrent-version expiry, and never less than its Object Lock retention)."""
    return [
        aws.s3.BucketLifecycleConfigurationRuleArgs(
            id=rule_id,
            status="Enabled",
            filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=prefix),
            expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=days),
        )
        for rule_id, prefix, days in (
            ("expire-prediction-log", config.prefix, config.retention_days),
            ("expire-feedback", config.feedback_prefix, config.feedback_retention_days),
        )
    ]


def serving_statements(
    bucket_arn: pulumi.Output[str], models_key_arn: pulumi.Output[str], config: PredictionLogConfig, model_name: str
) -> list[dict[str, Any]]:
    """The serving pods: write (never read) the log and the labels; read the join's summary object."""
    return [
        {
            "Effect": "Allow",
            "Action": ["s3:PutObject"],
            "Resource": [
                pulumi.Output.concat(bucket_arn, "/", config.prefix, "*"),
                pulumi.Output.concat(bucket_arn, "/", config.feedback_prefix, "*"),
            ],
        },
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": pulumi.Output.concat(bucket_arn, "/", summary_key(config, model_name)),
        },
        # Writes under the bucket's default key need a data key; reading the summary needs Decrypt.
        {"Effect": "Allow", "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": models_key_arn},
    ]


def label_join_statements(
    bucket_arn: pulumi.Output[str], models_key_arn: pulumi.Output[str], config: PredictionLogConfig
) -> list[dict[str, Any]]:
    """The label join: read the log and the labels, write under the labelled prefix; nothing else in the bucket."""
    return [
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [
                pulumi.Output.concat(bucket_arn, "/", config.prefix, "*"),
                pulumi.Output.concat(bucket_arn, "/", config.feedback_prefix, "*"),
            ],
        },
        {
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
            "Resource": pulumi.Output.concat(bucket_arn, "/", config.labelled_prefix, "*"),
        },
        {
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": bucket_arn,
            "Condition": {"StringLike": {"s3:prefix": [f"{config.prefix}*", f"{config.feedback_prefix}*"]}},
        },
        {"Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": models_key_arn},
    ]


def service_env(bucket_name: str, config: PredictionLogConfig, model_name: str) -> list[dict[str, str]]:
    """The service's MLSTACK_* settings for the log, the shared labels and the join's summary (empty when off)."""
    if not config.enabled:
        return []
    root = f"s3://{bucket_name}/"
    return [
        {"name": "MLSTACK_PREDICTION_LOG_URI", "value": f"{root}{config.prefix}"},
        {"name": "MLSTACK_PREDICTION_LOG_SAMPLE_RATE", "value": str(config.sample_rate)},
        {"name": "MLSTACK_PREDICTION_LOG_FEATURES", "value": str(config.log_features).lower()},
        {"name": "MLSTACK_PREDICTION_LOG_BATCH_ROWS", "value": str(config.batch_rows)},
        {"name": "MLSTACK_PREDICTION_LOG_FLUSH_SECONDS", "value": str(config.flush_seconds)},
        {"name": "MLSTACK_PREDICTION_LOG_MAX_ROWS_PER_SECOND", "value": str(config.max_rows_per_second)},
        {"name": "MLSTACK_PREDICTION_LOG_MAX_BUFFERED_ROWS", "value": str(config.max_buffered_rows)},
        {"name": "MLSTACK_FEEDBACK_URI", "value": f"{root}{config.feedback_prefix}"},
        {"name": "MLSTACK_REALIZED_SUMMARY_URI", "value": f"{root}{summary_key(config, model_name)}"},
    ]
