//! The pure core of momentum: the event contract partner systems write to,
//! its validation, the projection fold and the reads over its result.
//!
//! Nothing in this crate does I/O or reads a clock. Callers pass in the
//! current time where a rule needs it, and the store hands the ledger back
//! what it kept ([`ledger::Ledger::replay`]), so every rule here is
//! testable on its own.

pub mod event;
pub mod export;
pub mod ledger;
pub mod period;
pub mod query;
pub mod selection;
pub mod validation;
pub mod varint;

pub use event::{Event, EventData, EventType, Organiser, Principle, Role};
pub use period::Interval;
pub use validation::{FieldError, Validator};
