"""The database layer: named SQL statements, migrations, connections. Knows nothing of the CLI."""
