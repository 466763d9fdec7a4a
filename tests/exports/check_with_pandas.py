"""Reads momentum's CSV and Parquet exports the way an evaluator's notebook
would, with a plain `pandas.read_csv` or `pandas.read_parquet` (pyarrow), and
checks every value against the JSON answer of the same read: nulls are NaN,
dates parse as dates, numbers are exactly equal, columns without nulls keep
an integer dtype where the JSON holds integers.

    python check_with_pandas.py <manifest.json>

The manifest (written by tests/exports.rs) is a list of
{"name", "kind", "csv", "parquet", "json"}: `kind` says which read and layout,
`csv`, `parquet` and `json` are the paths of the three downloads. A case with `url` and `token` is
also read straight from the service, as the README shows:
`pd.read_csv(url, storage_options={"Authorization": "Bearer …"})`. Exits 1 with one line per
difference, 0 with a summary line when everything matches.
"""

import json
import math
import sys

import pandas as pd
import pyarrow.parquet

problems = []
checked = 0
# What the checked values held, so a run on too simple data is noticed.
seen = {"null": 0, "fraction": 0, "date": 0}


def fail(case, message):
    problems.append(f"{case}: {message}")


def same_value(case, where, cell, expected):
    """One CSV cell (as pandas read it) against one JSON value."""
    global checked
    checked += 1
    if expected is None:
        seen["null"] += 1
        if not (isinstance(cell, float) and math.isnan(cell)):
            fail(case, f"{where}: JSON null but CSV has {cell!r}")
        return
    if isinstance(expected, bool) or not isinstance(expected, (int, float)):
        if cell != expected:
            fail(case, f"{where}: JSON {expected!r} but CSV {cell!r}")
        return
    if isinstance(cell, float) and math.isnan(cell):
        fail(case, f"{where}: JSON {expected!r} but CSV has an empty cell")
        return
    if isinstance(expected, float) and expected != int(expected):
        seen["fraction"] += 1
    if float(cell) != float(expected):
        fail(case, f"{where}: JSON {expected!r} but CSV {cell!r} (not exactly equal)")
    if isinstance(expected, int) and float(cell) != int(cell):
        fail(case, f"{where}: JSON integer {expected!r} but CSV {cell!r}")


def same_date(case, where, cell, expected):
    global checked
    checked += 1
    seen["date"] += 1
    if not isinstance(cell, pd.Timestamp):
        fail(case, f"{where}: {cell!r} was not read as a date")
    elif cell.date().isoformat() != expected:
        fail(case, f"{where}: JSON {expected} but CSV {cell.date().isoformat()}")


def same_columns(case, frame, expected):
    if list(frame.columns) != list(expected):
        fail(case, f"columns {list(frame.columns)} but expected {list(expected)}")
        return False
    return True


def same_length(case, frame, expected):
    if len(frame) != expected:
        fail(case, f"{len(frame)} rows but expected {expected}")
        return False
    return True


def integer_columns_stay_integers(case, frame, columns, values_of):
    """A column whose JSON values are all integers (no nulls) must be read as
    int64, so a notebook sums and joins on exact counts. In a Parquet file,
    a column whose JSON values are integers or nulls must be stored as int64."""
    schema = frame.attrs.get("parquet_schema")
    for column in columns:
        values = values_of(column)
        integer = lambda v: isinstance(v, int) and not isinstance(v, bool)
        if values and all(integer(v) for v in values):
            if str(frame[column].dtype) != "int64":
                fail(case, f"column {column}: JSON integers but pandas read {frame[column].dtype}")
        present = [v for v in values if v is not None]
        if schema is not None and present and all(integer(v) for v in present):
            if str(schema.field(column).type) != "int64":
                fail(case, f"column {column}: JSON integers but Parquet holds {schema.field(column).type}")


# What a row holds besides its figures: its period's name and whether the
# period is over, then the value of a split read's dimension.
HEAD = ["label", "complete"]
DIMENSIONS = ["area", "partner", "role", "kind", "channel", "principle"]


def split_of(rows):
    return [key for key in DIMENSIONS if rows and key in rows[0]]


def check_trend_wide(case, frame, answer):
    series = answer["series"]
    split = split_of(series)
    metrics = [key for key in series[0] if key not in ["period", *HEAD, *split]]
    columns = ["period", *HEAD, *split, *metrics]
    if not (same_columns(case, frame, columns) and same_length(case, frame, len(series))):
        return
    for index, row in enumerate(series):
        same_date(case, f"row {index} period", frame["period"][index], row["period"])
        for column in [*HEAD, *split, *metrics]:
            same_value(case, f"{row['period']} {column}", frame[column][index], row[column])
    integer_columns_stay_integers(case, frame, metrics, lambda m: [row[m] for row in series])


def check_trend_long(case, frame, answer):
    series = answer["series"]
    split = split_of(series)
    expected = [
        (row, metric, value) for row in series for metric, value in row.items() if metric not in ["period", *HEAD, *split]
    ]
    columns = ["period", *HEAD, "movement", *split, "metric", "value"]
    if not (same_columns(case, frame, columns) and same_length(case, frame, len(expected))):
        return
    for index, (row, metric, value) in enumerate(expected):
        same_date(case, f"row {index} period", frame["period"][index], row["period"])
        for column in [*HEAD, *split]:
            same_value(case, f"row {index} {column}", frame[column][index], row[column])
        same_value(case, f"row {index} movement", frame["movement"][index], answer["movement"])
        same_value(case, f"row {index} metric", frame["metric"][index], metric)
        same_value(case, f"{row['period']} {metric}", frame["value"][index], value)


def check_cohorts_wide(case, frame, answer):
    cohorts = answer["cohorts"]
    width = max((len(c["active"]) for c in cohorts), default=0)
    columns = [
        "cohort", *HEAD, "size", *[f"active_{offset}" for offset in range(width)],
        *[f"share_{offset}" for offset in range(width)],
    ]
    if not (same_columns(case, frame, columns) and same_length(case, frame, len(cohorts))):
        return
    for index, cohort in enumerate(cohorts):
        same_date(case, f"row {index} cohort", frame["cohort"][index], cohort["cohort"])
        for column in HEAD:
            same_value(case, f"row {index} {column}", frame[column][index], cohort[column])
        same_value(case, f"{cohort['cohort']} size", frame["size"][index], cohort["size"])
        for offset in range(width):
            # Past a cohort's last period the cell is empty: no figure.
            expected = cohort["active"][offset] if offset < len(cohort["active"]) else None
            same_value(case, f"{cohort['cohort']} active_{offset}", frame[f"active_{offset}"][index], expected)
            expected = cohort["shares"][offset] if offset < len(cohort["shares"]) else None
            same_value(case, f"{cohort['cohort']} share_{offset}", frame[f"share_{offset}"][index], expected)
    integer_columns_stay_integers(case, frame, ["size"], lambda _: [c["size"] for c in cohorts])


def shift(date_text, interval, offset):
    date = pd.Timestamp(date_text)
    if interval == "week":
        return (date + pd.Timedelta(weeks=offset)).date().isoformat()
    return (date + pd.DateOffset(months=offset)).date().isoformat()


def check_cohorts_long(case, frame, answer):
    expected = [
        (cohort, offset, active, cohort["shares"][offset])
        for cohort in answer["cohorts"]
        for offset, active in enumerate(cohort["active"])
    ]
    columns = ["cohort", *HEAD, "movement", "offset", "period", "size", "active", "share"]
    if not (same_columns(case, frame, columns) and same_length(case, frame, len(expected))):
        return
    for index, (cohort, offset, active, share) in enumerate(expected):
        where = f"{cohort['cohort']} offset {offset}"
        same_date(case, f"{where} cohort", frame["cohort"][index], cohort["cohort"])
        for column in HEAD:
            same_value(case, f"{where} {column}", frame[column][index], cohort[column])
        same_value(case, f"{where} movement", frame["movement"][index], answer["movement"])
        same_value(case, f"{where} offset", frame["offset"][index], offset)
        same_date(case, f"{where} period", frame["period"][index], shift(cohort["cohort"], answer["interval"], offset))
        same_value(case, f"{where} size", frame["size"][index], cohort["size"])
        same_value(case, f"{where} active", frame["active"][index], active)
        same_value(case, f"{where} share", frame["share"][index], share)


def check_principles(case, frame, answer):
    principles = answer["principles"]
    if not (
        same_columns(case, frame, ["principle", "activities", "participants"])
        and same_length(case, frame, len(principles))
    ):
        return
    for index, figures in enumerate(principles):
        for column in ["principle", "activities", "participants"]:
            same_value(case, f"{figures['principle']} {column}", frame[column][index], figures[column])
    integer_columns_stay_integers(
        case, frame, ["activities", "participants"], lambda column: [f[column] for f in principles]
    )


def check_compare_wide(case, frame, answer):
    series = answer["series"]
    movements = [s["movement"] for s in series]
    periods = len(series[0]["values"]) if series else 0
    if not (same_columns(case, frame, ["period", *HEAD, *movements]) and same_length(case, frame, periods)):
        return
    for index in range(periods):
        same_date(case, f"row {index} period", frame["period"][index], series[0]["values"][index]["period"])
        for column in HEAD:
            same_value(case, f"row {index} {column}", frame[column][index], series[0]["values"][index][column])
        for s in series:
            value = s["values"][index]
            same_value(case, f"{value['period']} {s['movement']}", frame[s["movement"]][index], value["value"])


def check_compare_long(case, frame, answer):
    expected = [(s["movement"], value) for s in answer["series"] for value in s["values"]]
    if not (
        same_columns(case, frame, ["period", *HEAD, "movement", "metric", "value"])
        and same_length(case, frame, len(expected))
    ):
        return
    for index, (movement, value) in enumerate(expected):
        same_date(case, f"row {index} period", frame["period"][index], value["period"])
        for column in HEAD:
            same_value(case, f"row {index} {column}", frame[column][index], value[column])
        same_value(case, f"row {index} movement", frame["movement"][index], movement)
        same_value(case, f"row {index} metric", frame["metric"][index], answer["metric"])
        same_value(case, f"{value['period']} {movement}", frame["value"][index], value["value"])


CHECKS = {
    # kind: (check, the columns pandas should parse as dates)
    "trend_wide": (check_trend_wide, ["period"]),
    "trend_long": (check_trend_long, ["period"]),
    "cohorts_wide": (check_cohorts_wide, ["cohort"]),
    "cohorts_long": (check_cohorts_long, ["cohort", "period"]),
    "principles": (check_principles, []),
    "compare_wide": (check_compare_wide, ["period"]),
    "compare_long": (check_compare_long, ["period"]),
}


def main():
    with open(sys.argv[1], encoding="utf-8") as file:
        manifest = json.load(file)
    for case in manifest:
        check, dates = CHECKS[case["kind"]]
        with open(case["json"], encoding="utf-8") as file:
            answer = json.load(file)
        frames = [(case["name"], pd.read_csv(case["csv"], parse_dates=dates))]
        # Parquet's dates are typed already; pandas gives them as dates, which
        # a notebook turns into timestamps as below.
        parquet = pd.read_parquet(case["parquet"])
        schema = pyarrow.parquet.read_schema(case["parquet"])
        for column in dates:
            if str(schema.field(column).type) != "date32[day]":
                fail(case["name"], f"Parquet column {column} is {schema.field(column).type}, not a date")
            parquet[column] = pd.to_datetime(parquet[column])
        if "complete" in schema.names and str(schema.field("complete").type) != "bool":
            fail(case["name"], f"Parquet column complete is {schema.field('complete').type}, not a boolean")
        parquet.attrs["parquet_schema"] = schema
        frames.append((f"{case['name']} (Parquet)", parquet))
        if "url" in case:
            headers = {"Authorization": f"Bearer {case['token']}"}
            frame = pd.read_csv(case["url"], parse_dates=dates, storage_options=headers)
            frames.append((f"{case['name']} (read from its URL)", frame))
        for name, frame in frames:
            before = len(problems)
            check(name, frame, answer)
            if len(problems) == before and len(frame) == 0:
                fail(name, "no rows: the test data should give every read some figures")
    for kind, count in seen.items():
        if count == 0:
            problems.append(f"no {kind} values among the exports: the test data should have some")
    if problems:
        print("\n".join(problems))
        print(f"pandas {pd.__version__}: {len(problems)} differences in {len(manifest)} exports")
        sys.exit(1)
    print(
        f"pandas {pd.__version__}: {checked} values in {len(manifest)} exports equal their JSON "
        f"({seen['null']} nulls, {seen['fraction']} fractions, {seen['date']} dates)"
    )


main()
