//! The events export: a stored event as an analyst gets it, or nothing.
//!
//! An export gives a movement's effective events: each event that counts,
//! once, in stream order, as it is stored (participant refs pseudonymised
//! by ingest), with its stream sequence added as the extension attribute
//! `seq`. Repeats, retractions and erasures are left out; a retracted
//! event only when asked for, marked `retracted` with the retraction's
//! sequence. An erased participant's pseudonym never appears: in the
//! events they were in, their ref reads [`ERASED_PARTICIPANT`], the same
//! for every erased person, so nothing links those events to each other
//! or to the pseudonym. Extension attributes a partner added are not
//! exported (they are not pseudonymised).

use serde_json::Value;

use crate::event::{Event, rewrite_participant_refs};
use crate::ledger::{FoldSettings, MovementLedger};
use crate::period::local_date;

/// What an erased participant's ref reads in an export.
pub const ERASED_PARTICIPANT: &str = "erased";

/// The event that arrived at `seq` as the export gives it, or `None` when
/// it does not count (or was retracted, unless `include_retracted`).
/// `ledger` must have folded the stream at least up to `seq`, so that
/// every erasure of a participant before then is known.
pub fn exported(
    ledger: &MovementLedger,
    settings: &FoldSettings,
    event: &Event,
    seq: u64,
    include_retracted: bool,
) -> Option<Value> {
    let filed = ledger.filed(local_date(event.time, settings.time_zone), seq)?;
    if filed.is_some() && !include_retracted {
        return None;
    }
    let mut exported: Value = serde_json::from_slice(&event.to_json()).expect("an event's JSON reads back");
    rewrite_participant_refs(event.kind, &mut exported["data"], |participant| {
        if ledger.is_erased(participant) {
            *participant = ERASED_PARTICIPANT.to_owned();
        }
    });
    exported["seq"] = seq.into();
    if let Some(retraction) = filed {
        exported["retracted"] = retraction.into();
    }
    Some(exported)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ledger::Ledger;

    fn event(id: &str, kind: &str, time: &str, data: Value) -> Event {
        let value = json!({ "specversion": "1.0", "id": id, "source": "urn:p", "type": kind, "subject": "alpha",
            "time": time, "data": data, "partnerext": "kept out" });
        Event::from_json(value.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn only_counted_events_are_exported_once_with_erased_refs_replaced_and_retracted_ones_on_request() {
        let settings = FoldSettings::default();
        let meeting = event(
            "m1",
            "meeting.held",
            "2026-03-04T18:00:00Z",
            json!({ "attendees": ["ps-a", "ps-b"], "organisers": [{ "participant": "ps-c", "role": "citizen" }] }),
        );
        let hours =
            event("h1", "volunteer.hours_logged", "2026-03-05T10:00:00Z", json!({ "participant": "ps-a", "hours": 2 }));
        let retraction = event("r1", "event.retracted", "2026-03-06T10:00:00Z", json!({ "event_id": "h1" }));
        let erasure = Event::from_json(
            json!({ "specversion": "1.0", "id": "e1", "source": "urn:momentum:erasure", "type": "participant.erased",
                "subject": "alpha", "time": "2026-03-07T10:00:00Z", "data": { "pseudonyms": ["ps-b"] } })
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let mut ledger = Ledger::default();
        let stream = [(1, &meeting), (2, &meeting), (3, &hours), (4, &retraction), (5, &erasure)];
        for (seq, event) in stream {
            ledger.apply(&settings, event, seq);
        }
        let movement = ledger.movement("alpha").unwrap();
        let export = |include| -> Vec<Value> {
            stream.iter().filter_map(|(seq, event)| exported(movement, &settings, event, *seq, include)).collect()
        };
        let effective = export(false);
        assert_eq!(
            effective.len(),
            1,
            "the meeting once; the repeat, the retracted hours, the retraction and the erasure not"
        );
        assert_eq!(effective[0]["seq"], 1);
        assert_eq!(effective[0]["data"]["attendees"], json!(["ps-a", ERASED_PARTICIPANT]));
        assert_eq!(effective[0]["data"]["organisers"][0]["participant"], "ps-c");
        assert!(effective[0].get("partnerext").is_none(), "a partner's extension attributes are not exported");
        assert!(!effective[0].to_string().contains("ps-b"), "the erased pseudonym appears nowhere");
        let with_retracted = export(true);
        assert_eq!(with_retracted.len(), 2);
        assert_eq!((&with_retracted[1]["id"], &with_retracted[1]["retracted"]), (&json!("h1"), &json!(4)));
    }
}
