"""Alerting: rules over the queue's own history (rules, conditions, engine, api) and their delivery.

The pipeline, in file order: `rules` (the checked rule model and its YAML file) → `conditions` (one SQL query
per condition) → `engine` (an evaluation round: fire, resolve, throttle, write the outbox) → `api` (`Alerts`,
`AsyncAlerts`) → delivery (channels, messages, the outbox sender, the daemon).
"""
