//! smai-server: the `smai` binary. HTTP routes, the serve loop, and the command line.

pub mod cli;
pub mod config;
pub mod engines;
pub mod grpc;
pub mod http;
pub mod listener;
pub mod metrics;
pub mod serve;
pub mod service;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod ws;
pub mod wyoming;

pub use config::{AuthMode, ServeConfig};
pub use serve::{start, RunningServer};
pub use state::AppState;
