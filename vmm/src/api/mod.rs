//! The control API (`--api-socket PATH`): HTTP/1.1 REST on a Unix socket,
//! wire-compatible with the matching subset of cloud-hypervisor's API
//! (paths under `/api/v1/`, methods, JSON field names, status codes), plus
//! minivmm's own `vm.plan`. See `docs/api.md`.
//!
//! Data flows one way: a request body becomes a configuration exactly as
//! the command line does (`types`), the VM is built by the same
//! `Vm::build`, and what the API reports comes from the plan and the built
//! devices (`report`), never from the request.
//!
//! Files, one job each: `socket` (creating the socket safely), `http`
//! (bounded HTTP framing), `routes` (paths and methods to requests),
//! `types` (JSON bodies and their conversion), `server` (the API thread),
//! `control` (the control loop that owns the VM), `report` (`vm.info`,
//! `vm.plan`, `vm.counters`).

pub mod control;
pub mod http;
pub mod report;
pub mod routes;
pub mod server;
pub mod socket;
pub mod types;

pub use control::{serve, ApiError, Ended};
