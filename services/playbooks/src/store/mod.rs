//! Playbooks' storage. Each function takes a pool or a connection (a
//! transaction when the caller writes more than one thing) and speaks in
//! rows and Tenure's own types; the gRPC edge maps them to and from
//! protos. Versions of playbooks ([`versions`]), runs with their steps and
//! the account timeline ([`runs`]), tasks ([`tasks`]), the states of all
//! three ([`states`]) and the trigger events that notices bring
//! ([`triggers`]). The engine's claims and step writes stay with the engine
//! ([`crate::engine`]), where their order is the point.

pub mod runs;
pub mod states;
pub mod tasks;
pub mod triggers;
pub mod versions;
