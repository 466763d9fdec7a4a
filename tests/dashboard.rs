//! The evaluators' dashboard in a real browser: the real stack, real events,
//! then `tests/browser/dashboard.mjs` drives Debian's headless Chromium
//! (through playwright-core) over the pages and checks every charted number
//! against the API, a control change, an event that arrives while the page
//! is open, `#token=` links, 401 and 403. Screenshots land in
//! `target/dashboard-screenshots/`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use momentum_tests::{ADMIN_TOKEN, EVALUATOR_TOKEN, TestStack, event, hours, meeting, row};
use serde_json::{Value, json};

const FROM: &str = "2026-09-01";
const TO: &str = "2026-10-31";

fn browser_folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// Chromium, node and playwright-core, or a failure that says how to get them.
fn require_browser() -> PathBuf {
    let chromium = PathBuf::from(std::env::var("MOMENTUM_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned()));
    assert!(
        chromium.exists(),
        "the dashboard test needs Chromium at {}: `apt-get install -y chromium` (scripts/test.sh installs it), \
         or set MOMENTUM_CHROMIUM",
        chromium.display()
    );
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|output| output.status.success()),
        "the dashboard test needs Node.js 20 or newer on PATH: `apt-get install -y nodejs npm`"
    );
    assert!(
        browser_folder().join("node_modules/playwright-core/package.json").exists(),
        "the dashboard test needs playwright-core in tests/browser/node_modules: `npm ci --prefix tests/browser` \
         (scripts/test.sh runs it)"
    );
    chromium
}

fn screenshot_folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard-screenshots")
}

/// Six weeks of meetings, volunteer hours and actions for `alpha`, tagged
/// with principles, partners and areas; weekly meetings for `beta`.
fn events() -> Vec<Value> {
    let mut events = Vec::new();
    let days = ["07", "14", "21", "28"].map(|day| format!("2026-09-{day}")).into_iter().chain(
        ["05", "12"].map(|day| format!("2026-10-{day}")), //
    );
    for (week, day) in days.enumerate() {
        let attendees: Vec<String> = (0..3 + week % 3).map(|person| format!("a-{}", person + week / 2)).collect();
        events.push(event(
            &format!("meeting-{week}"),
            "meeting.held",
            "alpha",
            &format!("{day}T18:00:00Z"),
            json!({
                "attendees": attendees,
                "organisers": [{ "participant": "a-0", "role": "citizen" }],
                "partners": ["leeds-council"],
                "area": "harehills",
                "principles": ["mobilise_citizens", "bring_people_together"],
            }),
        ));
        events.push(hours(&format!("hours-{week}"), "alpha", &format!("{day}T10:00:00Z"), "a-1", 2.5));
        events.push(event(
            &format!("action-{week}"),
            "collective_action.taken",
            "alpha",
            &format!("{day}T12:00:00Z"),
            json!({
                "participants": ["a-1", "a-2"],
                "organisers": [{ "participant": "a-2", "role": "professional" }],
                "reach": 40 + week,
                "partners": ["nhs-leeds"],
                "area": "chapeltown",
                "principles": ["change_culture"],
            }),
        ));
        let attendees = ["b-1", "b-2", "b-3", "b-4"];
        events.push(meeting(&format!("beta-meeting-{week}"), "beta", &format!("{day}T19:00:00Z"), &attendees, "b-1"));
    }
    events
}

#[tokio::test]
async fn the_dashboard_shows_the_api_figures_live_in_a_real_browser() {
    let _heavy = momentum_tests::one_heavy_test_at_a_time().await;
    let chromium = require_browser();
    let stack = TestStack::start().await;
    let (status, answer) = stack.post_batch(&events()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["rejected"], 0, "{answer}");
    let max_seq = answer["max_seq"].as_u64().expect("a max_seq");

    // The figures the browser will be checked against, by hand.
    let trend = stack.weekly_trend("alpha", FROM, TO, max_seq).await;
    let week = row(&trend, "2026-09-07");
    assert_eq!((week["meetings"].as_i64(), week["collective_actions"].as_i64()), (Some(1), Some(1)));
    assert_eq!((week["people_reached"].as_i64(), week["volunteer_hours"].as_f64()), (Some(40), Some(2.5)));
    assert_eq!(row(&trend, "2026-10-19")["meetings"], 0, "the week the live event will land in");

    // The page and its assets need no token.
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/movements/alpha", "text/html; charset=utf-8"),
        ("/assets/dashboard.js", "text/javascript; charset=utf-8"),
        ("/assets/vendor/uplot-1.6.32/uPlot.iife.min.js", "text/javascript; charset=utf-8"),
    ] {
        let response = stack.http.get(format!("{}{path}", stack.query_url)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], content_type, "{path}");
    }

    let handshake = tempfile::tempdir().unwrap();
    let log_path = handshake.path().join("browser.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut browser = tokio::process::Command::new("node")
        .arg("dashboard.mjs")
        .args([&stack.query_url, EVALUATOR_TOKEN, "--admin-token", ADMIN_TOKEN, "--from", FROM, "--to", TO])
        .arg("--screenshots")
        .arg(screenshot_folder())
        .arg("--handshake")
        .arg(handshake.path())
        .arg("--chromium")
        .arg(&chromium)
        .current_dir(browser_folder())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let browser_log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    // Once the page shows its first figures, post one more meeting in the range.
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut posted = false;
    let exit = loop {
        if let Some(exit) = browser.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "the browser test did not finish in time:\n{}", browser_log());
        if !posted && handshake.path().join("ready").exists() {
            let live = meeting("meeting-live", "alpha", "2026-10-20T18:00:00Z", &["a-9", "a-10"], "a-0");
            let (status, answer) = stack.post_event(&live).await;
            assert_eq!(status, 202, "{answer}");
            let seq = answer["seq"].as_u64().unwrap();
            let file = handshake.path().join("posted");
            std::fs::write(file.with_extension("tmp"), json!({ "seq": seq }).to_string()).unwrap();
            std::fs::rename(file.with_extension("tmp"), file).unwrap();
            posted = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(exit.success(), "the browser checks failed ({exit}):\n{}", browser_log());
    println!("{}", browser_log());
    assert!(posted, "the browser never asked for the live event");
    for name in ["alpha.png", "overview.png"] {
        assert!(screenshot_folder().join(name).exists(), "no screenshot {name}");
    }
    stack.stop().await;
}
