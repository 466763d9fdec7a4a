//! A demo dataset: a few movements over recent weeks, growing, with
//! meetings, volunteer hours, collective actions, sign-ups and the odd
//! retraction, posted through the real ingestion API in batches.
//!
//! Event ids are a function of the seed and the event's position, so posting
//! the same dataset again is answered `duplicate` and changes no figure.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Duration as Span, Utc};
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Base URL of the ingestion service.
    #[arg(long, env = "MOMENTUM_INGEST_URL", default_value = "http://127.0.0.1:8080")]
    ingest_url: String,
    /// A token that may post the demo's events (an admin token: the demo
    /// posts for several movements and sources). Not needed when the
    /// ingestion service runs with MOMENTUM_AUTH=off.
    #[arg(long, env = "MOMENTUM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// How many weeks back from now the data starts.
    #[arg(long, default_value_t = 26)]
    weeks: u32,
    /// Seed of the generator: the same seed gives the same events.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Events per request (at most 1000, the API's batch limit).
    #[arg(long, default_value_t = 500)]
    batch_size: usize,
}

const MOVEMENTS: [(&str, &str, &[&str]); 3] = [
    ("leeds-walking-groups", "urn:partner:leeds-mind", &["Harehills", "Chapeltown", "Armley"]),
    ("bristol-befriending", "urn:partner:age-uk-bristol", &["Easton", "Bedminster", "Southmead"]),
    ("hull-community-kitchens", "urn:partner:hull-food-network", &["Orchard Park", "Bransholme"]),
];
const PRINCIPLES: [&str; 8] = [
    "mobilise_citizens",
    "shift_control",
    "collaborate_widely",
    "share_power",
    "change_culture",
    "grow_from_local",
    "build_momentum",
    "bring_people_together",
];

/// A small deterministic generator (xorshift64*): the demo needs
/// repeatable variety, not statistical quality.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Generates the dataset for weeks ending at `now`.
pub fn generate(seed: u64, weeks: u32, now: DateTime<Utc>) -> Vec<Value> {
    let mut random = Random(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let start = now - Span::weeks(i64::from(weeks));
    let mut events = Vec::new();
    for (movement_index, (movement, source, areas)) in MOVEMENTS.iter().enumerate() {
        let mut counter = 0u64;
        let mut next_id = |kind: &str| {
            counter += 1;
            format!("demo-{seed}-{movement_index}-{kind}-{counter}")
        };
        let mut hours_ids = Vec::new();
        for week in 0..weeks {
            // Each movement grows: its pool of people widens week by week.
            let pool = 12 + u64::from(week) * (3 + movement_index as u64);
            let person = |random: &mut Random| format!("{movement}-person-{}", random.below(pool));
            let week_start = start + Span::weeks(i64::from(week));
            let at = |random: &mut Random| {
                let time = week_start + Span::minutes(random.below(7 * 24 * 60) as i64);
                time.min(now).to_rfc3339()
            };
            let envelope = |id: String, kind: &str, time: String, data: Value| {
                json!({
                    "specversion": "1.0", "id": id, "source": source, "type": kind,
                    "subject": movement, "time": time, "data": data,
                })
            };
            for _ in 0..(2 + random.below(4)) {
                let data = json!({
                    "participant": format!("{movement}-person-{}", pool + random.below(3 + u64::from(week))),
                    "role": *random.pick(&["citizen", "citizen", "citizen", "professional", "partner_staff"]),
                    "area": *random.pick(areas),
                    "channel": *random.pick(&["word-of-mouth", "gp-referral", "social-media", "event"]),
                });
                events.push(envelope(next_id("join"), "participant.joined", at(&mut random), data));
            }
            for _ in 0..(1 + random.below(3)) {
                let attendees: BTreeSet<String> = (0..(4 + random.below(14))).map(|_| person(&mut random)).collect();
                let data = json!({
                    "attendees": attendees,
                    "organisers": [{ "participant": person(&mut random),
                                     "role": *random.pick(&["citizen", "citizen", "professional"]) }],
                    "partners": [*random.pick(&["nhs-trust", "city-council", "gp-federation", "housing-association"])],
                    "area": *random.pick(areas),
                    "kind": *random.pick(&["planning", "walk", "cook-together", "drop-in"]),
                    "principles": [*random.pick(&PRINCIPLES[..7]), "bring_people_together"],
                    "duration_minutes": 60 + 15 * random.below(5),
                });
                events.push(envelope(next_id("meeting"), "meeting.held", at(&mut random), data));
            }
            for _ in 0..(8 + random.below(16)) {
                let id = next_id("hours");
                hours_ids.push(id.clone());
                let data = json!({
                    "participant": person(&mut random),
                    "hours": 0.5 * (1 + random.below(8)) as f64,
                    "activity": *random.pick(&["befriending", "cooking", "walk-leading", "admin"]),
                    "area": *random.pick(areas),
                    "principles": [*random.pick(&PRINCIPLES)],
                });
                events.push(envelope(id, "volunteer.hours_logged", at(&mut random), data));
            }
            if random.below(3) == 0 {
                let participants: BTreeSet<String> = (0..(5 + random.below(25))).map(|_| person(&mut random)).collect();
                let data = json!({
                    "participants": participants,
                    "organisers": [{ "participant": person(&mut random), "role": "citizen" }],
                    "reach": 50 + random.below(2000),
                    "kind": *random.pick(&["petition", "clean-up", "stall", "consultation-response"]),
                    "partners": ["city-council"],
                    "area": *random.pick(areas),
                    "principles": ["mobilise_citizens", "share_power"],
                });
                events.push(envelope(next_id("action"), "collective_action.taken", at(&mut random), data));
            }
            // Now and then a partner withdraws an hour log entered twice.
            if random.below(4) == 0 && !hours_ids.is_empty() {
                let target = hours_ids[random.below(hours_ids.len() as u64) as usize].clone();
                let data = json!({ "event_id": target, "reason": "entered twice" });
                events.push(envelope(next_id("retraction"), "event.retracted", at(&mut random), data));
            }
        }
    }
    events
}

pub async fn run(arguments: DemoArgs) -> anyhow::Result<()> {
    if arguments.batch_size == 0 || arguments.batch_size > 1000 {
        bail!("--batch-size must be between 1 and 1000");
    }
    let events = generate(arguments.seed, arguments.weeks, Utc::now());
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let url = format!("{}/v1/events", arguments.ingest_url.trim_end_matches('/'));
    let (mut accepted, mut duplicates, mut rejected, mut max_seq) = (0u64, 0u64, 0u64, 0u64);
    let total = events.len();
    for (index, batch) in events.chunks(arguments.batch_size).enumerate() {
        let mut request = client.post(&url);
        if let Some(token) = &arguments.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .header("content-type", "application/cloudevents-batch+json")
            .body(Value::from(batch.to_vec()).to_string())
            .send()
            .await
            .with_context(|| format!("could not reach the ingestion service at {url}"))?;
        let status = response.status();
        let body: Value = response.json().await.context("the ingestion service answered with no JSON")?;
        if !status.is_success() {
            bail!("the ingestion service answered {status}: {body}");
        }
        accepted += body["accepted"].as_u64().unwrap_or(0);
        duplicates += body["duplicates"].as_u64().unwrap_or(0);
        rejected += body["rejected"].as_u64().unwrap_or(0);
        max_seq = max_seq.max(body["max_seq"].as_u64().unwrap_or(0));
        let posted = (index * arguments.batch_size + batch.len()).min(total);
        eprint!("\rposted {posted}/{total} events");
    }
    eprintln!();
    println!("{accepted} accepted, {duplicates} duplicates, {rejected} rejected; last stream sequence {max_seq}");
    if rejected > 0 {
        bail!("{rejected} demo events were rejected; the generator and the schemas disagree");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_generated_event_passes_validation_and_ids_are_unique() {
        let now = DateTime::parse_from_rfc3339("2026-06-01T12:00:00Z").unwrap().with_timezone(&Utc);
        let events = generate(7, 8, now);
        assert!(events.len() > 100);
        let validator = momentum_domain::Validator::new().unwrap();
        for event in &events {
            if let Err(errors) = validator.validate(event, now) {
                panic!("{event} is invalid: {errors:?}");
            }
        }
        let mut ids: Vec<&str> = events.iter().map(|event| event["id"].as_str().unwrap()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), events.len());
    }

    #[test]
    fn the_same_seed_gives_the_same_events() {
        let now = DateTime::parse_from_rfc3339("2026-06-01T12:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(generate(7, 4, now), generate(7, 4, now));
        assert_ne!(generate(7, 4, now), generate(8, 4, now));
    }
}
