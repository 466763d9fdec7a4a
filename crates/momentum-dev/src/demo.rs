//! A demo dataset that looks like real movements: six movements over the
//! last three years, each with its own shape (growth, plateau, decline,
//! revival), with seasonal dips, a long tail of people who come once or twice,
//! regulars who volunteer and some of whom become organisers, partners who
//! join over time, collective actions, sign-ups and a few corrections, posted
//! through the real ingestion API in batches.
//!
//! # The model
//!
//! The data is simulated week by week (weeks start on Monday, 00:00 UTC), and
//! is a pure function of the seed and the week of the end time: [`generate`].
//!
//! - **Shape.** Each movement has a level over the window, piecewise linear
//!   between knots ([`Spec::shape`]); a segment that rises by a quarter or more
//!   is a growth phase, one that falls by a fifth or more a decline, anything
//!   else a plateau ([`phases`]). One movement starts a year in.
//! - **Season.** [`season`] scales each week: about 0.6 in the summer holidays
//!   (22 July to 31 August), 0.35 around Christmas (20 December to 2 January),
//!   1.1 at the September restart, 1 otherwise.
//! - **People.** Each week `arrivals × level × season` newcomers come for the
//!   first time. Each is a drop-in (55%), an occasional (30%) or a regular
//!   (15%). After every participation a person comes back with probability
//!   0.25, 0.6 or 0.93 by type (scaled down by 0.9 in a decline), after a gap
//!   of 2–10, 1–5 or 1–2 weeks; so the number of weeks a person takes part in
//!   is geometric, with means 1.3, 2.5 and 14. About half of all people come
//!   only once (a long tail), and a minority carries most of the activity. A
//!   person due back in a seasonal dip comes with probability `season`, and
//!   otherwise the week after.
//! - **Events.** The people active in a week meet in groups of about ten
//!   (`meeting.held`); volunteers (every regular, some occasionals, every
//!   organiser) log their hours (`volunteer.hours_logged`); some weeks bring a
//!   collective action with a reach (`collective_action.taken`); most newcomers
//!   sign up (`participant.joined`) around their first visit, and some people
//!   sign up and never come.
//! - **Organisers.** Meetings start out run by staff (role `professional`).
//!   Each movement aims at a share of citizen-led meetings that moves over the
//!   window (in `manchester-peer-support`, the "shift control" movement, from
//!   10% to 85%); when it has too few citizen organisers it promotes regulars
//!   who have taken part at least five times over at least eight weeks.
//!   Organisers come back every week with probability 0.97.
//! - **Partners and areas** are unlocked over the window, so partners'
//!   first appearances are spread over the three years.
//! - **Corrections.** About 1% of hour logs and 0.5% of meetings are entered
//!   twice, and the partner retracts the copy a few days later
//!   (`event.retracted`).
//!
//! Event ids are a function of the seed and the event's place in the
//! simulation, so posting the dataset again in the same week posts exactly the
//! same events, each answered `duplicate`, and changes no figure.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Datelike, Duration as Span, NaiveDate, SecondsFormat, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Base URL of the ingestion service.
    #[arg(long, env = "MOMENTUM_INGEST_URL", default_value = "http://127.0.0.1:8080")]
    ingest_url: String,
    /// A token that may post the demo's events (an admin token: the demo
    /// posts for several movements and sources). Not needed when the
    /// ingestion service runs with MOMENTUM_AUTH=off.
    #[arg(long, env = "MOMENTUM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// How many years of data, ending now (about 13 000 events a year).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10))]
    years: u32,
    /// Seed of the generator: the same seed gives the same events.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Events per request (at most 1000, the API's batch limit).
    #[arg(long, default_value_t = 500, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1000))]
    batch_size: usize,
}

/// How often one batch is posted again when ingest answers 429 (over the
/// token's rate) or 503 (NATS not ready yet, as just after the stack
/// starts), each time after the answer's Retry-After clamped to 1..=30 s:
/// at most about an hour for a batch, and in practice a few seconds.
const BUSY_ATTEMPTS_MAX: u32 = 120;

/// A phase of a movement's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    NotStarted,
    Growth,
    Plateau,
    Decline,
}

/// One demo movement.
pub(crate) struct Spec {
    pub movement: &'static str,
    source: &'static str,
    /// (fraction of the window, level): piecewise linear; level 0 before the
    /// movement starts.
    pub shape: &'static [(f64, f64)],
    /// Newcomers a week at level 1, before the season.
    arrivals: f64,
    /// Share of citizen-led meetings and actions aimed at, first and last.
    citizen_led: (f64, f64),
    /// Collective actions a week at level 1.
    actions: f64,
    /// Share of volunteers' weeks with hours only (no meeting): one-to-one work.
    hours_only: f64,
    /// Partner org ids and the fraction of the window at which they join.
    partners: &'static [(&'static str, f64)],
    /// Areas, each unlocked a little later than the one before.
    areas: &'static [&'static str],
    meeting_kinds: &'static [&'static str],
    activities: &'static [&'static str],
    action_kinds: &'static [&'static str],
    principles: &'static [&'static str],
}

pub(crate) const MOVEMENTS: [Spec; 6] = [
    Spec {
        movement: "leeds-walking-groups",
        source: "urn:partner:leeds-mind",
        shape: &[(0.0, 0.25), (0.4, 1.0), (1.0, 1.05)],
        arrivals: 24.0,
        citizen_led: (0.3, 0.6),
        actions: 0.2,
        hours_only: 0.1,
        partners: &[
            ("leeds-city-council", 0.0),
            ("leeds-teaching-hospitals", 0.15),
            ("ramblers-west-yorkshire", 0.35),
            ("leeds-gp-confederation", 0.6),
            ("canal-and-river-trust", 0.85),
        ],
        areas: &["Harehills", "Chapeltown", "Armley", "Beeston", "Headingley", "Roundhay"],
        meeting_kinds: &["walk", "walk", "nordic-walk", "route-planning"],
        activities: &["walk-leading", "route-planning", "first-aid-cover"],
        action_kinds: &["park-clean-up", "safe-crossings-petition", "open-walk-day"],
        principles: &["mobilise_citizens", "grow_from_local", "build_momentum"],
    },
    Spec {
        movement: "bristol-befriending",
        source: "urn:partner:age-uk-bristol",
        shape: &[(0.0, 0.3), (0.3, 1.0), (0.65, 1.0), (1.0, 0.35)],
        arrivals: 18.0,
        citizen_led: (0.2, 0.35),
        actions: 0.1,
        hours_only: 0.5,
        partners: &[
            ("bristol-city-council", 0.0),
            ("north-bristol-nhs-trust", 0.2),
            ("bristol-ageing-better", 0.45),
            ("southmead-development-trust", 0.7),
        ],
        areas: &["Easton", "Bedminster", "Southmead", "Lawrence Hill", "Hartcliffe"],
        meeting_kinds: &["coffee-morning", "phone-circle", "volunteer-training"],
        activities: &["home-visit", "phone-befriending", "training"],
        action_kinds: &["loneliness-awareness-stall", "consultation-response"],
        principles: &["bring_people_together", "collaborate_widely", "change_culture"],
    },
    Spec {
        movement: "hull-community-kitchens",
        source: "urn:partner:hull-food-network",
        shape: &[(0.0, 0.4), (0.25, 1.0), (0.55, 0.45), (0.75, 0.45), (1.0, 1.1)],
        arrivals: 21.0,
        citizen_led: (0.4, 0.6),
        actions: 0.25,
        hours_only: 0.2,
        partners: &[
            ("hull-city-council", 0.0),
            ("fareshare-yorkshire", 0.1),
            ("humber-nhs-trust", 0.5),
            ("hull-foodbank", 0.8),
        ],
        areas: &["Orchard Park", "Bransholme", "Preston Road", "Newington", "Marfleet"],
        meeting_kinds: &["cook-together", "community-meal", "menu-planning"],
        activities: &["cooking", "food-collection", "washing-up"],
        action_kinds: &["food-drive", "school-holiday-meals", "surplus-food-pledge"],
        principles: &["grow_from_local", "mobilise_citizens", "bring_people_together"],
    },
    Spec {
        movement: "manchester-peer-support",
        source: "urn:partner:gm-peer-network",
        shape: &[(0.0, 0.3), (0.5, 0.8), (1.0, 1.3)],
        arrivals: 15.0,
        citizen_led: (0.1, 0.85),
        actions: 0.2,
        hours_only: 0.1,
        partners: &[
            ("manchester-city-council", 0.0),
            ("gm-mental-health-trust", 0.05),
            ("university-of-manchester", 0.4),
            ("gm-combined-authority", 0.75),
        ],
        areas: &["Moss Side", "Levenshulme", "Harpurhey", "Wythenshawe", "Ancoats"],
        meeting_kinds: &["peer-support-circle", "recovery-cafe", "co-production-workshop"],
        activities: &["peer-facilitation", "co-production", "admin"],
        action_kinds: &["service-redesign-consultation", "awareness-walk", "open-letter"],
        principles: &["shift_control", "share_power", "change_culture"],
    },
    Spec {
        movement: "cornwall-mens-sheds",
        source: "urn:partner:cornwall-sheds-network",
        shape: &[(0.0, 0.7), (0.35, 0.8), (0.65, 0.4), (1.0, 0.45)],
        arrivals: 10.0,
        citizen_led: (0.6, 0.8),
        actions: 0.1,
        hours_only: 0.2,
        partners: &[("cornwall-council", 0.0), ("kernow-health-cic", 0.3), ("age-uk-cornwall", 0.55)],
        areas: &["Camborne", "Redruth", "Bodmin", "Penzance", "St Austell"],
        meeting_kinds: &["shed-session", "tool-skills", "cuppa-and-chat"],
        activities: &["woodwork", "repairs", "fundraising"],
        action_kinds: &["benches-for-the-village", "repair-cafe"],
        principles: &["grow_from_local", "bring_people_together", "share_power"],
    },
    Spec {
        movement: "newham-social-prescribing",
        source: "urn:partner:newham-link-workers",
        shape: &[(0.0, 0.0), (0.33, 0.0), (0.33, 0.2), (0.75, 1.3), (1.0, 1.25)],
        arrivals: 21.0,
        citizen_led: (0.05, 0.3),
        actions: 0.15,
        hours_only: 0.15,
        partners: &[
            ("newham-council", 0.33),
            ("east-london-nhs-trust", 0.36),
            ("newham-gp-federation", 0.5),
            ("community-links", 0.65),
            ("west-ham-foundation", 0.9),
        ],
        areas: &["Stratford", "East Ham", "Canning Town", "Forest Gate", "Plaistow", "Beckton"],
        meeting_kinds: &["link-worker-drop-in", "gardening-club", "conversation-cafe"],
        activities: &["gardening", "mentoring", "interpreting"],
        action_kinds: &["community-health-fair", "green-space-campaign"],
        principles: &["collaborate_widely", "mobilise_citizens", "build_momentum"],
    },
];

/// The movement's level at `fraction` (0 at the first week, 1 at the last).
pub(crate) fn level(spec: &Spec, fraction: f64) -> f64 {
    let knots = spec.shape;
    if fraction < knots[0].0 {
        return 0.0;
    }
    for pair in knots.windows(2) {
        let ((from, low), (to, high)) = (pair[0], pair[1]);
        if fraction >= from && fraction < to {
            return low + (high - low) * (fraction - from) / (to - from);
        }
    }
    knots[knots.len() - 1].1
}

/// The phases of a movement's shape: (phase, first fraction, last fraction).
pub(crate) fn phases(spec: &Spec) -> Vec<(Phase, f64, f64)> {
    let mut phases = Vec::new();
    for pair in spec.shape.windows(2) {
        let ((from, low), (to, high)) = (pair[0], pair[1]);
        if to <= from {
            continue;
        }
        let phase = if high == 0.0 {
            Phase::NotStarted
        } else if high >= low * 1.25 {
            Phase::Growth
        } else if high <= low * 0.8 {
            Phase::Decline
        } else {
            Phase::Plateau
        };
        phases.push((phase, from, to));
    }
    phases
}

/// How much of a normal week's activity happens in the week around `date`.
pub(crate) fn season(date: NaiveDate) -> f64 {
    let (month, day) = (date.month(), date.day());
    match (month, day) {
        (12, 20..) | (1, ..=2) => 0.35,
        (7, 22..) | (8, _) => 0.6,
        (9, 3..=30) => 1.1,
        _ => 1.0,
    }
}

/// A small deterministic generator (splitmix64): the demo needs repeatable
/// variety, not statistical quality.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, probability: f64) -> bool {
        self.unit() < probability
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }

    /// Uniform in `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// A whole number with mean `mean`, varying by about ±25%.
    fn count(&mut self, mean: f64) -> usize {
        let value = mean * (0.75 + 0.5 * self.unit());
        let whole = value.floor();
        whole as usize + usize::from(self.chance(value - whole))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    DropIn,
    Occasional,
    Regular,
}

impl Kind {
    /// Probability of coming back after a participation.
    fn comes_back(self) -> f64 {
        match self {
            Kind::DropIn => 0.25,
            Kind::Occasional => 0.6,
            Kind::Regular => 0.93,
        }
    }

    /// The gap, in weeks, before coming back.
    fn gap(self, random: &mut Random) -> u64 {
        match self {
            Kind::DropIn => random.between(2, 10),
            Kind::Occasional => random.between(1, 5),
            Kind::Regular => random.between(1, 2),
        }
    }
}

struct Person {
    reference: String,
    kind: Kind,
    role: &'static str,
    area: &'static str,
    volunteer: bool,
    organiser: bool,
    participations: u32,
    first_week: usize,
}

/// Builds events of one movement.
struct Movement<'a> {
    spec: &'a Spec,
    seed: u64,
    counter: u64,
    start: DateTime<Utc>,
    now: DateTime<Utc>,
    events: Vec<Value>,
}

impl Movement<'_> {
    fn push(&mut self, kind: &str, time: DateTime<Utc>, data: Value) -> String {
        self.counter += 1;
        let short = match kind {
            "participant.joined" => "join",
            "meeting.held" => "meeting",
            "volunteer.hours_logged" => "hours",
            "collective_action.taken" => "action",
            _ => "retraction",
        };
        let id = format!("demo-{}-{short}-{}", self.seed, self.counter);
        // The run-in before the window is left out, and the last week is cut
        // at the end time: nothing from the future.
        if self.start <= time && time <= self.now {
            self.events.push(json!({
                "specversion": "1.0", "id": id, "source": self.spec.source, "type": kind,
                "subject": self.spec.movement,
                "time": time.to_rfc3339_opts(SecondsFormat::Secs, true), "data": data,
            }));
        }
        id
    }

    /// An event entered twice by mistake and the partner's retraction of the
    /// copy, a few days later.
    fn entered_twice(&mut self, random: &mut Random, kind: &str, time: DateTime<Utc>, data: Value) {
        let copy = self.push(kind, time, data);
        // A retraction not due yet is left out: the copy still counts.
        let later = time + Span::hours(random.between(2, 120) as i64);
        let reason = *random.pick(&["entered twice", "duplicate entry", "logged twice by mistake"]);
        self.push("event.retracted", later, json!({ "event_id": copy, "reason": reason }));
    }
}

/// The first Monday of the window of `years` ending in the week of `now`.
pub(crate) fn window_start(years: u32, now: DateTime<Utc>) -> DateTime<Utc> {
    let today = now.date_naive();
    let monday = today - Span::days(i64::from(today.weekday().num_days_from_monday()));
    let first = monday - Span::weeks(52 * i64::from(years));
    first.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
}

/// Weeks simulated before the window, whose events are left out.
const RUN_IN: usize = 26;

/// Generates the dataset of `years` ending at `now`, sorted by time.
pub(crate) fn generate(seed: u64, years: u32, now: DateTime<Utc>) -> Vec<Value> {
    let mut events: Vec<Value> = MOVEMENTS
        .iter()
        .enumerate()
        .flat_map(|(index, spec)| generate_movement(spec, seed, index as u64, years, now))
        .collect();
    events.sort_by(|a, b| a["time"].as_str().cmp(&b["time"].as_str()));
    events
}

fn generate_movement(spec: &Spec, seed: u64, index: u64, years: u32, now: DateTime<Utc>) -> Vec<Value> {
    let mut random = Random(seed ^ (index + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let start = window_start(years, now);
    let weeks = 52 * years as usize + 1;
    let mut movement = Movement { spec, seed, counter: 0, start, now, events: Vec::new() };
    let mut people: Vec<Person> = Vec::new();
    // Who is due back in which week.
    let mut due: Vec<Vec<usize>> = vec![Vec::new(); RUN_IN + weeks + 12];
    let staff: Vec<(String, &str)> = (1..=3)
        .map(|n| (format!("{}-staff-{n}", spec.movement), if n == 3 { "partner_staff" } else { "professional" }))
        .collect();
    let mut next_person = 0u64;
    let mut new_reference = |random: &mut Random| {
        next_person += 1 + random.below(3);
        format!("{}-{next_person}", spec.movement)
    };
    // `week` counts from the start of the run-in, which makes the window's
    // first week look like an ongoing movement rather than an empty one.
    for week in 0..RUN_IN + weeks {
        let fraction = week.saturating_sub(RUN_IN) as f64 / (weeks - 1) as f64;
        let level = level(spec, fraction);
        let week_start = start + Span::weeks(week as i64 - RUN_IN as i64);
        let season = season((week_start + Span::days(3)).date_naive());
        let declining =
            phases(spec).iter().any(|&(phase, from, to)| phase == Phase::Decline && fraction >= from && fraction < to);
        let areas =
            &spec.areas[..(1 + (spec.areas.len() as f64 * (fraction / 0.7).min(1.0)) as usize).min(spec.areas.len())];
        let partners: Vec<&str> =
            spec.partners.iter().filter(|(_, joins)| *joins <= fraction).map(|(partner, _)| *partner).collect();
        let at = |random: &mut Random| {
            week_start
                + Span::days(random.below(6) as i64)
                + Span::hours(random.between(8, 19) as i64)
                + Span::minutes(random.below(60) as i64)
        };

        // Who takes part this week: those due back (unless the season keeps
        // them away, then they come the week after) and the newcomers.
        let mut active: Vec<usize> = Vec::new();
        for person in std::mem::take(&mut due[week]) {
            if random.chance(season) {
                active.push(person);
            } else {
                due[week + 1].push(person);
            }
        }
        if level > 0.0 {
            for _ in 0..random.count(spec.arrivals * level * season) {
                let kind = match random.unit() {
                    u if u < 0.55 => Kind::DropIn,
                    u if u < 0.85 => Kind::Occasional,
                    _ => Kind::Regular,
                };
                let role = match random.unit() {
                    u if u < 0.9 => "citizen",
                    u if u < 0.97 => "professional",
                    _ => "partner_staff",
                };
                let reference = new_reference(&mut random);
                let area = *random.pick(areas);
                let person = Person {
                    reference,
                    kind,
                    role,
                    area,
                    volunteer: kind == Kind::Regular || (kind == Kind::Occasional && random.chance(0.3)),
                    organiser: false,
                    participations: 0,
                    first_week: week,
                };
                if random.chance(0.7) {
                    let time = at(&mut random) - Span::hours(random.below(48) as i64);
                    let channel = *random.pick(&[
                        "word-of-mouth",
                        "word-of-mouth",
                        "gp-referral",
                        "social-media",
                        "community-event",
                        "poster",
                    ]);
                    let data = json!({ "participant": person.reference, "role": role, "area": person.area,
                                       "channel": channel });
                    movement.push("participant.joined", time, data);
                }
                people.push(person);
                active.push(people.len() - 1);
            }
            // Some sign up and never come.
            for _ in 0..random.count(0.1 * spec.arrivals * level * season) {
                let data = json!({ "participant": new_reference(&mut random), "role": "citizen",
                                   "area": *random.pick(areas), "channel": "social-media" });
                movement.push("participant.joined", at(&mut random), data);
            }
        }
        if active.is_empty() {
            continue;
        }
        active.sort_unstable();

        // Citizen organisers: promote regulars while there are too few.
        let citizen_share = spec.citizen_led.0 + (spec.citizen_led.1 - spec.citizen_led.0) * fraction;
        let meetings = active.len().div_ceil(10);
        let wanted = (1.5 * citizen_share * meetings as f64).ceil() as usize + 2;
        let mut organisers: Vec<usize> = active.iter().copied().filter(|&p| people[p].organiser).collect();
        for &candidate in &active {
            if organisers.len() >= wanted {
                break;
            }
            let person = &mut people[candidate];
            if !person.organiser
                && person.kind == Kind::Regular
                && person.role == "citizen"
                && person.participations >= 5
                && week >= person.first_week + 8
                && random.chance(0.6)
            {
                person.organiser = true;
                person.volunteer = true;
                organisers.push(candidate);
            }
        }
        let organiser = |random: &mut Random, organisers: &[usize], people: &[Person]| {
            if !organisers.is_empty() && random.chance(citizen_share) {
                let person = &people[*random.pick(organisers)];
                json!({ "participant": person.reference, "role": "citizen" })
            } else {
                let (reference, role) = random.pick(&staff);
                json!({ "participant": reference, "role": role })
            }
        };

        // Meetings of about ten; some volunteers work one-to-one that week.
        let mut groups: Vec<Vec<&str>> = vec![Vec::new(); meetings];
        for &person in &active {
            let person = &people[person];
            if person.volunteer && !person.organiser && random.chance(spec.hours_only) {
                continue;
            }
            groups[random.below(meetings as u64) as usize].push(&person.reference);
        }
        let mut meeting_events = Vec::new();
        for attendees in groups.iter().filter(|group| !group.is_empty()) {
            let mut tags: Vec<&str> = vec!["bring_people_together"];
            let extra = *random.pick(spec.principles);
            if !tags.contains(&extra) {
                tags.push(extra);
            }
            let mut meeting_partners: Vec<&str> = Vec::new();
            if !partners.is_empty() && random.chance(0.6) {
                meeting_partners.push(*random.pick(&partners));
                if partners.len() > 2 && random.chance(0.3) {
                    let second = *random.pick(&partners);
                    if !meeting_partners.contains(&second) {
                        meeting_partners.push(second);
                    }
                }
            }
            let data = json!({
                "attendees": attendees,
                "organisers": [organiser(&mut random, &organisers, &people)],
                "partners": meeting_partners,
                "area": *random.pick(areas),
                "kind": *random.pick(spec.meeting_kinds),
                "principles": tags,
                "duration_minutes": 60 + 30 * random.below(4),
            });
            meeting_events.push((at(&mut random), data));
        }
        for (time, data) in meeting_events {
            if random.chance(0.005) {
                movement.entered_twice(&mut random, "meeting.held", time, data.clone());
            }
            movement.push("meeting.held", time, data);
        }

        // Volunteers log their hours.
        for &person in &active {
            let person = &people[person];
            if !person.volunteer {
                continue;
            }
            let hours =
                if person.organiser { 0.5 * random.between(4, 10) as f64 } else { 0.5 * random.between(2, 7) as f64 };
            let data = json!({
                "participant": person.reference,
                "hours": hours,
                "activity": *random.pick(spec.activities),
                "area": person.area,
                "principles": [*random.pick(spec.principles)],
            });
            let time = at(&mut random);
            if random.chance(0.01) {
                movement.entered_twice(&mut random, "volunteer.hours_logged", time, data.clone());
            }
            movement.push("volunteer.hours_logged", time, data);
        }

        // Now and then a collective action.
        if random.chance(spec.actions * level * season) {
            let participants: Vec<&str> =
                active.iter().filter(|_| random.chance(0.4)).map(|&person| people[person].reference.as_str()).collect();
            let reach = 10 * random.between(5, 40) * (1 + random.below(10)) * participants.len().max(1) as u64;
            let mut tags = vec!["mobilise_citizens"];
            let extra = *random.pick(spec.principles);
            if extra != "mobilise_citizens" {
                tags.push(extra);
            }
            let data = json!({
                "participants": participants,
                "organisers": [organiser(&mut random, &organisers, &people)],
                "reach": reach,
                "kind": *random.pick(spec.action_kinds),
                "partners": partners.iter().filter(|_| random.chance(0.5)).collect::<Vec<_>>(),
                "area": *random.pick(areas),
                "principles": tags,
            });
            movement.push("collective_action.taken", at(&mut random), data);
        }

        // Who comes back, and when.
        for &person in &active {
            let person_index = person;
            let person = &mut people[person_index];
            person.participations += 1;
            let mut comes_back = if person.organiser { 0.97 } else { person.kind.comes_back() };
            if declining {
                comes_back *= 0.9;
            }
            if random.chance(comes_back) {
                let gap = if person.organiser { 1 } else { person.kind.gap(&mut random) } as usize;
                if week + gap < due.len() {
                    due[week + gap].push(person_index);
                }
            }
        }
    }
    movement.events
}

pub(crate) async fn run(arguments: DemoArgs) -> anyhow::Result<()> {
    if arguments.batch_size == 0 || arguments.batch_size > 1000 {
        bail!("--batch-size must be between 1 and 1000");
    }
    let events = generate(arguments.seed, arguments.years, Utc::now());
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let url = format!("{}/v1/events", arguments.ingest_url.trim_end_matches('/'));
    let (mut accepted, mut duplicates, mut rejected, mut max_seq) = (0u64, 0u64, 0u64, 0u64);
    let total = events.len();
    let on_terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let movements: HashSet<&str> = events.iter().filter_map(|event| event["subject"].as_str()).collect();
    eprintln!("{total} events of {} movements over {} years", movements.len(), arguments.years);
    for (index, batch) in events.chunks(arguments.batch_size).enumerate() {
        let body = Value::from(batch.to_vec()).to_string();
        let mut attempts = 0;
        let body: Value = loop {
            let mut request = client.post(&url);
            if let Some(token) = &arguments.token {
                request = request.bearer_auth(token);
            }
            let response = request
                .header("content-type", "application/cloudevents-batch+json")
                .body(body.clone())
                .send()
                .await
                .with_context(|| format!("could not reach the ingestion service at {url}"))?;
            let status = response.status();
            // Over the token's rate (429) or NATS slow (503): wait as told and
            // post the same batch again, which is always safe.
            attempts += 1;
            if (status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE)
                && attempts < BUSY_ATTEMPTS_MAX
            {
                let wait = response
                    .headers()
                    .get("retry-after")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse::<u64>().ok())
                    .unwrap_or(1)
                    .clamp(1, 30);
                // Rate limiting is expected while the demo posts; say only
                // when the service is not ready.
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    eprintln!("\ningest answered {status}; posting the batch again in {wait} s");
                }
                tokio::time::sleep(Duration::from_secs(wait)).await;
                continue;
            }
            let text = response.text().await.context("the ingestion service's answer broke off")?;
            if !status.is_success() {
                bail!("the ingestion service answered {status}: {text}");
            }
            break serde_json::from_str(&text)
                .with_context(|| format!("the ingestion service answered {status} with no JSON"))?;
        };
        accepted += body["accepted"].as_u64().unwrap_or(0);
        duplicates += body["duplicates"].as_u64().unwrap_or(0);
        rejected += body["rejected"].as_u64().unwrap_or(0);
        max_seq = max_seq.max(body["max_seq"].as_u64().unwrap_or(0));
        let posted = (index * arguments.batch_size + batch.len()).min(total);
        if on_terminal {
            eprint!("\rposted {posted}/{total} events");
        } else if posted == total || (index + 1) % 20 == 0 {
            // One line every 20 batches in logs, where \r would garble them.
            eprintln!("posted {posted}/{total} events");
        }
    }
    if on_terminal {
        eprintln!();
    }
    println!("{accepted} accepted, {duplicates} duplicates, {rejected} rejected; last stream sequence {max_seq}");
    if rejected > 0 {
        bail!("{rejected} demo events were rejected; the generator and the schemas disagree");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet, HashMap};
    use std::sync::OnceLock;

    use momentum_domain::ledger::{FoldSettings, Ledger};
    use momentum_domain::query::{self, Metric, ReadSettings, TrendRequest};
    use momentum_domain::{Interval, Validator};

    use super::*;

    const SEED: u64 = 2026;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-18T15:30:00Z").unwrap().with_timezone(&Utc)
    }

    /// The default dataset, validated and folded once for every test.
    struct Folded {
        events: Vec<Value>,
        state: Ledger,
    }

    fn folded() -> &'static Folded {
        static FOLDED: OnceLock<Folded> = OnceLock::new();
        FOLDED.get_or_init(|| {
            let events = generate(SEED, 3, now());
            let validator = Validator::new().unwrap();
            let mut state = Ledger::default();
            let settings = FoldSettings::default();
            for (index, event) in events.iter().enumerate() {
                let event = match validator.validate(event, now()) {
                    Ok(event) => event,
                    Err(errors) => panic!("{event} is invalid: {errors:?}"),
                };
                state.apply(&settings, &event, index as u64 + 1);
            }
            Folded { events, state }
        })
    }

    /// The weekly values of `metric` of `movement`, by week start.
    fn weekly(movement: &str, metric: Metric) -> Vec<(NaiveDate, f64)> {
        let range = query::DateRange::new(window_start(3, now()).date_naive(), now().date_naive()).expect("in order");
        let request = TrendRequest {
            movement: query::MovementId::parse(movement).expect("a movement id"),
            periods: query::Periods::new(Interval::Week, range).expect("a readable range"),
            metrics: Some(vec![metric]),
            filter: Default::default(),
            split: None,
            today: None,
        };
        let trend = query::trend(
            &folded().state,
            &request,
            &ReadSettings { volunteer_hour_value: query::VolunteerHourValue::custom(11.27) },
        )
        .unwrap_or_else(|_| panic!("a trend of {movement}"));
        trend.series.iter().map(|row| (row.period, row.get(metric).and_then(Value::as_f64).unwrap_or(0.0))).collect()
    }

    fn mean(values: impl IntoIterator<Item = f64>) -> f64 {
        let (sum, count) = values.into_iter().fold((0.0, 0usize), |(sum, count), value| (sum + value, count + 1));
        sum / count.max(1) as f64
    }

    /// Participant refs of an event's participation, with its time.
    fn participants(event: &Value) -> Vec<&str> {
        let data = &event["data"];
        let refs = |field: &str| data[field].as_array().into_iter().flatten().filter_map(Value::as_str);
        let organisers = data["organisers"].as_array().into_iter().flatten().filter_map(|o| o["participant"].as_str());
        match event["type"].as_str().unwrap() {
            "meeting.held" => refs("attendees").chain(organisers).collect(),
            "collective_action.taken" => refs("participants").chain(organisers).collect(),
            "volunteer.hours_logged" => data["participant"].as_str().into_iter().collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn every_generated_event_passes_validation_and_ids_are_unique_per_source() {
        let events = &folded().events;
        let mut ids: Vec<(&str, &str)> =
            events.iter().map(|event| (event["source"].as_str().unwrap(), event["id"].as_str().unwrap())).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), events.len());
        assert!(
            events
                .iter()
                .all(|event| event["time"].as_str().unwrap()
                    <= now().to_rfc3339_opts(SecondsFormat::Secs, true).as_str())
        );
    }

    #[test]
    fn the_default_dataset_has_six_movements_and_thirty_to_sixty_thousand_events() {
        let events = &folded().events;
        assert!((30_000..=60_000).contains(&events.len()), "{} events", events.len());
        let mut per_movement: BTreeMap<&str, usize> = BTreeMap::new();
        for event in events {
            *per_movement.entry(event["subject"].as_str().unwrap()).or_default() += 1;
        }
        assert_eq!(per_movement.len(), 6, "{per_movement:?}");
        assert!(per_movement.values().all(|&count| count > 1000), "{per_movement:?}");
        for kind in [
            "participant.joined",
            "meeting.held",
            "volunteer.hours_logged",
            "collective_action.taken",
            "event.retracted",
        ] {
            let count = events.iter().filter(|event| event["type"] == kind).count();
            assert!(count >= 50, "{count} of {kind}");
        }
    }

    #[test]
    fn the_same_seed_and_week_give_the_same_events_and_another_seed_others() {
        let earlier = now() - Span::hours(50);
        let (all, partial) = (generate(SEED, 1, now()), generate(SEED, 1, earlier));
        assert_eq!(all, generate(SEED, 1, now()));
        assert_ne!(all, generate(SEED + 1, 1, now()));
        // Earlier in the same week, the dataset is what of it had happened.
        let cut: Vec<&Value> = all
            .iter()
            .filter(|event| {
                event["time"].as_str().unwrap() <= earlier.to_rfc3339_opts(SecondsFormat::Secs, true).as_str()
            })
            .collect();
        assert!(partial.len() < all.len());
        assert_eq!(partial.iter().collect::<Vec<_>>(), cut);
    }

    #[test]
    fn active_participants_rise_in_each_growth_phase_and_fall_in_each_decline() {
        let mut checked = 0;
        for spec in &MOVEMENTS {
            let series = weekly(spec.movement, Metric::ActiveParticipants);
            let last = (series.len() - 1) as f64;
            for (phase, from, to) in phases(spec) {
                let weeks: Vec<f64> = series
                    .iter()
                    .enumerate()
                    .filter(|(week, _)| (from..to).contains(&(*week as f64 / last)))
                    .map(|(_, (date, active))| active / season(*date + Span::days(3)))
                    .collect();
                let quarter = weeks.len() / 4;
                let (first, final_) = (mean(weeks[..quarter].to_vec()), mean(weeks[weeks.len() - quarter..].to_vec()));
                match phase {
                    Phase::Growth => {
                        assert!(final_ > first * 1.15, "{} grows: {first:.1} → {final_:.1}", spec.movement)
                    }
                    Phase::Decline => {
                        assert!(final_ < first * 0.85, "{} declines: {first:.1} → {final_:.1}", spec.movement)
                    }
                    Phase::NotStarted => assert_eq!(final_, 0.0, "{} has not started", spec.movement),
                    Phase::Plateau => continue,
                }
                checked += 1;
            }
        }
        assert!(checked >= 9, "{checked} phases checked");
    }

    #[test]
    fn august_and_christmas_weeks_are_below_their_neighbours_on_average() {
        let (mut august, mut summer_neighbours, mut christmas, mut winter_neighbours) =
            (vec![], vec![], vec![], vec![]);
        for spec in &MOVEMENTS {
            for (week, active) in weekly(spec.movement, Metric::ActiveParticipants) {
                if active == 0.0 {
                    continue;
                }
                let middle = week + Span::days(3);
                match (middle.month(), middle.day()) {
                    (8, _) => august.push(active),
                    (6, 15..) | (7, ..=14) | (9, 8..) | (10, ..=7) => summer_neighbours.push(active),
                    (12, 21..) | (1, ..=3) => christmas.push(active),
                    (11, 25..) | (12, ..=14) | (1, 10..=31) => winter_neighbours.push(active),
                    _ => {}
                }
            }
        }
        let (august, summer_neighbours) = (mean(august), mean(summer_neighbours));
        let (christmas, winter_neighbours) = (mean(christmas), mean(winter_neighbours));
        assert!(august < 0.85 * summer_neighbours, "August {august:.1}, around it {summer_neighbours:.1}");
        assert!(christmas < 0.6 * winter_neighbours, "Christmas {christmas:.1}, around it {winter_neighbours:.1}");
    }

    #[test]
    fn about_half_of_all_participants_come_only_once_and_a_minority_carries_most_activity() {
        let mut weeks_of: HashMap<&str, BTreeSet<String>> = HashMap::new();
        for event in &folded().events {
            let week = &event["time"].as_str().unwrap()[..10];
            let week = NaiveDate::parse_from_str(week, "%Y-%m-%d").unwrap().iso_week();
            for participant in participants(event) {
                weeks_of.entry(participant).or_default().insert(format!("{week:?}"));
            }
        }
        let people = weeks_of.len() as f64;
        let once = weeks_of.values().filter(|weeks| weeks.len() == 1).count() as f64;
        assert!((0.4..=0.7).contains(&(once / people)), "{once} of {people} came only once");
        let mut counts: Vec<usize> = weeks_of.values().map(BTreeSet::len).collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let top_fifth: usize = counts[..counts.len() / 5].iter().sum();
        let total: usize = counts.iter().sum();
        assert!(top_fifth as f64 > 0.5 * total as f64, "the top fifth has {top_fifth} of {total} active weeks");
    }

    #[test]
    fn citizen_organisers_first_organise_well_after_they_first_took_part() {
        let mut first_part: HashMap<&str, &str> = HashMap::new();
        let mut first_organised: HashMap<&str, &str> = HashMap::new();
        for event in &folded().events {
            let time = event["time"].as_str().unwrap();
            let data = &event["data"];
            for attendee in data["attendees"].as_array().into_iter().chain(data["participants"].as_array()).flatten() {
                first_part.entry(attendee.as_str().unwrap()).or_insert(time);
            }
            if let Some(participant) = data["participant"].as_str()
                && event["type"] == "volunteer.hours_logged"
            {
                first_part.entry(participant).or_insert(time);
            }
            for organiser in data["organisers"].as_array().into_iter().flatten() {
                if organiser["role"] == "citizen" {
                    first_organised.entry(organiser["participant"].as_str().unwrap()).or_insert(time);
                }
            }
        }
        // People seen in the window's first half year may have come before it.
        let newcomers = (window_start(3, now()) + Span::weeks(26)).to_rfc3339_opts(SecondsFormat::Secs, true);
        first_organised
            .retain(|organiser, _| first_part.get(organiser).is_some_and(|&time| time >= newcomers.as_str()));
        assert!(first_organised.len() >= 30, "{} citizen organisers", first_organised.len());
        for (organiser, organised) in &first_organised {
            let took_part = first_part.get(organiser).expect("organisers took part before");
            let gap =
                DateTime::parse_from_rfc3339(organised).unwrap() - DateTime::parse_from_rfc3339(took_part).unwrap();
            assert!(gap >= Span::weeks(7), "{organiser} took part at {took_part} and organised at {organised}");
        }
    }

    #[test]
    fn the_shift_control_movement_becomes_citizen_led() {
        let shares: Vec<f64> =
            weekly("manchester-peer-support", Metric::CitizenLedShare).into_iter().map(|(_, share)| share).collect();
        let (first, last) = (mean(shares[..26].to_vec()), mean(shares[shares.len() - 26..].to_vec()));
        assert!(first < 0.3 && last > 0.7, "citizen-led share {first:.2} → {last:.2}");
        let organisers = weekly("manchester-peer-support", Metric::Organisers);
        let (first, last) =
            (mean(organisers[..26].iter().map(|w| w.1)), mean(organisers[organisers.len() - 26..].iter().map(|w| w.1)));
        assert!(last > 2.0 * first, "organisers a week {first:.1} → {last:.1}");
    }

    #[test]
    fn partners_first_appear_throughout_the_three_years() {
        let start = window_start(3, now());
        let mut first: HashMap<(&str, &str), &str> = HashMap::new();
        for event in &folded().events {
            for partner in event["data"]["partners"].as_array().into_iter().flatten() {
                first
                    .entry((event["subject"].as_str().unwrap(), partner.as_str().unwrap()))
                    .or_insert(event["time"].as_str().unwrap());
            }
        }
        let mut years = [0; 3];
        for time in first.values() {
            let year = (DateTime::parse_from_rfc3339(time).unwrap().with_timezone(&Utc) - start).num_weeks() / 52;
            years[year.min(2) as usize] += 1;
        }
        assert_eq!(first.len(), MOVEMENTS.iter().map(|spec| spec.partners.len()).sum::<usize>());
        assert!(years.iter().all(|&count| count >= 4), "partners first seen per year: {years:?}");
        let partners = weekly("leeds-walking-groups", Metric::Partners);
        let (first, last) =
            (mean(partners[..26].iter().map(|w| w.1)), mean(partners[partners.len() - 26..].iter().map(|w| w.1)));
        assert!(last > first + 1.0, "partners a week {first:.1} → {last:.1}");
    }

    #[test]
    fn retractions_withdraw_exactly_the_double_entries() {
        let events = &folded().events;
        let retracted: BTreeSet<(&str, &str)> = events
            .iter()
            .filter(|event| event["type"] == "event.retracted")
            .map(|event| (event["source"].as_str().unwrap(), event["data"]["event_id"].as_str().unwrap()))
            .collect();
        let by_id: HashMap<(&str, &str), &Value> = events
            .iter()
            .map(|event| ((event["source"].as_str().unwrap(), event["id"].as_str().unwrap()), event))
            .collect();
        for target in &retracted {
            let copy = by_id.get(target).expect("a retraction names an event of the dataset");
            let twin =
                events.iter().filter(|event| event["data"] == copy["data"] && event["time"] == copy["time"]).count();
            assert_eq!(twin, 2, "the retracted event was entered twice: {copy}");
        }
        for spec in &MOVEMENTS {
            let logged: f64 = events
                .iter()
                .filter(|event| event["subject"] == spec.movement && event["type"] == "volunteer.hours_logged")
                .filter(|event| {
                    !retracted.contains(&(event["source"].as_str().unwrap(), event["id"].as_str().unwrap()))
                })
                .map(|event| event["data"]["hours"].as_f64().unwrap())
                .sum();
            let folded: f64 = weekly(spec.movement, Metric::VolunteerHours).iter().map(|w| w.1).sum();
            assert!((logged - folded).abs() < 0.01, "{}: {logged} logged, {folded} counted", spec.movement);
        }
    }
}
