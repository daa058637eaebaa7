"""Every alert a stack deploys links to a runbook page that exists, on the stack's base URL, and the page says what
the alert means, how to confirm it and what to do."""

import base64
import gzip
import re
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from infra.config import StackConfigError
from infra.preview.engine import StackRun
from tests.conftest import COMMITTED_STACKS, REPO_ROOT, RunStack, stack_config

RULE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
RUNBOOKS = REPO_ROOT / "docs" / "runbooks"
SECTIONS = ("## What it means", "## Confirm", "## What to do")
# The commands a do-step may name: the project's CLI (release, model-version, verify) or the preview.
COMMAND = re.compile(r"`(mlstack (release (status|promote|abort)|model-version|verify) [^`]*|make preview[^`]*)`")
HOST_FILE = re.compile(r"cat > /opt/mlstack/monitoring/rules/(\S+) <<'MLSTACK_FILE'\n(.*?)\nMLSTACK_FILE", re.DOTALL)


def _alerts(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        rule["alert"]: rule
        for document in documents
        for group in document["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def deployed_alerts(run: StackRun) -> dict[str, dict[str, Any]]:
    """The alert rules as the stack deploys them: PrometheusRules on EKS, the files the dev host's user data writes."""
    rules = [r.inputs["spec"] for r in run.of_type(RULE)]
    if not rules:
        (template,) = run.of_type(LAUNCH_TEMPLATE)
        script = gzip.decompress(base64.b64decode(template.inputs["userData"])).decode()
        rules = [yaml.safe_load(text) for _, text in HOST_FILE.findall(script)]
    alerts = _alerts(rules)
    assert alerts, f"{run.stack} deploys no alert"
    return alerts


def repository_alerts() -> set[str]:
    files = sorted((REPO_ROOT / "monitoring" / "rules").glob("*.rules.yml"))
    return set(_alerts([yaml.safe_load(path.read_text()) for path in files]))


def runbook_file(url: str, base_url: str | None) -> str:
    """The repository path a link names: the part after the stack's base URL, or the link itself when relative."""
    if base_url is None:
        assert not urlsplit(url).scheme, f"{url} is absolute, but the stack sets no base URL"
        return url
    assert url.startswith(f"{base_url}/"), f"{url} is not on the stack's base URL {base_url}"
    return url.removeprefix(f"{base_url}/")


def _assert_links_resolve(alerts: dict[str, dict[str, Any]], base_url: str | None) -> None:
    for name, rule in alerts.items():
        path = runbook_file(rule["annotations"]["runbook_url"], base_url)
        assert path == f"docs/runbooks/{name}.md", f"{name} links to {path}"
        assert (REPO_ROOT / path).is_file(), f"{name}'s runbook {path} is missing"


@pytest.mark.parametrize("stack", COMMITTED_STACKS)
def test_every_deployed_alert_links_to_its_runbook(committed_runs: dict[str, StackRun], stack: str) -> None:
    alerts = deployed_alerts(committed_runs[stack])
    assert set(alerts) == repository_alerts()
    # No committed stack file names the repository's address (it is the adopter's): the links stay paths.
    _assert_links_resolve(alerts, None)


def test_a_stacks_base_url_prefixes_every_link(run_stack: RunStack) -> None:
    config = stack_config("prod")
    base = "https://git.example.com/platform/mlstack/-/blob/main"
    config["mlstack:monitoring"] = {"runbookBaseUrl": base}
    alerts = deployed_alerts(run_stack("prod", config))
    assert set(alerts) == repository_alerts()
    _assert_links_resolve(alerts, base)


def test_the_retrain_repository_gives_the_base_url_when_none_is_set(run_stack: RunStack) -> None:
    config = stack_config("staging")
    config["mlstack:monitoring"] = {"retrain": {"repository": "acme/models"}}
    config["mlstack:retrainGithubToken"] = "ghp_not-a-real-token-0123456789"
    alerts = deployed_alerts(run_stack("staging", config, ["mlstack:retrainGithubToken"]))
    _assert_links_resolve(alerts, "https://github.com/acme/models/blob/HEAD")


def test_the_dev_hosts_links_follow_the_base_url_too(run_stack: RunStack) -> None:
    config = stack_config("dev")
    base = "https://github.com/platform/mlstack/blob/main"
    config["mlstack:monitoring"] = {"runbookBaseUrl": base}
    _assert_links_resolve(deployed_alerts(run_stack("dev", config)), base)


@pytest.mark.parametrize("base", ["https://github.com/platform/mlstack/blob/main/", "github.com/a/b", "https://x y"])
def test_a_base_url_with_a_trailing_slash_or_no_https_is_refused(run_stack: RunStack, base: str) -> None:
    config = stack_config("dev")
    config["mlstack:monitoring"] = {"runbookBaseUrl": base}
    with pytest.raises(StackConfigError, match="runbookBaseUrl"):
        run_stack("dev", config)


def test_every_runbook_belongs_to_an_alert() -> None:
    pages = {path.stem for path in RUNBOOKS.glob("*.md") if path.name != "README.md"}
    assert pages == repository_alerts()


@pytest.mark.parametrize("alert", sorted(repository_alerts()))
def test_each_runbook_says_what_it_means_how_to_confirm_and_what_to_do(alert: str) -> None:
    text = (RUNBOOKS / f"{alert}.md").read_text()
    assert text.startswith(f"# {alert}\n")
    positions = [text.find(section) for section in SECTIONS]
    assert -1 not in positions, f"{alert}: sections {SECTIONS}"
    assert positions == sorted(positions), f"{alert}: sections in the order {SECTIONS}"
    meaning, confirm, do = (text[start:end] for start, end in zip(positions, [*positions[1:], len(text)], strict=True))
    assert len(meaning.splitlines()) > 2, f"{alert}: say what it means"
    # Confirm names a Grafana panel or the PromQL of a metric the alert reads.
    rule = _alerts([yaml.safe_load(p.read_text()) for p in (REPO_ROOT / "monitoring" / "rules").glob("*.rules.yml")])[
        alert
    ]
    metrics = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*(?=\{|\s|\)|\[)", rule["expr"])) - {"by", "on", "and", "max"}
    assert any(metric in confirm for metric in metrics), f"{alert}: confirm with the PromQL of {sorted(metrics)}"
    assert "panel" in confirm, f"{alert}: name the Grafana panel"
    assert COMMAND.search(do), f"{alert}: the do-step names the mlstack command (or make preview) to run"
