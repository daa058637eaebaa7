"""The rule files a Prometheus loads, rendered from the stack config: the SLO thresholds as series (so the alert rules
stay one file) and each alert's runbook link on the stack's base URL."""

import re
from pathlib import Path

import yaml

from infra.config.models import MonitoringConfig, SloConfig
from infra.monitoring.drift_rules import DRIFT_RULES_FILE, drift_rules

MONITORING_DIR = Path(__file__).resolve().parents[2] / "monitoring"
RULES_DIR = MONITORING_DIR / "rules"
DASHBOARDS_DIR = MONITORING_DIR / "dashboards"
RUNBOOKS_DIR = "docs/runbooks"
SLO_RULES_FILE = "slo.rules.yml"
# The repository's rule files link each alert to its runbook by the path from the repository root; a stack renders
# them onto its base URL.
_RELATIVE_RUNBOOK_URL = re.compile(r'(runbook_url: "?)(' + re.escape(RUNBOOKS_DIR) + r'/[A-Za-z0-9]+\.md"?)')


def runbook_base_url(monitoring: MonitoringConfig) -> str | None:
    """`monitoring.runbookBaseUrl` when set; else the GitHub repository the retrain relay already dispatches to, at
    `HEAD` (GitHub resolves it to the default branch, so no branch name is guessed); else None: the links stay paths
    from the repository root, which Alertmanager shows as they are."""
    if monitoring.runbook_base_url:
        return monitoring.runbook_base_url
    if monitoring.retrain.repository:
        return f"https://github.com/{monitoring.retrain.repository}/blob/HEAD"
    return None


def runbook_path(alert: str) -> str:
    """The runbook of an alert, from the repository root."""
    return f"{RUNBOOKS_DIR}/{alert}.md"


def with_runbook_base(text: str, base_url: str | None) -> str:
    """A rule file with each relative runbook link put on `base_url` (unchanged when there is none)."""
    if base_url is None:
        return text
    return _RELATIVE_RUNBOOK_URL.sub(lambda match: f"{match.group(1)}{base_url}/{match.group(2)}", text)


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


def rule_files(monitoring: MonitoringConfig) -> dict[str, str]:
    """Every rule file a Prometheus loads: the repository's, with the stack's SLOs and drift settings in place of the
    defaults and its runbook links on the stack's base URL."""
    base_url = runbook_base_url(monitoring)
    files = {path.name: with_runbook_base(path.read_text(), base_url) for path in sorted(RULES_DIR.glob("*.rules.yml"))}
    files[SLO_RULES_FILE] = slo_rules(monitoring.slo)
    files[DRIFT_RULES_FILE] = with_runbook_base(drift_rules(monitoring.drift), base_url)
    return files


def dashboards() -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(DASHBOARDS_DIR.glob("*.json"))}
