//! Projection scale-out: projectors that each fold a partition of the
//! movements, two replicas per partition, as real processes, behind a query
//! service that routes each read to the partition that owns its movement.

use std::path::Path;
use std::time::Duration;

use momentum_bus::Partition;
use momentum_testkit::{ChildProcess, workspace_binary};
use momentum_tests::{
    TestStack, action, assert_ledgers_equal, event, fold_stream_from_scratch, hours, meeting, query_config, spawn_query,
};
use serde_json::{Value, json};

const PARTITIONS: u32 = 2;

/// A projector process folding `partition` into `data`.
fn spawn_partition_replica(nats_url: &str, partition: Partition, data: &Path) -> ChildProcess {
    ChildProcess::spawn(
        std::process::Command::new(workspace_binary("momentum-projector"))
            .env("MOMENTUM_NATS_URL", nats_url)
            .env("MOMENTUM_PARTITION", partition.to_string())
            .env("MOMENTUM_DATA_DIR", data)
            .env("MOMENTUM_HTTP_ADDR", "127.0.0.1:0")
            // The same value as the test stack's own projector, whose
            // answers are the reference.
            .env("MOMENTUM_VOLUNTEER_HOUR_VALUE_GBP", "10")
            .env("MOMENTUM_BATCH_SIZE_MAX", "50")
            .env("RUST_LOG", "warn"),
    )
}

/// `count` movement ids owned by each of the partitions, in turn.
fn movements_per_partition(count: usize) -> Vec<String> {
    let mut chosen = Vec::new();
    for index in 0..PARTITIONS {
        let owned = (0..)
            .map(|number| format!("town-{number}"))
            .filter(|movement| Partition::of(movement, PARTITIONS).unwrap().index() == index)
            .take(count);
        chosen.extend(owned);
    }
    chosen
}

/// A deterministic mix of meetings, hours and actions over twelve weeks of
/// 2026 in the given movements, with participants shared between events.
fn events(movements: &[String], prefix: &str, count: usize) -> Vec<Value> {
    let mut seed: u64 = 0x5eed ^ prefix.len() as u64;
    let mut next = move |bound: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % bound
    };
    (0..count)
        .map(|index| {
            let movement = &movements[next(movements.len() as u64) as usize];
            let day = 5 + next(84);
            let time = format!("2026-{:02}-{:02}T10:00:00Z", 1 + day / 28, 1 + day % 28);
            let person = |number: u64| format!("person-{number}");
            let id = format!("{prefix}-{index}");
            match next(3) {
                0 => {
                    let attendees: Vec<String> = (0..1 + next(6)).map(|_| person(next(40))).collect();
                    let attendees: Vec<&str> = attendees.iter().map(String::as_str).collect();
                    meeting(&id, movement, &time, &attendees, &person(next(5)))
                }
                1 => hours(&id, movement, &time, &person(next(40)), 0.5 + next(8) as f64 / 2.0),
                _ => action(&id, movement, &time, &[&person(next(40)), &person(next(40))], 10 * next(50)),
            }
        })
        .collect()
}

async fn post_all(stack: &TestStack, events: &[Value]) -> u64 {
    let mut max_seq = 0;
    for batch in events.chunks(100) {
        let (status, body) = stack.post_batch(batch).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["rejected"], 0, "{body}");
        max_seq = max_seq.max(body["max_seq"].as_u64().unwrap_or(0));
    }
    max_seq
}

async fn get(http: &reqwest::Client, base: &str, path: &str) -> (u16, Value) {
    let response = http.get(format!("{base}{path}")).bearer_auth(momentum_tests::ADMIN_TOKEN).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A read's answer without its watermark, which is each projector's own.
fn without_watermark(mut answer: Value) -> Value {
    if let Some(object) = answer.as_object_mut() {
        object.remove("watermark");
    }
    answer
}

/// Asserts that every read of the partitioned query service equals the
/// same read of the unpartitioned projector, watermarks aside.
async fn assert_reads_agree(stack: &TestStack, partitioned: &str, movements: &[String], min_seq: u64) {
    let mut paths = vec![
        format!("/v1/movements?min_seq={min_seq}"),
        format!(
            "/v1/compare?movements={}&metric=active_participants&interval=week&from=2026-01-01&to=2026-04-30&min_seq={min_seq}",
            movements.join(",")
        ),
    ];
    for movement in movements {
        paths.push(format!(
            "/v1/movements/{movement}/trends?interval=week&from=2026-01-01&to=2026-04-30&min_seq={min_seq}"
        ));
        paths.push(format!("/v1/movements/{movement}/cohorts?interval=month&from=2026-01-01&to=2026-04-30"));
        paths.push(format!("/v1/movements/{movement}/principles?from=2026-01-01&to=2026-04-30"));
    }
    for path in paths {
        let (status, expected) = get(&stack.http, &stack.query_url, &path).await;
        assert_eq!(status, 200, "the reference read {path}: {expected}");
        let (status, actual) = get(&stack.http, partitioned, &path).await;
        assert_eq!(status, 200, "the partitioned read {path}: {actual}");
        assert_eq!(without_watermark(actual), without_watermark(expected), "{path}");
    }
    // The events export, from the partition that owns each movement.
    for movement in movements {
        let path = format!("/v1/movements/{movement}/events?limit=10000&min_seq={min_seq}");
        let read = |base: &str| {
            let request = stack.http.get(format!("{base}{path}")).bearer_auth(momentum_tests::ADMIN_TOKEN);
            async move { request.send().await.unwrap().text().await.unwrap() }
        };
        let expected = read(&stack.query_url).await;
        assert!(expected.lines().count() > 10, "{path}: {expected}");
        assert_eq!(read(partitioned).await, expected, "{path}");
    }
    // Partners' event statuses, from every partition at once: an id posted
    // to movements of both partitions is in both.
    let ids = ["shared-id", "history-7", "undo-1", "history-1", "never-posted"];
    let body = json!({ "source": "urn:test:partner", "ids": ids });
    let statuses = |base: &str| {
        let url = format!("{base}/v1/events/status?min_seq={min_seq}");
        let request = stack.http.post(url).bearer_auth(momentum_tests::ADMIN_TOKEN).json(&body);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let expected = without_watermark(statuses(&stack.query_url).await);
    assert_eq!(expected["events"][0]["id"], "shared-id");
    assert_eq!(expected["events"][1]["id"], "shared-id", "in two movements: {expected}");
    assert_eq!(without_watermark(statuses(partitioned).await), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_partitions_of_two_replicas_fold_every_movement_as_one_projector_and_answer_after_losing_a_replica() {
    // The stack's own projector folds everything and answers the plain
    // query subjects: its answers are the reference.
    let stack = TestStack::start().await;
    let mut partitioned_config = query_config(&stack.nats.url());
    partitioned_config.partitions = PARTITIONS;
    let (partitioned_query, partitioned) = spawn_query(&partitioned_config).await;
    let movements = movements_per_partition(3);

    // History first, so that the replicas catch up from sequence 1.
    let mut history = events(&movements, "history", 400);
    // The same (source, id) in two movements of different partitions is
    // two events, whichever projector folds them.
    history.push(hours("shared-id", &movements[0], "2026-02-02T10:00:00Z", "person-1", 2.0));
    history.push(hours("shared-id", &movements[3], "2026-02-02T10:00:00Z", "person-1", 3.0));
    history.push(event(
        "undo-1",
        "event.retracted",
        &movements[4],
        "2026-02-03T10:00:00Z",
        json!({ "event_id": "history-7" }),
    ));
    let history_seq = post_all(&stack, &history).await;

    let folders: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let partitions = Partition::all(PARTITIONS).unwrap();
    let mut replicas: Vec<ChildProcess> = folders
        .iter()
        .enumerate()
        .map(|(index, folder)| spawn_partition_replica(&stack.nats.url(), partitions[index % 2], folder.path()))
        .collect();

    // Every partition answers once it has caught up; until then the
    // partitioned status is a 503.
    let status_path = format!("/v1/status?min_seq={history_seq}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = get(&stack.http, &partitioned, &status_path).await;
        if status == 200 {
            assert!(body["watermark"].as_u64().unwrap() >= history_seq, "{body}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the partitions never caught up: {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_reads_agree(&stack, &partitioned, &movements, history_seq).await;

    // A sequence of one partition's movement is covered by the other
    // partition as soon as it has nothing of its own left to read.
    let (status, body) =
        stack.post_event(&hours("late-1", &movements[0], "2026-03-02T10:00:00Z", "person-9", 1.0)).await;
    assert_eq!(status, 202, "{body}");
    let other_partition_seq = body["seq"].as_u64().unwrap();
    let path =
        format!("/v1/movements/{}/trends?from=2026-03-02&to=2026-03-08&min_seq={other_partition_seq}", movements[5]);
    let (status, body) = get(&stack.http, &partitioned, &path).await;
    assert_eq!(status, 200, "a read of partition 1 waiting for an event of partition 0: {body}");

    // Losing one replica of each partition (SIGKILL) leaves the other
    // answering, and folding what arrives next.
    replicas[0].kill();
    replicas[3].kill();
    let live_seq = post_all(&stack, &events(&movements, "live", 200)).await;
    for _ in 0..3 {
        assert_reads_agree(&stack, &partitioned, &movements, live_seq).await;
    }

    // What the surviving replicas stored is, together, the whole stream
    // folded from scratch: each movement's entries in exactly one of them.
    for index in [1, 2] {
        let exit = replicas[index].terminate(Duration::from_secs(20)).expect("the replica exits on SIGTERM");
        assert!(exit.success(), "{exit}");
    }
    let nats = async_nats::connect(stack.nats.url()).await.unwrap();
    let reference = fold_stream_from_scratch(&nats).await;
    let stored: Vec<momentum_domain::ledger::Ledger> =
        [1, 2].map(|index| momentum_store::Store::open(folders[index].path()).unwrap().load_ledger().unwrap()).into();
    for (index, ledger) in stored.iter().enumerate() {
        assert!(ledger.movements().count() > 1, "replica {index} folded its movements");
    }
    // Each movement in exactly one of them: a movement in both would be
    // an extra one in assert_ledgers_equal's count.
    let together: Vec<_> = stored.iter().flat_map(|ledger| ledger.movements()).collect();
    let distinct: std::collections::BTreeSet<&str> = together.iter().map(|(movement, _)| *movement).collect();
    assert_eq!(distinct.len(), together.len(), "a movement stored by both partitions");
    assert_ledgers_equal(together, &reference, "the partitions' stores and the stream folded whole");
    partitioned_query.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn a_partitioned_projector_refuses_a_stream_with_events_from_before_subjects_had_slots_and_an_unpartitioned_one_folds_it()
 {
    let stack = TestStack::start().await;
    let nats = async_nats::connect(stack.nats.url()).await.unwrap();
    let jetstream = async_nats::jetstream::new(nats);
    let old = hours("old-1", "leeds", "2026-03-02T10:00:00Z", "person-1", 1.0);
    let stored = jetstream.publish("momentum.events.leeds.volunteer.hours_logged", old.to_string().into()).await;
    stored.unwrap().await.expect("the old-style event is stored");

    let folder = tempfile::tempdir().unwrap();
    let mut config = momentum_tests::projector_config(&stack.nats.url(), folder.path().to_owned());
    config.partition = Partition::new(0, 2).unwrap();
    let error = momentum_projector::Projector::start(&config).await.err().expect("the projector refuses to start");
    assert!(error.to_string().contains("momentum.events.leeds.volunteer.hours_logged"), "{error}");
    assert!(error.to_string().contains("--partition 0/1"), "{error}");
    // Unpartitioned, the projector folds it.
    let trend = stack.weekly_trend("leeds", "2026-03-02", "2026-03-02", 1).await;
    assert_eq!(momentum_tests::row(&trend, "2026-03-02")["volunteer_hours"], 1.0, "{trend}");
    stack.stop().await;
}
