"""Reads an events export (NDJSON and CSV) the way an analyst would, with
pandas or with DuckDB, and prints what it read as JSON, for
tests/events_export.rs to compare with the export itself.

usage: read_events_export.py pandas|duckdb EVENTS.ndjson EVENTS.csv
"""
import json
import sys

reader, ndjson, csv = sys.argv[1], sys.argv[2], sys.argv[3]
if reader == "pandas":
    import pandas as pd

    events = pd.read_json(ndjson, lines=True, dtype={"id": str})
    table = pd.read_csv(csv, dtype={"id": str})
    read = {
        "seq": [int(seq) for seq in events["seq"]],
        "ids": list(events["id"]),
        "types": {kind: int(count) for kind, count in events.groupby("type").size().items()},
        "csv_seq": [int(seq) for seq in table["seq"]],
        "csv_hours": [None if pd.isna(hours) else float(hours) for hours in table["hours"]],
    }
elif reader == "duckdb":
    import duckdb

    rows = duckdb.sql(f"select seq, id, type from read_json_auto('{ndjson}') order by seq").fetchall()
    types = duckdb.sql(f"select type, count(*) from read_json_auto('{ndjson}') group by type").fetchall()
    table = duckdb.sql(f"select seq, hours from read_csv_auto('{csv}') order by seq").fetchall()
    read = {
        "seq": [row[0] for row in rows],
        "ids": [str(row[1]) for row in rows],
        "types": {kind: count for kind, count in types},
        "csv_seq": [row[0] for row in table],
        "csv_hours": [None if row[1] is None else float(row[1]) for row in table],
    }
else:
    sys.exit(f"unknown reader {reader}")
print(json.dumps(read))
