//! The pure core of momentum: the event contract partner systems write to,
//! its validation, the projection fold and the reads over its result.
//!
//! Nothing in this crate does I/O or reads a clock. Callers pass in the
//! current time where a rule needs it and the state the fold works on
//! (see [`projection::State`]), so every rule here is testable on its own.

pub mod event;
pub mod memory;
pub mod period;
pub mod projection;
pub mod query;
pub mod typed;
pub mod validation;

pub use event::{Event, EventData, EventType, Organiser, Principle, Role};
pub use period::Interval;
pub use validation::{FieldError, Validator};
