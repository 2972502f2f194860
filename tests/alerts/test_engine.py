"""The evaluation round: alerts fire when their condition becomes true, stay quiet (counting what the throttle
holds back) while it stays true, resolve when it stops; every rule is evaluated by one evaluator per round."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta

from clawnsole.alerts.api import Alerts
from clawnsole.alerts.engine import EvaluationReport
from clawnsole.queue import WorkQueue
from tests.alerts.conftest import History, outbox, sql


def _later(history: History, seconds: float) -> datetime:
    return history.now + timedelta(seconds=seconds)


def test_an_alert_fires_stays_quiet_within_min_interval_counting_suppressed_then_resolves(
    alerts: Alerts, history: History
) -> None:
    alerts.update_settings(channels=("slack", "email"), min_interval_seconds=300)
    alerts.add("nightly-fails", conditions={"jobPattern": "^nightly", "failureCount": 1}, channels=["slack"])
    first = history.attempt("nightly", ok=False, seconds_ago=100)

    fired = alerts.evaluate(now=history.now)
    assert [(c.change, c.notice, c.channels) for r in fired.rules for c in r.changes] == [("fired", "fired", ["slack"])]
    [(alert_id, channel, kind, message)] = outbox(history.db_url)
    assert (channel, kind, message["state"], message["suppressed"]) == ("slack", "fired", "fired", 0)
    assert message["subject"] == {"type": "job", "name": "nightly"}
    assert message["item_ids"] == [first]
    assert message["summary"] == "job nightly failed 1 times in 1h"
    assert message["command"] == "clawnsole dlq list --kind nightly"

    assert alerts.evaluate(now=_later(history, 10)).notices == 0  # still true, nothing new: nothing sent
    history.attempt("nightly", ok=False, seconds_ago=-50)
    history.attempt("nightly", ok=False, seconds_ago=-110)
    held = [alerts.evaluate(now=_later(history, s)) for s in (60, 120, 180)]
    assert [r.notices for r in held] == [0, 0, 0]
    [state] = alerts.alerts()
    assert (state.state, state.suppressed, state.sent_count) == ("firing", 2, 1)  # two new failures held back

    update = alerts.evaluate(now=_later(history, 301))
    assert [c.change for r in update.rules for c in r.changes] == ["updated"]
    assert outbox(history.db_url)[-1][3]["suppressed"] == 2

    resolved = alerts.evaluate(now=_later(history, 2 * 3600))
    assert [(c.change, c.notice) for r in resolved.rules for c in r.changes] == [("resolved", "resolved")]
    last = outbox(history.db_url)[-1]
    assert (last[0], last[2], last[3]["state"]) == (alert_id, "resolved", "resolved")
    assert last[3]["summary"].startswith("resolved: job nightly")
    assert [a.state for a in alerts.alerts()] == ["resolved"]
    assert len(outbox(history.db_url)) == 3


def test_a_fire_held_back_by_min_interval_after_a_resolve_is_never_resolved_aloud(
    alerts: Alerts, history: History
) -> None:
    alerts.update_settings(channels=("slack",), min_interval_seconds=300)
    alerts.add("backlog", conditions={"pendingJobs": 1}, channels=["slack"])
    item = history.item("ops")
    alerts.evaluate(now=history.now)
    sql(history.db_url, "UPDATE clawnsole.items SET status = 'cancelled', finished_at = now() WHERE id = %s", [item])
    alerts.evaluate(now=_later(history, 10))
    again = history.item("ops")
    assert alerts.evaluate(now=_later(history, 20)).notices == 0  # re-fired within minInterval: held back
    sql(history.db_url, "UPDATE clawnsole.items SET status = 'cancelled', finished_at = now() WHERE id = %s", [again])
    assert alerts.evaluate(now=_later(history, 30)).notices == 0  # its resolve is not announced either
    assert [r[2] for r in outbox(history.db_url)] == ["fired", "resolved"]
    history.item("ops")
    alerts.evaluate(now=_later(history, 400))
    assert outbox(history.db_url)[-1][3]["suppressed"] == 1  # the held-back fire is told of


def test_no_job_gets_more_than_max_alerts_per_hour_across_rules_over_a_burst(alerts: Alerts, history: History) -> None:
    alerts.update_settings(channels=("slack",), min_interval_seconds=0, max_alerts_per_job_per_hour=3)
    alerts.add("any-failure", conditions={"failureCount": 1}, channels=["slack"])
    alerts.add("in-a-row", conditions={"consecutiveFailures": 1}, channels=["slack"])
    for n in range(25):  # a burst: a new failure of one job every round
        history.attempt("burst", ok=False, seconds_ago=-n * 60)
        alerts.evaluate(now=_later(history, n * 60 + 1))
    notices = outbox(history.db_url)
    assert len(notices) == 3
    held = sum(a.suppressed for a in alerts.alerts())
    assert held == 2 * 25 - 3
    history.attempt("burst", ok=False, seconds_ago=-2 * 3600)
    alerts.evaluate(now=_later(history, 2 * 3600 + 1))
    after = outbox(history.db_url)[3:]
    assert len(after) == 2  # a new hour: both rules tell what they held back
    assert sum(m[3]["suppressed"] for m in after) == held


def test_notices_go_to_the_rules_channels_that_settings_enable(alerts: Alerts, history: History) -> None:
    alerts.update_settings(channels=("slack", "webhook"))
    alerts.add("dlq", conditions={"dlqSize": 1}, channels=["slack", "email"])
    alerts.add("dlq-everywhere", conditions={"dlqSize": 1})
    history.item("ops", status="failed")
    alerts.evaluate(now=history.now)
    assert sorted((m["rule"], channel) for _, channel, _, m in outbox(history.db_url)) == [
        ("dlq", "slack"),
        ("dlq-everywhere", "slack"),
        ("dlq-everywhere", "webhook"),
    ]


def test_alerting_disabled_in_settings_evaluates_nothing(alerts: Alerts, history: History) -> None:
    alerts.update_settings(enabled=False, channels=("slack",))
    alerts.add("dlq", conditions={"dlqSize": 1})
    history.item("ops", status="failed")
    report = alerts.evaluate(now=history.now)
    assert (report.enabled, report.rules) == (False, [])
    assert outbox(history.db_url) == [] and alerts.alerts() == []


def test_a_rule_that_fails_in_the_database_is_recorded_and_the_others_still_evaluated(
    alerts: Alerts, history: History
) -> None:
    alerts.update_settings(channels=("slack",))
    alerts.add("good", conditions={"dlqSize": 1})
    # A pattern stored behind the checks' back, which `~` refuses at evaluation.
    sql(
        history.db_url,
        "INSERT INTO clawnsole.alert_rules (name, rule_group, conditions, severity) "
        """VALUES ('broken', 'queueHealth', '{"dlqSize": 1, "queuePattern": "(?P<x>a)"}', 'low')""",
    )
    history.item("ops", status="failed")
    report = alerts.evaluate(now=history.now)
    by_rule = {r.rule: r for r in report.rules}
    assert by_rule["good"].firing == 1 and by_rule["good"].error is None
    assert "invalid regular expression" in (by_rule["broken"].error or "")
    assert "invalid regular expression" in (alerts.get("broken").last_error or "")
    assert alerts.evaluate(every=60, now=history.now).rules == []  # both count as evaluated this interval


def test_three_evaluators_at_once_evaluate_each_rule_once_and_send_each_alert_once(
    db_url: str, alerts: Alerts, history: History
) -> None:
    alerts.update_settings(channels=("slack",))
    names = [f"dlq-{n}" for n in range(8)]
    for name in names:
        alerts.add(name, conditions={"dlqSize": 1}, channels=["slack"])
    history.item("ops", status="failed")
    start = threading.Barrier(3)
    reports: list[EvaluationReport] = []
    errors: list[BaseException] = []

    def evaluator(n: int) -> None:
        try:
            with WorkQueue(db_url, agent=f"evaluator-{n}") as queue:
                start.wait(timeout=30)
                reports.append(Alerts(queue).evaluate(every=60))
        except BaseException as error:  # surfaced below: a thread's exception is not the test's
            errors.append(error)

    threads = [threading.Thread(target=evaluator, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and len(reports) == 3
    evaluated = Counter(r.rule for report in reports for r in report.rules)
    assert evaluated == Counter(names)  # each rule by exactly one of them
    assert Counter(m["rule"] for *_, m in outbox(db_url)) == Counter(names)  # each alert sent once
    assert all(a.sent_count == 1 for a in alerts.alerts())
