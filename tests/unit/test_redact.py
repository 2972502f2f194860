"""Passwords never reach output."""

from __future__ import annotations

from clawnsole.db.connect import describe, redact


def test_password_in_url_is_hidden() -> None:
    text = "connection to postgresql://app:s3cret@db.example:5432/q failed"
    assert "s3cret" not in redact(text)
    assert "postgresql://app:***@db.example" in redact(text)


def test_password_keyword_is_hidden() -> None:
    assert "hunter2" not in redact("host=db password=hunter2 dbname=q")
    assert "hunter2" not in redact("host=db password='hunter2 x' dbname=q")


def test_describe_names_host_port_and_database_only() -> None:
    assert describe("postgresql://app:s3cret@db.example:6543/queue") == "db.example:6543/queue"
