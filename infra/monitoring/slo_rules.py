"""The SLO thresholds as Prometheus series, rendered from the stack config, so the alert rules stay one file."""

from pathlib import Path

import yaml

from infra.config.models import SloConfig

MONITORING_DIR = Path(__file__).resolve().parents[2] / "monitoring"
RULES_DIR = MONITORING_DIR / "rules"
DASHBOARDS_DIR = MONITORING_DIR / "dashboards"
SLO_RULES_FILE = "slo.rules.yml"


def slo_rules(slo: SloConfig) -> str:
    """A rule group whose series the alerts compare against (`... > on () group_left () mlstack:slo_*`)."""
    document = {
        "groups": [
            {
                "name": "mlstack-slo",
                "rules": [
                    {"record": "mlstack:slo_latency_p99_seconds", "expr": f"vector({slo.latency_p99_seconds})"},
                    {"record": "mlstack:slo_error_ratio", "expr": f"vector({slo.error_ratio})"},
                ],
            }
        ]
    }
    header = "# SLO thresholds as series; generated from the stack config (this copy holds the defaults).\n"
    return header + yaml.safe_dump(document, sort_keys=False)


def rule_files(slo: SloConfig) -> dict[str, str]:
    """Every rule file a Prometheus loads: the repository's, with the stack's SLOs in place of the defaults."""
    files = {path.name: path.read_text() for path in sorted(RULES_DIR.glob("*.rules.yml"))}
    files[SLO_RULES_FILE] = slo_rules(slo)
    return files


def dashboards() -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(DASHBOARDS_DIR.glob("*.json"))}
