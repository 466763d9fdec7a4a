//! The end-to-end tests: one test binary, a module per concern, all
//! starting momentum through one helper (the `momentum_tests` library,
//! `support.rs`), against a real nats-server and the real services.

mod api_fuzz;
mod bench;
mod containers;
mod dashboard;
mod end_to_end;
mod events_export;
mod exports;
mod faults;
mod hostile_input;
mod import;
mod nats_security;
mod open_data;
mod operations;
mod partitions;
mod shutdown;
mod trust;
