//! Exports read by a real consumer, and the interactive API documents.
//!
//! Every read's CSV and Parquet (wide and long) are downloaded with its JSON
//! and handed to `tests/exports/check_with_pandas.py`, which reads them with a
//! plain `pandas.read_csv` and `pandas.read_parquet` (pyarrow), as an
//! evaluator's notebook would, and compares every
//! value with the JSON: nulls are NaN, dates parse as dates, numbers are
//! exactly equal. pandas comes from `scripts/ensure-pandas.sh` (pinned, in a
//! virtualenv under `.tools/`; `scripts/test.sh` installs it first). If it
//! cannot be had, the test fails and says why: it never skips.
//!
//! `/docs` on both services is Swagger UI, served from the binary without a
//! token; the page must load nothing from another host.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use momentum_tests::{TestStack, event};
use serde_json::{Value, json};

const ALPHA: &str = "alpha-walks";
const BETA: &str = "beta-gardens";
const FROM: &str = "2026-03-02";
const TO: &str = "2026-04-12";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Six weeks of two movements: meetings, volunteer hours with fractions,
/// actions with reach, sign-ups, principles, quiet weeks (zeros and nulls),
/// people who come back and people who do not.
fn events() -> Vec<Value> {
    let mut events = Vec::new();
    let mut id = 0;
    let mut add = |movement: &str, kind: &str, time: &str, data: Value| {
        id += 1;
        events.push(event(&format!("e{id}"), kind, movement, time, data));
    };
    let organiser = |who: &str| json!([{ "participant": who, "role": "citizen" }]);
    for (movement, people) in [(ALPHA, ["a", "b", "c", "d", "e", "f"]), (BETA, ["p", "q", "r", "s", "t", "u"])] {
        for person in &people[..4] {
            let data = json!({ "participant": person, "role": "citizen", "area": "north" });
            add(movement, "participant.joined", "2026-03-02T09:00:00Z", data);
        }
        add(
            movement,
            "participant.joined",
            "2026-03-17T09:00:00Z",
            json!({ "participant": people[4], "role": "professional" }),
        );
        add(
            movement,
            "meeting.held",
            "2026-03-03T18:00:00Z",
            json!({ "attendees": &people[..3], "organisers": organiser(people[3]), "partners": ["org-1"],
                    "area": "north", "principles": ["bring_people_together", "grow_from_local"], "duration_minutes": 90 }),
        );
        add(
            movement,
            "volunteer.hours_logged",
            "2026-03-04T10:00:00Z",
            json!({ "participant": people[0], "hours": 2.5 }),
        );
        add(
            movement,
            "volunteer.hours_logged",
            "2026-03-05T10:00:00Z",
            json!({ "participant": people[1], "hours": 0.1, "principles": ["share_power"] }),
        );
        // Week 2 is quiet. Week 3: some come back, one newcomer.
        add(
            movement,
            "meeting.held",
            "2026-03-17T18:00:00Z",
            json!({ "attendees": [people[0], people[4]], "organisers": organiser(people[0]),
                    "principles": ["shift_control"] }),
        );
        add(
            movement,
            "collective_action.taken",
            "2026-03-19T11:00:00+00:00",
            json!({ "participants": [people[0], people[1], people[5]], "organisers": organiser(people[1]),
                    "reach": 250, "area": "south", "principles": ["mobilise_citizens"] }),
        );
        add(
            movement,
            "volunteer.hours_logged",
            "2026-03-20T10:00:00Z",
            json!({ "participant": people[5], "hours": 1.0 / 3.0 }),
        );
        // Week 5 (across the change to summer time) and week 6.
        add(
            movement,
            "volunteer.hours_logged",
            "2026-03-29T22:30:00Z",
            json!({ "participant": people[2], "hours": 7.25 }),
        );
        add(
            movement,
            "meeting.held",
            "2026-04-07T18:00:00Z",
            json!({ "attendees": [people[1], people[2], people[3]], "organisers": organiser(people[2]) }),
        );
    }
    // Beta only: more in week 6, so the two movements differ.
    add(BETA, "volunteer.hours_logged", "2026-04-08T10:00:00Z", json!({ "participant": "v", "hours": 12.75 }));
    events
}

/// One read, downloaded as JSON, as CSV and as Parquet.
struct Export {
    name: &'static str,
    kind: &'static str,
    path: String,
    /// Ask for CSV and Parquet with `Accept` instead of `format`.
    by_accept: bool,
}

async fn download(stack: &TestStack, export: &Export, folder: &Path) -> Value {
    let url = format!("{}{}", stack.query_url, export.path);
    let json = stack.http.get(&url).bearer_auth(&stack.admin_token).send().await.unwrap();
    assert_eq!(json.status(), 200, "{}", export.path);
    let json = json.text().await.unwrap();
    let (csv_url, accept) =
        if export.by_accept { (url.clone(), "text/csv") } else { (format!("{url}&format=csv"), "*/*") };
    let csv = stack.http.get(&csv_url).bearer_auth(&stack.admin_token).header("accept", accept).send().await.unwrap();
    assert_eq!(csv.status(), 200, "{csv_url}");
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8", "{csv_url}");
    let csv = csv.text().await.unwrap();
    let (parquet_url, accept) = if export.by_accept {
        (url.clone(), "application/vnd.apache.parquet")
    } else {
        (format!("{url}&format=parquet"), "*/*")
    };
    let parquet =
        stack.http.get(&parquet_url).bearer_auth(&stack.admin_token).header("accept", accept).send().await.unwrap();
    assert_eq!(parquet.status(), 200, "{parquet_url}");
    assert_eq!(parquet.headers()["content-type"], "application/vnd.apache.parquet", "{parquet_url}");
    let parquet = parquet.bytes().await.unwrap();
    let path = |extension: &str| folder.join(format!("{}.{extension}", export.name));
    let (json_path, csv_path, parquet_path) = (path("json"), path("csv"), path("parquet"));
    std::fs::write(&json_path, json).unwrap();
    std::fs::write(&csv_path, csv).unwrap();
    std::fs::write(&parquet_path, parquet).unwrap();
    let mut case = json!({ "name": export.name, "kind": export.kind, "json": json_path, "csv": csv_path,
        "parquet": parquet_path });
    if !export.by_accept {
        // pandas also reads it from the service itself, token in a header.
        case["url"] = json!(csv_url);
        case["token"] = json!(stack.admin_token);
    }
    case
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pandas_reads_every_csv_and_parquet_export_with_exactly_the_values_of_the_json() {
    let python = tokio::task::spawn_blocking(|| momentum_tests::pinned_python("ensure-pandas.sh")).await.unwrap();
    let stack = TestStack::start().await;
    let (status, body) = stack.post_batch(&events()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rejected"], 0, "{body}");
    let max_seq = body["max_seq"].as_u64().unwrap();
    stack.weekly_trend(ALPHA, FROM, TO, max_seq).await;

    let range = format!("from={FROM}&to={TO}");
    let trend = |movement: &str, interval: &str| format!("/v1/movements/{movement}/trends?interval={interval}&{range}");
    let exports = [
        Export { name: "alpha-trend-week-wide", kind: "trend_wide", path: trend(ALPHA, "week"), by_accept: true },
        Export {
            name: "alpha-trend-week-long",
            kind: "trend_long",
            path: format!("{}&layout=long", trend(ALPHA, "week")),
            by_accept: false,
        },
        Export { name: "beta-trend-day-wide", kind: "trend_wide", path: trend(BETA, "day"), by_accept: false },
        Export {
            name: "alpha-trend-week-by-role-wide",
            kind: "trend_wide",
            path: format!("{}&by=role&top=3", trend(ALPHA, "week")),
            by_accept: false,
        },
        Export {
            name: "alpha-trend-week-by-role-long",
            kind: "trend_long",
            path: format!("{}&by=role&layout=long&metrics=active_participants,new_participants", trend(ALPHA, "week")),
            by_accept: false,
        },
        Export {
            name: "beta-trend-month-long",
            kind: "trend_long",
            path: format!("{}&layout=long&metrics=volunteer_hours,retention_rate,momentum", trend(BETA, "month")),
            by_accept: true,
        },
        Export {
            name: "alpha-cohorts-week-wide",
            kind: "cohorts_wide",
            path: format!("/v1/movements/{ALPHA}/cohorts?interval=week&{range}"),
            by_accept: false,
        },
        Export {
            name: "alpha-cohorts-week-long",
            kind: "cohorts_long",
            path: format!("/v1/movements/{ALPHA}/cohorts?interval=week&{range}&layout=long"),
            by_accept: true,
        },
        Export {
            name: "beta-cohorts-month-long",
            kind: "cohorts_long",
            path: format!("/v1/movements/{BETA}/cohorts?interval=month&{range}&layout=long"),
            by_accept: false,
        },
        Export {
            name: "alpha-principles",
            kind: "principles",
            path: format!("/v1/movements/{ALPHA}/principles?{range}"),
            by_accept: false,
        },
        Export {
            name: "compare-hours-wide",
            kind: "compare_wide",
            path: format!("/v1/compare?metric=volunteer_hours&interval=week&movements={ALPHA},{BETA}&{range}"),
            by_accept: true,
        },
        Export {
            name: "compare-retention-long",
            kind: "compare_long",
            path: format!(
                "/v1/compare?metric=retention_rate&interval=week&movements={ALPHA},{BETA}&{range}&layout=long"
            ),
            by_accept: false,
        },
    ];
    let folder = tempfile::tempdir().unwrap();
    let mut manifest = Vec::new();
    for export in &exports {
        manifest.push(download(&stack, export, folder.path()).await);
    }
    let manifest_path = folder.path().join("manifest.json");
    std::fs::write(&manifest_path, Value::from(manifest).to_string()).unwrap();

    let script = root().join("tests/exports/check_with_pandas.py");
    let output = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(&manifest_path)
        // The stack is on 127.0.0.1: never through a proxy.
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), output).await.expect("pandas finishes").unwrap();
    stack.stop().await;
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    println!("{report}");
    assert!(output.status.success(), "pandas read something other than the JSON holds:\n{report}");
    assert!(report.contains("equal their JSON"), "{report}");
}

/// The `src` of every `<script>` and the `href` of every `<link>` of a page.
fn script_and_stylesheet_urls(html: &str) -> Vec<String> {
    let mut urls = Vec::new();
    for (tag, attribute) in [("<script", "src="), ("<link", "href=")] {
        for start in html.match_indices(tag).map(|(index, _)| index) {
            let element = &html[start..start + html[start..].find('>').expect("a closed tag")];
            if let Some(at) = element.find(attribute) {
                let rest = element[at + attribute.len()..].trim_start_matches(['"', '\'']);
                urls.push(rest.split(['"', '\'', ' ']).next().unwrap_or_default().to_owned());
            }
        }
    }
    urls
}

#[tokio::test]
async fn both_services_serve_their_api_documents_page_without_a_token_and_without_other_hosts() {
    let stack = TestStack::start().await;
    for base in [&stack.ingest_url, &stack.query_url] {
        let response = stack.http.get(format!("{base}/docs")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{base}/docs needs no token");
        let page = response.url().clone();
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        let html = response.text().await.unwrap();
        assert!(html.contains("swagger-ui"), "{html}");
        let urls = script_and_stylesheet_urls(&html);
        assert!(urls.len() >= 3, "the page loads its script and styles: {urls:?}");
        for url in &urls {
            assert!(!url.contains("//"), "{page} loads {url} from another host");
        }
        // Every asset the page names is served, from here.
        for url in &urls {
            let asset = stack.http.get(page.join(url).unwrap()).send().await.unwrap();
            assert_eq!(asset.status(), 200, "{url} of {page}");
            let body = asset.text().await.unwrap();
            assert!(!body.is_empty(), "{url} of {page}");
            if url.contains("initializer") {
                assert!(body.contains("/openapi.json"), "the page shows this service's document: {body}");
                assert!(!body.contains("http://") && !body.contains("https://"), "{body}");
            }
        }
        // The page shows the document that names the bearer scheme, which is
        // what Swagger UI's "Authorize" button asks a token for.
        let document: Value =
            stack.http.get(format!("{base}/openapi.json")).send().await.unwrap().json().await.unwrap();
        assert_eq!(document["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    }
    stack.stop().await;
}
