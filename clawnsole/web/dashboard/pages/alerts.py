"""`/alerts`: the alert rules (add, edit with their thresholds, delete, enable / disable), the channels
(configured on this server or not; enable / disable), a test notice, and the history of alerts and notices.

A thin layer over the calls routes/alerts.py makes: `AsyncAlerts` (settings, list, alerts, add, update,
remove, enable_channel, disable_channel), `delivery.history`, `Channels.describe` (this server's environment,
never a secret) and the API's `send_tests`. Rules and settings apply to every queue, so changing them takes
`operate` over all queues; a token limited to some queues sees the rules, and only the alerts and notices
about its queues.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from clawnsole.alerts import delivery
from clawnsole.alerts.api import AsyncAlerts
from clawnsole.alerts.channels import Channels
from clawnsole.alerts.messages import SEVERITIES
from clawnsole.alerts.ops import AlertState
from clawnsole.alerts.rules import CHANNELS, CONDITIONS, GROUPS, PATTERN_OPTIONS, Rule
from clawnsole.errors import InvalidInput
from clawnsole.queue import AsyncWorkQueue
from clawnsole.tokens.models import Forbidden
from clawnsole.web.auth import queue_of
from clawnsole.web.dashboard.render import page, span
from clawnsole.web.dashboard.session import Viewer, act, form_of, from_this_dashboard, redirect, signed_in
from clawnsole.web.routes.alerts import sees, send_tests, visible, whole_installation

router = APIRouter()

HISTORY = 50
GROUP_LABELS = {
    "jobFailures": "Job failures",
    "queueHealth": "Queue health",
    "performance": "Performance",
    "schedules": "Schedules",
}


@dataclass(frozen=True)
class ConditionText:
    """How the page names a condition and reads its threshold. `kind`: count, seconds, ratio, factor or flag
    (a condition with no threshold: it holds or not)."""

    label: str
    kind: str
    below: bool = False

    @property
    def hint(self) -> str:
        return {
            "count": "a whole number, at least 1",
            "seconds": "seconds, or 90s, 15m, 2h",
            "ratio": "more than 0, at most 1 (0.8 is 80 %)",
            "factor": "a factor (2 is twice the usual)",
        }.get(self.kind, "")

    def threshold(self, value: Any) -> str:
        """The threshold in words: "≥ 3", "< 80 %", "≥ 15 min", "≥ 2 times", "—" for a flag."""
        if self.kind == "flag":
            return "—"
        sign = "<" if self.below else "≥"
        if self.kind == "seconds" and isinstance(value, int | float):
            return f"{sign} {span(value)}"
        if self.kind == "ratio" and isinstance(value, int | float):
            return f"{sign} {value * 100:g} %"
        if self.kind == "factor":
            return f"{sign} {value} times"
        return f"{sign} {value}"


CONDITION_TEXT = {
    "consecutiveFailures": ConditionText("Failures in a row", "count"),
    "failureCount": ConditionText("Failures within a window", "count"),
    "timeouts": ConditionText("Timed-out attempts", "count"),
    "dlqSize": ConditionText("Dead letters", "count"),
    "pendingJobs": ConditionText("Backlog (pending items)", "count"),
    "oldestPendingSeconds": ConditionText("Oldest pending item waited", "seconds"),
    "paused": ConditionText("Queue paused or draining", "flag"),
    "expiredLeases": ConditionText("Expired leases", "count"),
    "noWorkers": ConditionText("No live worker for due items", "flag"),
    "successRate": ConditionText("Success rate below", "ratio", below=True),
    "durationIncrease": ConditionText("Run time above usual", "factor"),
    "concurrencySaturation": ConditionText("Concurrency limit used", "ratio"),
    "missedRuns": ConditionText("Missed schedule runs", "count"),
    "notFinishedWithin": ConditionText("Scheduled run not done within", "seconds"),
}
PATTERN_LABELS = {
    "jobPattern": "Jobs (regular expression over the kind, else the queue)",
    "queuePattern": "Queues (regular expression over the name)",
    "schedulePattern": "Schedules (regular expression over the name)",
}
# The options a rule form has a field for (a pattern has one field, named `pattern`, whatever its option).
OPTION_FIELDS = ("timeWindow", "minRuns", "forSeconds")


def option_text(key: str, value: Any) -> str:
    """A condition's option in words: "queues ~ ^ops$", "within 1 h", "at least 20 runs", "for 10 min"."""
    if key in PATTERN_LABELS:
        return f"{key.removesuffix('Pattern')}s ~ {value}"
    if key == "timeWindow":
        return f"within {span(value)}"
    if key == "minRuns":
        return f"at least {value} runs"
    if key == "forSeconds":
        return f"for {span(value)}"
    return f"{key}: {value}"


def condition_text(name: str) -> ConditionText:
    """The page's words for a condition (its own name for one the page does not know yet)."""
    return CONDITION_TEXT.get(name, ConditionText(name, "count"))


def pattern_option(condition: str) -> str | None:
    """The pattern option a condition takes (jobPattern, queuePattern, schedulePattern), if any."""
    spec = CONDITIONS.get(condition)
    return next((o for o in PATTERN_OPTIONS if spec is not None and o in spec.options), None)


@dataclass
class RuleForm:
    """What the rule form shows and posts, as text: a rule's fields, its condition split into the threshold,
    the pattern and the other options."""

    name: str = ""
    condition: str = "dlqSize"
    threshold: str = ""
    pattern: str = ""
    options: dict[str, str] = field(default_factory=dict)
    severity: str = "medium"
    channels: list[str] = field(default_factory=list)
    description: str = ""
    enabled: bool = True

    @classmethod
    def of_rule(cls, rule: Rule) -> RuleForm:
        d = rule.definition
        pattern = pattern_option(d.condition)
        return cls(
            name=d.name,
            condition=d.condition,
            threshold=_threshold_text(d.condition, d.conditions[d.condition]),
            pattern=str(d.conditions.get(pattern, "")) if pattern else "",
            options={
                k: str(d.conditions[k]) if k == "minRuns" else duration_text(d.conditions[k])
                for k in OPTION_FIELDS
                if k in d.conditions
            },
            severity=d.severity,
            channels=list(d.channels),
            description=d.description or "",
            enabled=d.enabled,
        )

    @classmethod
    def of_form(cls, form: Mapping[str, Any], name: str | None = None) -> RuleForm:
        def text(key: str) -> str:
            value = form.get(key)
            return value.strip() if isinstance(value, str) else ""

        channels = form.get("channels", [])
        return cls(
            name=name if name is not None else text("name"),
            condition=text("condition"),
            threshold=text("threshold"),
            pattern=text("pattern"),
            options={k: text(k) for k in OPTION_FIELDS if text(k)},
            severity=text("severity"),
            channels=[channels] if isinstance(channels, str) else list(channels),
            description=text("description"),
            enabled=form.get("enabled") == "1",
        )

    def conditions(self) -> dict[str, Any]:
        """The rule's conditions mapping: the threshold under the condition's name, then the options the
        condition takes (the library checks each and names the one that is wrong)."""
        spec = CONDITIONS.get(self.condition)
        if spec is None:
            raise InvalidInput("condition", f"choose a condition ({', '.join(CONDITIONS)})")
        threshold: Any = True if condition_text(self.condition).kind == "flag" else _number(self.threshold)
        conditions: dict[str, Any] = {self.condition: threshold}
        pattern = pattern_option(self.condition)
        if pattern and self.pattern:
            conditions[pattern] = self.pattern
        for key in OPTION_FIELDS:
            if key in spec.options and self.options.get(key):
                conditions[key] = _number(self.options[key])
        return conditions

    def rule_options(self) -> dict[str, Any]:
        """The keyword options of `AsyncAlerts.add` / `update`."""
        return {
            "conditions": self.conditions(),
            "severity": self.severity,
            "channels": self.channels,
            "description": self.description,
            "enabled": self.enabled,
        }


def duration_text(value: Any) -> str:
    """Seconds as the shortest duration the form takes back: 172800 → "2d", 900 → "15m", 90 → "90"."""
    if isinstance(value, int) and value > 0:
        for unit, seconds in (("d", 86400), ("h", 3600), ("m", 60)):
            if value % seconds == 0:
                return f"{value // seconds}{unit}"
    return str(value)


def _threshold_text(condition: str, value: Any) -> str:
    kind = condition_text(condition).kind
    return "" if kind == "flag" else duration_text(value) if kind == "seconds" else str(value)


def _number(text: str) -> Any:
    # A number when it reads as one, else the text as typed (a duration such as 15m; the library says which
    # it accepts).
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def field_of(error: InvalidInput, condition: str) -> str:
    """The form field an error of the library is about ("form" when it is about none of them)."""
    name = error.field
    if name in ("name", "severity", "channels", "description", "enabled"):
        return name
    if name in ("group", "conditions", "condition"):
        return "condition"
    if name == f"conditions.{condition}":
        return "threshold"
    key = name.removeprefix("conditions.")
    if key in OPTION_FIELDS:
        return key
    if key in PATTERN_OPTIONS or "pattern" in name:
        return "pattern"
    return "form"


def _editor(viewer: Viewer) -> bool:
    """Whether the viewer may change rules and settings: operate, over every queue."""
    return viewer.can("operate") and viewer.principal.queues is None


def _require_editor(viewer: Viewer) -> None:
    if not viewer.can("operate"):
        raise Forbidden("this token lacks the 'operate' scope")
    whole_installation(viewer.principal)


def _channels_here() -> tuple[dict[str, tuple[bool, str]], str | None]:
    """Each channel: whether this server can deliver through it, and how (or why not) — from its
    environment, never a secret; and an error when the environment's alerting variables do not parse."""
    try:
        channels = Channels.from_environment()
    except InvalidInput as error:
        return {}, str(error)
    try:
        return {name: (channels.problem(name) is None, how) for name, how in channels.describe().items()}, None
    finally:
        channels.close()


def _newest_first(alert: AlertState) -> Any:
    return max(alert.fired_at, alert.resolved_at or alert.fired_at)


@router.get("/alerts")
async def alerts_page(request: Request, viewer: Viewer = Depends(signed_in)) -> HTMLResponse:
    wq = queue_of(request)
    alerts = AsyncAlerts(wq)
    principal = viewer.principal
    settings = await alerts.settings()
    rules = await alerts.list()
    states = [a for a in await alerts.alerts() if sees(principal, a.subject_type, a.subject)]
    notices = [e for e in await wq.run(delivery.history(limit=HISTORY)) if visible(e, principal)]
    here, channels_error = _channels_here()
    firing: dict[str, list[AlertState]] = {}
    for state in states:
        if state.state == "firing":
            firing.setdefault(state.rule, []).append(state)
    channels = [
        {
            "name": name,
            "enabled": name in settings.channels,
            "configured": here.get(name, (False, ""))[0],
            "how": here.get(name, (False, ""))[1],
        }
        for name in CHANNELS
    ]
    return page(
        request,
        viewer,
        "alerts.html",
        settings=settings,
        rules=rules,
        firing=firing,
        history=sorted(states, key=_newest_first, reverse=True)[:HISTORY],
        notices=notices,
        channels=channels,
        channels_error=channels_error,
        editor=_editor(viewer),
        text=condition_text,
        option=option_text,
        severities=SEVERITIES,
        all_channels=CHANNELS,
    )


def _form_page(
    request: Request, viewer: Viewer, form: RuleForm, *, new: bool, errors: Mapping[str, str] | None = None
) -> HTMLResponse:
    return page(
        request,
        viewer,
        "alert_rule_form.html",
        status_code=400 if errors else 200,
        form=form,
        new=new,
        errors=dict(errors or {}),
        **_form_context(form.condition),
    )


def _form_context(condition: str) -> dict[str, Any]:
    spec = CONDITIONS.get(condition)
    pattern = pattern_option(condition)
    return {
        "groups": [(GROUP_LABELS.get(g, g), [c for c, s in CONDITIONS.items() if s.group == g]) for g in GROUPS],
        "text": condition_text,
        "spec": spec,
        "pattern_label": PATTERN_LABELS.get(pattern or "", ""),
        "option_fields": [k for k in OPTION_FIELDS if spec is not None and k in spec.options],
        "default_window": span(spec.window) if spec is not None and spec.window else None,
        "severities": SEVERITIES,
        "all_channels": CHANNELS,
    }


@router.get("/alerts/rules/new")
async def new_rule(request: Request, viewer: Viewer = Depends(signed_in)) -> HTMLResponse:
    _require_editor(viewer)
    condition = request.query_params.get("condition", "dlqSize")
    return _form_page(
        request, viewer, RuleForm(condition=condition if condition in CONDITIONS else "dlqSize"), new=True
    )


@router.get("/alerts/rules/fields")
async def rule_fields(request: Request, viewer: Viewer = Depends(signed_in)) -> HTMLResponse:
    """The fields of the chosen condition (its threshold and options), swapped in when the condition changes;
    what was typed in fields the new condition also has stays."""
    form = RuleForm.of_form(dict(request.query_params))
    if form.condition not in CONDITIONS:
        form.condition = "dlqSize"
    return page(request, viewer, "alert_rule_fields.html", form=form, errors={}, **_form_context(form.condition))


@router.get("/alerts/rules/{name}/edit")
async def edit_rule(name: str, request: Request, viewer: Viewer = Depends(signed_in)) -> HTMLResponse:
    _require_editor(viewer)
    rule = await AsyncAlerts(queue_of(request)).get(name)
    return _form_page(request, viewer, RuleForm.of_rule(rule), new=False)


async def _save(request: Request, viewer: Viewer, name: str | None) -> Response:
    """Create (`name` None) or change a rule; bad input re-renders the form with the error at its field."""
    posted = await form_of(request)
    form = RuleForm.of_form(posted, name)
    refused: list[InvalidInput] = []

    async def do(wq: AsyncWorkQueue) -> str:
        whole_installation(viewer.principal)
        try:
            if name is None:
                await AsyncAlerts(wq).add(form.name, **form.rule_options())
                return f"Rule {form.name} added."
            await AsyncAlerts(wq).update(name, **form.rule_options())
            return f"Rule {name} saved."
        except InvalidInput as error:
            refused.append(error)
            raise

    if name is None:
        response = await act(
            request, viewer, "operate", "alert.rule.create", form.name or None, do, back="/alerts", form=posted
        )
    else:
        response = await act(
            request,
            viewer,
            "operate",
            "alert.rule.update",
            name,
            do,
            back="/alerts",
            form=posted,
            detail={"fields": ["channels", "conditions", "description", "enabled", "severity"]},
        )
    if refused:
        error = refused[0]
        return _form_page(
            request, viewer, form, new=name is None, errors={field_of(error, form.condition): error.message}
        )
    return response


@router.post("/alerts/rules")
async def create_rule(request: Request, viewer: Viewer = Depends(signed_in)) -> Response:
    return await _save(request, viewer, None)


@router.post("/alerts/rules/{name}")
async def update_rule(name: str, request: Request, viewer: Viewer = Depends(signed_in)) -> Response:
    return await _save(request, viewer, name)


async def _switch_rule(request: Request, viewer: Viewer, name: str, enabled: bool) -> Response:
    async def do(wq: AsyncWorkQueue) -> str:
        whole_installation(viewer.principal)
        alerts = AsyncAlerts(wq)
        await (alerts.enable(name) if enabled else alerts.disable(name))
        return f"Rule {name} {'enabled: it is evaluated again' if enabled else 'disabled: it is not evaluated'}."

    return await act(
        request, viewer, "operate", "alert.rule.update", name, do, back="/alerts", detail={"fields": ["enabled"]}
    )


@router.post("/alerts/rules/{name}/enable")
async def enable_rule(name: str, request: Request, viewer: Viewer = Depends(signed_in)) -> Response:
    return await _switch_rule(request, viewer, name, True)


@router.post("/alerts/rules/{name}/disable")
async def disable_rule(name: str, request: Request, viewer: Viewer = Depends(signed_in)) -> Response:
    return await _switch_rule(request, viewer, name, False)


@router.post("/alerts/rules/{name}/delete")
async def delete_rule(name: str, request: Request, viewer: Viewer = Depends(signed_in)) -> Response:
    """First what the deletion takes with it (a confirmation), then, posted with `confirm=1`, the deletion."""
    posted = await form_of(request)
    if posted.get("confirm") != "1" and from_this_dashboard(request, viewer.session, posted) and _editor(viewer):
        alerts = AsyncAlerts(queue_of(request))
        rule = await alerts.get(name)
        states = await alerts.alerts(rule=name)
        return page(
            request,
            viewer,
            "alert_rule_delete.html",
            rule=rule,
            text=condition_text,
            alerts=len(states),
            firing=sum(1 for a in states if a.state == "firing"),
        )

    async def do(wq: AsyncWorkQueue) -> str:
        whole_installation(viewer.principal)
        await AsyncAlerts(wq).remove(name)
        return f"Rule {name} deleted, with its alerts."

    return await act(request, viewer, "operate", "alert.rule.delete", name, do, back="/alerts", form=posted)


async def _switch_channel(request: Request, viewer: Viewer, channel: str, enabled: bool) -> Response:
    async def do(wq: AsyncWorkQueue) -> str:
        whole_installation(viewer.principal)
        alerts = AsyncAlerts(wq)
        await (alerts.enable_channel(channel) if enabled else alerts.disable_channel(channel))
        return f"Channel {channel} {'enabled' if enabled else 'disabled: no notice goes out by it'}."

    action = f"alert.channel.{'enable' if enabled else 'disable'}"
    return await act(request, viewer, "operate", action, channel, do, back="/alerts")


@router.post("/alerts/channels/{channel}/enable")
async def enable_channel(channel: str, request: Request, viewer: Viewer = Depends(signed_in)) -> Response:
    return await _switch_channel(request, viewer, channel, True)


@router.post("/alerts/channels/{channel}/disable")
async def disable_channel(channel: str, request: Request, viewer: Viewer = Depends(signed_in)) -> Response:
    return await _switch_channel(request, viewer, channel, False)


def outcome_text(result: Mapping[str, Any]) -> str:
    """One channel's test outcome in words: "webhook: sent (HTTP 200)", "email: failed — <reason>"."""
    if result.get("ok"):
        code = result.get("status_code")
        protocol = "SMTP" if result["channel"] == "email" else "HTTP"
        return f"{result['channel']}: sent" + (f" ({protocol} {code})" if code else "")
    return f"{result['channel']}: {result.get('status')} — {result.get('error') or 'no reason given'}"


@router.post("/alerts/test")
async def send_test(request: Request, viewer: Viewer = Depends(signed_in)) -> Response:
    """Send a test notice now through one channel, or every enabled one; the flash says how each went (the
    notice is in the history below, with its attempt)."""
    posted = await form_of(request)
    chosen = posted.get("channel")
    names = [chosen] if isinstance(chosen, str) and chosen else []
    severity = posted.get("severity") if isinstance(posted.get("severity"), str) else "low"
    outcomes: list[dict[str, Any]] = []

    async def do(wq: AsyncWorkQueue) -> tuple[str, dict[str, Any]]:
        whole_installation(viewer.principal)
        outcomes.extend(await send_tests(wq, viewer.name, names, str(severity or "low")))
        # The audit row says how each channel took it.
        sent = {str(r.get("channel")): bool(r.get("ok")) for r in outcomes}
        return "Test alert: " + "; ".join(outcome_text(r) for r in outcomes), {"sent": sent}

    response = await act(
        request, viewer, "operate", "alert.test", ",".join(names) or "(settings)", do, back="/alerts", form=posted
    )
    if outcomes and not all(r.get("ok") for r in outcomes):
        # Sent through the real path, but a channel did not take it: said as an error, not as a success.
        return redirect("/alerts", "Test alert: " + "; ".join(outcome_text(r) for r in outcomes), "error")
    return response
