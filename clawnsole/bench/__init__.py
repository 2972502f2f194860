"""`clawnsole bench`: a reproducible benchmark of this queue, with the raw-SQL ceiling measured in the same run.

Nothing here is imported by the library or by any other command: `clawnsole bench` loads it on demand.
The layers: `stats` (percentiles and rates), `scratch` (the throwaway schema and the machine description),
`ceiling` (the same statements driven raw: pgbench, else a tight psycopg loop), `scenarios` (what a user
would do, timed), `report` (the table and the JSON) and `runner` (which scenarios, in what order).
"""
