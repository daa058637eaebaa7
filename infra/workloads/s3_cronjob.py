"""The CronJob spec of a job that only talks to S3 under a Pod Identity service account of its own.

Batch scoring (batch_cronjob.py) and the label join (label_join_cronjob.py) run the service image this way: one
container, no API token, the CPU pool, the restricted security contexts, a scratch `/tmp`, and no overlapping runs.
"""

from typing import Any

from infra.compute.node_pools import POOL_LABEL
from infra.workloads.pod_template import container_security_context, pod_security_context


def s3_cronjob_spec(
    *,
    schedule: str,
    labels: dict[str, str],
    service_account: str,
    container: dict[str, Any],
    active_deadline_seconds: int,
) -> dict[str, Any]:
    """`container` holds what differs between jobs (name, image, command, args, env, resources)."""
    return {
        "schedule": schedule,
        "concurrencyPolicy": "Forbid",
        "startingDeadlineSeconds": 3600,
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 3,
        "jobTemplate": {
            "spec": {
                "backoffLimit": 2,
                "activeDeadlineSeconds": active_deadline_seconds,
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": service_account,
                        # The job calls S3 only; Pod Identity brings its own projected token.
                        "automountServiceAccountToken": False,
                        "restartPolicy": "Never",
                        "nodeSelector": {POOL_LABEL: "cpu"},
                        "securityContext": pod_security_context(),
                        "containers": [
                            {
                                **container,
                                "securityContext": container_security_context(),
                                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                            }
                        ],
                        # TMPDIR: the model cache, a dataset before its upload.
                        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "4Gi"}}],
                    },
                },
            }
        },
    }
