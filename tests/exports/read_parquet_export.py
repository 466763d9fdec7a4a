"""Reads a Parquet events export the way an analyst would, with pandas
(pyarrow) or with DuckDB, and prints what it read as JSON, for
tests/events_export.rs to compare with the NDJSON export.

usage: read_parquet_export.py pandas|duckdb EVENTS.parquet
       read_parquet_export.py participation PARTICIPATION.parquet   (with DuckDB)
"""
import json
import sys

reader, path = sys.argv[1], sys.argv[2]
if reader == "pandas":
    import pandas as pd

    table = pd.read_parquet(path).sort_values("seq")

    def listed(cell):
        return None if cell is None else [str(item) for item in cell]

    read = {
        "seq": [int(seq) for seq in table["seq"]],
        "ids": list(table["id"]),
        "types": {kind: int(count) for kind, count in table.groupby("type").size().items()},
        "hours": [None if pd.isna(hours) else float(hours) for hours in table["hours"]],
        "attendees": [listed(cell) for cell in table["attendees"]],
        "participant": [None if cell is None else str(cell) for cell in table["participant"]],
        "organisers": [listed(cell) for cell in table["organisers"]],
        "organiser_roles": [listed(cell) for cell in table["organiser_roles"]],
        "time_us": [int(time.value // 1000) for time in table["time"]],
        "time_zone": str(table["time"].dt.tz),
        "dates": [str(date) for date in table["date"]],
    }
elif reader == "duckdb":
    import duckdb

    rows = duckdb.sql(
        f"select seq, id, type, hours, attendees, epoch_us(time), date::varchar, organisers, organiser_roles, participant "
        f"from read_parquet('{path}') order by seq"
    ).fetchall()
    types = duckdb.sql(f"select type, count(*) from read_parquet('{path}') group by type").fetchall()
    time_type = duckdb.sql(f"select typeof(time) from read_parquet('{path}') limit 1").fetchall()
    read = {
        "seq": [row[0] for row in rows],
        "ids": [row[1] for row in rows],
        "types": {kind: count for kind, count in types},
        "hours": [row[3] for row in rows],
        "attendees": [row[4] for row in rows],
        "participant": [row[9] for row in rows],
        "organisers": [row[7] for row in rows],
        "organiser_roles": [row[8] for row in rows],
        "time_us": [row[5] for row in rows],
        "time_zone": "UTC" if time_type and time_type[0][0] == "TIMESTAMP WITH TIME ZONE" else str(time_type),
        "dates": [row[6] for row in rows],
    }
elif reader == "participation":
    import duckdb

    parts = duckdb.sql(f"select part, count(*) from read_parquet('{path}') group by part").fetchall()
    roles = duckdb.sql(
        f"select participant, role from read_parquet('{path}') where part = 'organiser' order by seq"
    ).fetchall()
    people = duckdb.sql(f"select distinct participant from read_parquet('{path}') order by participant").fetchall()
    read = {
        "parts": {part: count for part, count in parts},
        "organisers": [list(row) for row in roles],
        "people": [row[0] for row in people],
    }
else:
    sys.exit(f"unknown reader {reader}")
print(json.dumps(read))
