"""What every Ingress served by the AWS Load Balancer Controller shares in this stack."""

from typing import Any

PREFIX = "alb.ingress.kubernetes.io"


ACCESS_LOGS_PREFIX = "alb"


def alb_annotations(
    *,
    scheme: str,
    health_path: str,
    security_group_id: str,
    deletion_protection: bool,
    access_logs_bucket: str | None = None,
) -> dict[str, str]:
    """Pod-IP targets behind the stack's load-balancer security group, which admits only the allowed CIDRs on 80/443.

    The controller adds no backend rules of its own: the workload group already admits the load-balancer group.
    Malformed headers are dropped. In protected stacks the ALB cannot be deleted; elsewhere deletion protection is
    set off explicitly, because the controller changes only the attributes the annotation names (kubernetes-sigs/
    aws-load-balancer-controller pkg/deploy/elbv2/load_balancer_attributes_reconciler.go at 225f4456): dropping the
    attribute would leave a formerly protected ALB protected, and the Ingress's finalizer would then hang
    `pulumi destroy` (the controller cannot delete the ALB, so it never lets the Ingress go). Access logs likewise:
    on into `access_logs_bucket` when given, explicitly off otherwise (docs/guide/ingress/annotations.md at v3.5.0,
    load-balancer-attributes: `access_logs.s3.enabled`, `.bucket`, `.prefix`).
    """
    logs = (
        [
            "access_logs.s3.enabled=true",
            f"access_logs.s3.bucket={access_logs_bucket}",
            f"access_logs.s3.prefix={ACCESS_LOGS_PREFIX}",
        ]
        if access_logs_bucket
        else ["access_logs.s3.enabled=false"]
    )
    attributes = [
        "routing.http.drop_invalid_header_fields.enabled=true",
        f"deletion_protection.enabled={'true' if deletion_protection else 'false'}",
        *logs,
    ]
    return {
        f"{PREFIX}/load-balancer-attributes": ",".join(attributes),
        f"{PREFIX}/scheme": scheme,
        f"{PREFIX}/target-type": "ip",
        f"{PREFIX}/healthcheck-path": health_path,
        f"{PREFIX}/security-groups": security_group_id,
        f"{PREFIX}/manage-backend-security-group-rules": "false",
    }


def load_balancer_hostname(status: Any) -> str | None:
    """The ALB's DNS name, once the controller has published it in the Ingress status."""
    entries = status.load_balancer.ingress if status and status.load_balancer else None
    return entries[0].hostname if entries else None
