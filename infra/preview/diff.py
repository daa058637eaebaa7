"""`mlstack diff BASE_PLAN NEW_PLAN`: what a change adds, removes and changes, and what it does to the monthly bill,
as Markdown for a pull-request comment."""

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_LISTED = 50  # resources listed per section; a comment stays readable
STACK_IN_URN = re.compile(r"^urn:pulumi:[^:]+::")


class PlanError(Exception):
    """A plan file that cannot be compared; the message names it."""


@dataclass(frozen=True)
class PlanDiff:
    added: list[dict[str, Any]]
    removed: list[dict[str, Any]]
    changed: list[tuple[dict[str, Any], list[str]]]  # the resource and the inputs that changed


def _resources(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Cloud resources by URN without the stack's name, so two stacks' plans compare too."""
    return {
        STACK_IN_URN.sub("urn:pulumi:*::", resource["urn"]): resource
        for resource in plan["resources"]
        if resource["custom"]
    }


def compare(base_plan: dict[str, Any], new_plan: dict[str, Any]) -> PlanDiff:
    base, new = _resources(base_plan), _resources(new_plan)
    changed = []
    for urn, resource in new.items():
        before = base.get(urn)
        if before is not None and before["inputs"] != resource["inputs"]:
            keys = sorted(
                key
                for key in set(before["inputs"]) | set(resource["inputs"])
                if before["inputs"].get(key) != resource["inputs"].get(key)
            )
            changed.append((resource, keys))
    return PlanDiff(
        added=[resource for urn, resource in new.items() if urn not in base],
        removed=[resource for urn, resource in base.items() if urn not in new],
        changed=changed,
    )


def load_plan(path: Path) -> dict[str, Any]:
    try:
        plan: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise PlanError(f"{path}: cannot read it: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise PlanError(f"{path}: not JSON: {error}") from None
    if not isinstance(plan, dict) or plan.get("version") != 1 or not isinstance(plan.get("resources"), list):
        raise PlanError(f"{path}: not an mlstack plan.json (version 1 with resources)")
    return plan


def _money(amount: float | None) -> str:
    return "n/a" if amount is None else f"${amount:,.2f}"


def _delta(amount: float) -> str:
    sign = "+" if amount > 0 else "-" if amount < 0 else "±"
    return f"{sign}${abs(amount):,.2f}"


def _cost_items(plan: dict[str, Any]) -> dict[str, float]:
    items: dict[str, float] = {}
    for item in plan.get("cost", {}).get("items", []):
        if item.get("monthly") is not None:
            items[item["item"]] = items.get(item["item"], 0.0) + item["monthly"]
    return items


def _listing(title: str, rows: list[str]) -> list[str]:
    if not rows:
        return []
    shown = rows[:MAX_LISTED]
    more = [f"- … and {len(rows) - MAX_LISTED} more"] if len(rows) > MAX_LISTED else []
    return ["", f"**{title} ({len(rows)})**", "", *shown, *more]


def render_markdown(base: dict[str, Any], new: dict[str, Any]) -> str:
    diff = compare(base, new)
    base_total = base.get("cost", {}).get("monthly_total")
    new_total = new.get("cost", {}).get("monthly_total")
    title = f"### mlstack: `{base.get('stack')}` → `{new.get('stack')}`"
    lines = [title, ""]
    lines.append(
        f"{len(diff.added)} to add, {len(diff.changed)} to change, {len(diff.removed)} to remove. "
        f"Estimated monthly cost: {_money(base_total)} → {_money(new_total)}"
        + (f" (**{_delta(new_total - base_total)}**)" if base_total is not None and new_total is not None else "")
    )
    lines += _listing("Added", [f"- `{r['type']}` {r['name']}" for r in diff.added])
    lines += _listing("Changed", [f"- `{r['type']}` {r['name']}: {', '.join(keys)}" for r, keys in diff.changed])
    lines += _listing("Removed", [f"- `{r['type']}` {r['name']}" for r in diff.removed])
    before, after = _cost_items(base), _cost_items(new)
    moved = sorted(
        ((name, after.get(name, 0.0) - before.get(name, 0.0)) for name in set(before) | set(after)),
        key=lambda pair: (-abs(pair[1]), pair[0]),
    )
    moved = [(name, amount) for name, amount in moved if round(amount, 2) != 0]
    if moved:
        lines += [
            "",
            "**Cost by line item**",
            "",
            "| line item | before | after | change |",
            "| --- | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {name} | {_money(before.get(name))} | {_money(after.get(name))} | {_delta(amount)} |"
            for name, amount in moved[:MAX_LISTED]
        ]
    problems = new.get("cost", {}).get("unpriced") or []
    lines += _listing("Unpriced in the new plan", [f"- {problem}" for problem in problems])
    violations = new.get("policy", {}).get("violations") or []
    lines += _listing(
        "Policy violations",
        [f"- **{v['policy']}** ({v['level']}): {v['urn'].rsplit('::', 1)[-1]}: {v['message']}" for v in violations],
    )
    readiness = new.get("readiness", {}).get("violations") or []
    lines += _listing(
        "Readiness violations",
        [f"- **{v['policy']}**: {v['urn'].rsplit('::', 1)[-1]}: {v['message']}" for v in readiness],
    )
    prices = new.get("cost", {}).get("prices_as_of")
    if prices:
        lines += ["", f"<sub>Prices as of {prices}; usage-driven charges are not included.</sub>"]
    return "\n".join(lines) + "\n"
