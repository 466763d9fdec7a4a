"""The bench's peer (`momentum-dev bench`, stage 8): DuckDB loads the event
stream, exported as NDJSON, and computes every movement's weekly figures
for nine trend metrics, from the definitions in docs/metrics.md.

usage: bench_peer.py EVENTS.ndjson OUT.json TIME_ZONE

Writes {"load_seconds", "compute_seconds", "figures": {movement: {week:
[active_participants, new_participants, joined, meetings, attendances,
volunteer_millihours, collective_actions, people_reached, organisers]}}}.
Each line of the input is one stored event, in stream order.
"""

import json
import sys
import time

import duckdb

METRICS = [
    "active_participants",
    "new_participants",
    "joined",
    "meetings",
    "attendances",
    "volunteer_millihours",
    "collective_actions",
    "people_reached",
    "organisers",
]

COMPUTE = """
-- Each (movement, source, id) once: its first arrival.
CREATE TEMP TABLE distinct_events AS
SELECT * FROM stored QUALIFY row_number() OVER (PARTITION BY subject, source, id ORDER BY seq) = 1;

-- Minus the events a retraction of the same source and movement names
-- (a retraction or an erasure is never counted, nor is its retraction).
CREATE TEMP TABLE effective AS
SELECT e.*, date_trunc('week', e.time::DATE)::DATE AS week
FROM distinct_events e
WHERE e.type NOT IN ('event.retracted', 'participant.erased')
  AND NOT EXISTS (
    SELECT 1 FROM distinct_events r
    WHERE r.type = 'event.retracted' AND r.subject = e.subject AND r.source = e.source
      AND json_extract_string(r.data, '$.event_id') = e.id);

-- People of each activity: attendees, participants, an hour log's
-- participant, and organisers (flagged).
CREATE TEMP TABLE takings AS
SELECT seq, subject, week, type, person, max(organiser) AS organiser FROM (
  SELECT seq, subject, week, type, unnest(from_json(data->'attendees', '["VARCHAR"]')) AS person, false AS organiser
    FROM effective WHERE type = 'meeting.held'
  UNION ALL
  SELECT seq, subject, week, type, unnest(from_json(data->'participants', '["VARCHAR"]')), false
    FROM effective WHERE type = 'collective_action.taken'
  UNION ALL
  SELECT seq, subject, week, type, json_extract_string(data, '$.participant'), false
    FROM effective WHERE type = 'volunteer.hours_logged'
  UNION ALL
  SELECT seq, subject, week, type, unnest(from_json(data->'organisers', '[{"participant":"VARCHAR"}]')).participant, true
    FROM effective WHERE type IN ('meeting.held', 'collective_action.taken')
) GROUP BY seq, subject, week, type, person;

CREATE TEMP TABLE firsts AS
SELECT subject, person, min(week) AS week FROM takings GROUP BY subject, person;

SELECT w.subject, w.week,
  coalesce(a.active, 0), coalesce(n.new, 0), w.joined, w.meetings, coalesce(t.attendances, 0),
  w.millihours, w.actions, w.reached, coalesce(a.organisers, 0)
FROM (
  SELECT subject, week,
    count(*) FILTER (WHERE type = 'participant.joined') AS joined,
    count(*) FILTER (WHERE type = 'meeting.held') AS meetings,
    coalesce(sum(round((data->>'hours')::DOUBLE * 1000)::BIGINT) FILTER (WHERE type = 'volunteer.hours_logged'), 0)
      AS millihours,
    count(*) FILTER (WHERE type = 'collective_action.taken') AS actions,
    coalesce(sum((data->>'reach')::BIGINT) FILTER (WHERE type = 'collective_action.taken'), 0) AS reached
  FROM effective GROUP BY subject, week
) w
LEFT JOIN (
  SELECT subject, week, count(DISTINCT person) AS active,
    count(DISTINCT person) FILTER (WHERE organiser) AS organisers
  FROM takings GROUP BY subject, week
) a USING (subject, week)
LEFT JOIN (SELECT subject, week, count(*) AS new FROM firsts GROUP BY subject, week) n USING (subject, week)
LEFT JOIN (
  SELECT subject, week, count(*) AS attendances FROM takings WHERE type = 'meeting.held' GROUP BY subject, week
) t USING (subject, week)
"""


def main() -> None:
    events, out, time_zone = sys.argv[1], sys.argv[2], sys.argv[3]
    connection = duckdb.connect()
    connection.execute(f"SET TimeZone = '{time_zone}'")
    started = time.perf_counter()
    connection.execute(
        """
        CREATE TEMP TABLE stored AS
        SELECT row_number() OVER () AS seq, * FROM read_json(?, format = 'newline_delimited',
          columns = {id: 'VARCHAR', source: 'VARCHAR', type: 'VARCHAR', subject: 'VARCHAR',
                     time: 'TIMESTAMPTZ', data: 'JSON'})
        """,
        [events],
    )
    loaded = time.perf_counter()
    *setup, select = [statement for statement in COMPUTE.split(";") if statement.strip()]
    for statement in setup:
        connection.execute(statement)
    rows = connection.execute(select).fetchall()
    computed = time.perf_counter()
    figures: dict = {}
    for movement, week, *values in rows:
        figures.setdefault(movement, {})[week.isoformat()] = [int(value) for value in values]
    with open(out, "w", encoding="utf-8") as file:
        json.dump(
            {
                "metrics": METRICS,
                "load_seconds": loaded - started,
                "compute_seconds": computed - loaded,
                "figures": figures,
            },
            file,
        )


if __name__ == "__main__":
    main()
