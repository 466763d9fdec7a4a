"""Checks an open-data package the way its users would, and prints what it
found as JSON, for tests/open_data.rs to compare with the service's answers.

    check_open_data.py validate PACKAGE.zip   frictionless validates the package
    check_open_data.py read PACKAGE.zip       pandas opens every CSV it lists

`validate` runs with the pinned `frictionless` (scripts/ensure-frictionless.sh)
and prints {"valid", "errors", "license", "resources", "descriptions",
"watermark"}; `read` runs with pandas (scripts/ensure-pandas.sh) and prints
{"rows": {resource: row count}, "monthly": [rows of the monthly trend],
"readme": the README's text}.
"""
import json
import sys
import tempfile
import zipfile

mode, package = sys.argv[1], sys.argv[2]
folder = tempfile.mkdtemp()
with zipfile.ZipFile(package) as archive:
    archive.extractall(folder)
with open(f"{folder}/datapackage.json", encoding="utf-8") as file:
    descriptor = json.load(file)

if mode == "validate":
    import frictionless

    report = frictionless.validate(f"{folder}/datapackage.json")
    errors = [error["message"] for task in report.to_dict().get("tasks", []) for error in task.get("errors", [])]
    errors += [error["message"] for error in report.to_dict().get("errors", [])]
    print(json.dumps({
        "valid": report.valid,
        "errors": errors[:20],
        "license": descriptor["licenses"][0]["name"],
        "resources": [resource["name"] for resource in descriptor["resources"]],
        "descriptions": {
            field["name"]: field["description"]
            for resource in descriptor["resources"] if resource["name"] == "trends-monthly"
            for field in resource["schema"]["fields"]
        },
        "watermark": descriptor["momentum"]["watermark"],
    }))
elif mode == "read":
    import pandas as pd

    frames = {
        resource["name"]: pd.read_csv(f"{folder}/{resource['path']}", parse_dates=[
            field["name"] for field in resource["schema"]["fields"] if field["type"] == "date"
        ])
        for resource in descriptor["resources"]
    }
    monthly = frames["trends-monthly"]
    print(json.dumps({
        "rows": {name: len(frame) for name, frame in frames.items()},
        "monthly": [
            {
                "period": row["period"].date().isoformat(),
                "meetings": int(row["meetings"]),
                "active_participants": None if pd.isna(row["active_participants"]) else int(row["active_participants"]),
            }
            for _, row in monthly.iterrows()
        ],
        "readme": open(f"{folder}/README.md", encoding="utf-8").read(),
    }))
else:
    sys.exit(f"unknown mode {mode}")
