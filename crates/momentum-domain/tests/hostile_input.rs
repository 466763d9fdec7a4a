//! Hostile input to the event contract, checked on random values: whatever
//! JSON (or whatever bytes) arrives, validation and reading never panic, a
//! rejection points at something that is really in the event, and an
//! accepted event reads back unchanged from the form it is stored in.

use std::sync::LazyLock;

use chrono::{DateTime, TimeZone, Utc};
use momentum_domain::validation::{ERRORS_PER_EVENT_MAX, normalise_numbers};
use momentum_domain::{Event, FieldError, Validator};
use proptest::prelude::*;
use serde_json::{Number, Value, json};

const VALID: &str = include_str!("../../../schemas/examples/valid.json");

static VALIDATOR: LazyLock<Validator> = LazyLock::new(|| Validator::new().expect("the schemas compile"));
static EXAMPLES: LazyLock<Vec<Value>> = LazyLock::new(|| serde_json::from_str(VALID).expect("the examples are JSON"));

fn checked_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap()
}

// ---------------------------------------------------------------------------
// Strategies

/// Numbers as serde_json holds them: any integer, any finite float, and the
/// edges of the schemas' ranges (whole floats included, which JSON Schema
/// counts as integers).
fn number() -> impl Strategy<Value = Number> {
    use prop::num::f64;
    let floats = (f64::POSITIVE | f64::NEGATIVE | f64::NORMAL | f64::SUBNORMAL | f64::ZERO)
        .prop_map(|float| Number::from_f64(float).expect("a finite float"));
    let special_floats = prop::sample::select(vec![
        0.0,
        -0.0,
        0.5,
        -1.0,
        2.5,
        24.0,
        24.000_000_000_000_004,
        1e-300,
        5e-324,
        1e308,
        -1e308,
        f64::MAX,
        90.0,
        1440.0,
        1e8,
        1e20,
    ])
    .prop_map(|float| Number::from_f64(float).expect("a finite float"));
    let special_integers = prop::sample::select(vec![
        0,
        1,
        -1,
        24,
        25,
        90,
        1000,
        1001,
        1440,
        1441,
        100_000_000,
        100_000_001,
        i64::MIN,
        i64::MAX,
    ]);
    prop_oneof![
        any::<i64>().prop_map(Number::from),
        any::<u64>().prop_map(Number::from),
        floats,
        special_floats,
        special_integers.prop_map(Number::from),
        Just(Number::from(u64::MAX)),
    ]
}

/// Date-time-like strings around RFC 3339: every year from 0000 to 9999,
/// impossible months, days, hours and seconds (60 is a leap second), odd
/// separators and offsets, long fractions.
fn time_text() -> impl Strategy<Value = String> {
    (
        0u32..=9999,
        0u32..=13,
        0u32..=32,
        0u32..=24,
        0u32..=60,
        0u32..=61,
        prop::sample::select(vec!["", ".5", ".123456789", ".1234567891234", "."]),
        prop::sample::select(vec!["T", "t", " ", "_"]),
        prop::sample::select(vec!["Z", "z", "+00:00", "-00:00", "+01:00", "-23:59", "+24:00", "+0100", "+05:30", ""]),
    )
        .prop_map(|(year, month, day, hour, minute, second, fraction, separator, offset)| {
            format!("{year:04}-{month:02}-{day:02}{separator}{hour:02}:{minute:02}:{second:02}{fraction}{offset}")
        })
}

/// Strings: arbitrary Unicode (control characters included), near-misses
/// of valid values, the words the schemas know and characters that mean
/// something to NATS subjects or JSON Pointers.
fn text() -> impl Strategy<Value = String> {
    let special = prop::sample::select(vec![
        "",
        " ",
        "\u{0}",
        "\n",
        "\t",
        "leeds\n",
        "Leeds",
        "le*ds",
        ">",
        "a.b",
        "a b",
        "-leeds",
        "l\u{e9}eds",
        "\u{202e}leeds",
        "\u{feff}",
        "\u{1f4a5}",
        "\u{ff4c}eeds",
        "~",
        "~1",
        "/",
        "a/b",
        "1.0",
        "1.00",
        "citizen",
        "mayor",
        "share_power",
        "p-1042",
        "participant.joined",
        "meeting.held",
        "volunteer.hours_logged",
        "collective_action.taken",
        "event.retracted",
        "meeting.cancelled",
        "application/json",
        "2026-03-04T18:30:00Z",
        "2026-03-04T18:30:00",
        "2026-06-02T00:00:01Z",
        "1899-12-31T23:59:59Z",
        "1900-01-01T00:30:00+01:00",
        "1800-01-01T00:00:00Z",
        "0000-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "+10000-01-01T00:00:00Z",
    ])
    .prop_map(str::to_owned);
    prop_oneof![
        3 => any::<String>(),
        2 => "[a-z0-9-]{0,70}",
        2 => special,
        1 => time_text(),
        1 => (1usize..600).prop_map(|length| "p".repeat(length)),
    ]
}

/// Object keys: the fields the schemas name, keys that need escaping in a
/// JSON Pointer, and anything else.
fn key() -> impl Strategy<Value = String> {
    let known = prop::sample::select(vec![
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "data",
        "datacontenttype",
        "dataschema",
        "participant",
        "role",
        "area",
        "channel",
        "attendees",
        "organisers",
        "partners",
        "kind",
        "principles",
        "duration_minutes",
        "hours",
        "activity",
        "participants",
        "reach",
        "event_id",
        "reason",
        "",
        "~",
        "~0",
        "~1",
        "/",
        "a/b",
        "a~b",
    ])
    .prop_map(str::to_owned);
    prop_oneof![2 => known, 1 => text()]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number().prop_map(Value::Number),
        text().prop_map(Value::String),
    ]
}

/// Any JSON value: leaves, arrays and objects nested a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// An object with the envelope's members, each kept from a valid example,
/// absent, near-valid or arbitrary, plus extra members: random input that
/// also gets past the envelope's schema, and sometimes is a valid event.
fn envelope_like() -> impl Strategy<Value = Value> {
    #[derive(Clone, Debug)]
    enum Member {
        Keep,
        Remove,
        Set(Value),
    }
    let near_valid = prop_oneof![text(), time_text()].prop_map(|text| Member::Set(Value::from(text)));
    let member = prop_oneof![
        6 => Just(Member::Keep),
        1 => Just(Member::Remove),
        1 => near_valid,
        1 => json_value().prop_map(Member::Set),
    ];
    (0..EXAMPLES.len(), prop::collection::vec(member, 7), prop::collection::vec((key(), json_value()), 0..3)).prop_map(
        |(index, members, extra)| {
            let Value::Object(mut object) = EXAMPLES[index].clone() else { unreachable!("examples are objects") };
            let names = ["specversion", "id", "source", "type", "subject", "time", "data"];
            for (name, member) in names.into_iter().zip(members) {
                match member {
                    Member::Keep => {}
                    Member::Remove => {
                        object.remove(name);
                    }
                    Member::Set(value) => {
                        object.insert(name.to_owned(), value);
                    }
                }
            }
            for (name, value) in extra {
                object.entry(name).or_insert(value);
            }
            Value::Object(object)
        },
    )
}

// ---------------------------------------------------------------------------
// JSON Pointers

fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// The pointer of every value inside `value`, not counting the root.
fn pointers(value: &Value, at: &str, into: &mut Vec<String>) {
    let children: Vec<(String, &Value)> = match value {
        Value::Object(members) => {
            members.iter().map(|(name, child)| (format!("{at}/{}", escape(name)), child)).collect()
        }
        Value::Array(items) => {
            items.iter().enumerate().map(|(index, child)| (format!("{at}/{index}"), child)).collect()
        }
        _ => Vec::new(),
    };
    for (pointer, child) in children {
        into.push(pointer.clone());
        pointers(child, &pointer, into);
    }
}

/// The pointer of the object or array holding the value at `pointer`.
fn parent(pointer: &str) -> &str {
    &pointer[..pointer.rfind('/').expect("not the root")]
}

/// `pointer` is `at` or inside it.
fn at_or_inside(pointer: &str, at: &str) -> bool {
    pointer == at || pointer.strip_prefix(at).is_some_and(|rest| rest.starts_with('/'))
}

// ---------------------------------------------------------------------------
// What every answer must satisfy

/// Checks what holds for any answer of the validator to `input`.
fn check_answer(input: &Value, answer: &Result<Event, Vec<FieldError>>) -> Result<(), TestCaseError> {
    match answer {
        Ok(event) => {
            prop_assert_eq!(Some(event.id.as_str()), input["id"].as_str());
            prop_assert_eq!(Some(event.source.as_str()), input["source"].as_str());
            prop_assert_eq!(Some(event.subject.as_str()), input["subject"].as_str());
            prop_assert_eq!(Some(event.kind.as_str()), input["type"].as_str());
            let typed = Event::from_json(&event.to_json());
            prop_assert!(typed.is_ok(), "the typed form does not read back: {:?}", typed);
            prop_assert_eq!(&typed.unwrap(), event, "the typed form reads back as the same event");
            // Ingest stores the event as posted, numbers normalised; the
            // projector reads that.
            let mut stored = input.clone();
            normalise_numbers(&mut stored);
            let stored = Event::from_json(&serde_json::to_vec(&stored).unwrap());
            prop_assert!(stored.is_ok(), "an accepted event's stored form does not read back: {:?}", stored);
            prop_assert_eq!(&stored.unwrap(), event, "the stored form reads back as the same event");
        }
        Err(errors) => {
            prop_assert!(!errors.is_empty(), "a rejection gives a reason");
            prop_assert!(errors.len() <= ERRORS_PER_EVENT_MAX, "{} errors", errors.len());
            for error in errors {
                prop_assert!(
                    error.pointer.is_empty() || error.pointer.starts_with('/'),
                    "{:?} is not a JSON Pointer",
                    error.pointer
                );
                prop_assert!(
                    input.pointer(&error.pointer).is_some(),
                    "{:?} does not resolve in the input; errors {:?}",
                    error.pointer,
                    errors
                );
                prop_assert!(!error.message.is_empty(), "an error at {:?} says nothing", error.pointer);
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Mutations of valid events

#[derive(Clone, Debug)]
enum Mutation {
    /// The value at the pointer becomes another value.
    Replace(String, Value),
    /// The member or item at the pointer is removed.
    Remove(String),
    /// New members are added to the object at the pointer.
    Add(String, Vec<(String, Value)>),
}

fn mutated_event() -> impl Strategy<Value = (Value, Mutation)> {
    (0..EXAMPLES.len()).prop_flat_map(|index| {
        let example = EXAMPLES[index].clone();
        let mut fields = Vec::new();
        pointers(&example, "", &mut fields);
        let mut objects = vec![String::new()];
        objects.extend(fields.iter().filter(|pointer| example.pointer(pointer).is_some_and(Value::is_object)).cloned());
        let mutation = prop_oneof![
            4 => (prop::sample::select(fields.clone()), prop_oneof![json_value(), leaf()])
                .prop_map(|(pointer, value)| Mutation::Replace(pointer, value)),
            2 => prop::sample::select(fields).prop_map(Mutation::Remove),
            2 => (prop::sample::select(objects), prop::collection::vec((key(), json_value()), 1..4))
                .prop_map(|(pointer, members)| Mutation::Add(pointer, members)),
        ];
        (Just(example), mutation)
    })
}

fn apply(mut event: Value, mutation: &Mutation) -> Value {
    match mutation {
        Mutation::Replace(pointer, value) => {
            *event.pointer_mut(pointer).expect("a field of the example") = value.clone()
        }
        Mutation::Remove(pointer) => {
            let token = &pointer[pointer.rfind('/').expect("not the root") + 1..];
            match event.pointer_mut(parent(pointer)).expect("the field's parent") {
                Value::Object(members) => {
                    members.remove(&token.replace("~1", "/").replace("~0", "~"));
                }
                Value::Array(items) => {
                    items.remove(token.parse::<usize>().expect("an index"));
                }
                _ => unreachable!("only objects and arrays have fields"),
            }
        }
        Mutation::Add(pointer, members) => {
            let object = event.pointer_mut(pointer).and_then(Value::as_object_mut).expect("an object of the example");
            for (name, value) in members {
                // A member the object already has would be a replacement.
                if !object.contains_key(name) {
                    object.insert(name.clone(), value.clone());
                }
            }
        }
    }
    event
}

/// The error pointers that name the mutated field: the field itself or a
/// value inside it; for a replaced array item also the array (as in
/// `uniqueItems`); for a removed field its parent (as in `required`); for
/// added members the object or the new member; and for a replaced `type`
/// also `data`, which is then read against another type's schema.
fn names_the_mutation(pointer: &str, mutation: &Mutation, example: &Value) -> bool {
    match mutation {
        Mutation::Replace(at, _) => {
            at_or_inside(pointer, at)
                || (example.pointer(parent(at)).is_some_and(Value::is_array) && pointer == parent(at))
                || (at == "/type" && at_or_inside(pointer, "/data"))
        }
        Mutation::Remove(at) => pointer == parent(at),
        Mutation::Add(at, members) => {
            pointer == at
                || members.iter().any(|(name, _)| {
                    example.pointer(at).and_then(|object| object.get(name)).is_none()
                        && at_or_inside(pointer, &format!("{at}/{}", escape(name)))
                })
        }
    }
}

/// Bytes as a stored message might hold them: anything at all, any JSON,
/// near-events, and valid events with bytes overwritten or cut short.
fn stored_bytes() -> impl Strategy<Value = Vec<u8>> {
    let damaged = (
        0..EXAMPLES.len(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(index, overwrites, cut)| {
            let mut bytes = serde_json::to_vec(&EXAMPLES[index]).unwrap();
            for (at, byte) in overwrites {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
            bytes
        });
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        json_value().prop_map(|value| serde_json::to_vec(&value).unwrap()),
        envelope_like().prop_map(|value| serde_json::to_vec(&value).unwrap()),
        mutated_event().prop_map(|(example, mutation)| serde_json::to_vec(&apply(example, &mutation)).unwrap()),
        damaged,
    ]
}

// ---------------------------------------------------------------------------
// The properties

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_json_value_is_validated_without_panicking_and_every_error_points_into_it(
        input in prop_oneof![json_value(), envelope_like()],
    ) {
        let answer = VALIDATOR.validate(&input, checked_at());
        check_answer(&input, &answer)?;
    }

    #[test]
    fn a_valid_event_with_a_field_replaced_removed_or_added_is_accepted_intact_or_rejected_at_that_field(
        (example, mutation) in mutated_event(),
    ) {
        let input = apply(example.clone(), &mutation);
        let answer = VALIDATOR.validate(&input, checked_at());
        check_answer(&input, &answer)?;
        if let Err(errors) = &answer {
            prop_assert!(
                errors.iter().any(|error| names_the_mutation(&error.pointer, &mutation, &example)),
                "{:?} was rejected with errors that do not name it: {:?}",
                mutation,
                errors
            );
        }
    }

    #[test]
    fn reading_any_bytes_as_a_stored_event_never_panics_and_what_reads_round_trips(
        bytes in stored_bytes(),
    ) {
        if let Ok(event) = Event::from_json(&bytes) {
            let again = Event::from_json(&event.to_json());
            prop_assert!(again.is_ok(), "an event read from bytes does not read back: {:?}", again);
            prop_assert_eq!(again.unwrap(), event);
        }
    }
}

#[test]
fn every_example_survives_the_checks_the_properties_make() {
    for example in EXAMPLES.iter() {
        let answer = VALIDATOR.validate(example, checked_at());
        assert!(answer.is_ok(), "{answer:?}");
        check_answer(example, &answer).unwrap();
    }
}

/// JSON Schema counts a number with a zero fraction as an integer, and the
/// schemas are the contract.
#[test]
fn a_whole_number_written_as_a_float_is_accepted_where_the_schema_wants_an_integer() {
    let example = |kind: &str| EXAMPLES.iter().find(|example| example["type"] == kind).unwrap().clone();
    for (kind, pointer, number) in
        [("collective_action.taken", "/data/reach", 5e7), ("meeting.held", "/data/duration_minutes", 90.0)]
    {
        let mut event = example(kind);
        *event.pointer_mut(pointer).unwrap() = json!(number);
        let answer = VALIDATOR.validate(&event, checked_at());
        assert!(answer.is_ok(), "{pointer} = {number:?} is an integer to the schema, yet: {answer:?}");
        check_answer(&event, &answer).unwrap();
    }
}
