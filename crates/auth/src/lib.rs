//! smai-auth: API keys and everything that decides whether a request may run. Knows nothing
//! of HTTP or gRPC; every protocol calls the same `Authenticator` and `Limiter`.

pub mod authenticator;
pub mod db;
pub mod key;
pub mod limits;
pub mod refusals;
pub mod store;
pub mod usage;

pub use authenticator::{Authenticator, AuthenticatorConfig};
pub use db::{backup_database, open_database, BackupSummary};
pub use key::{ApiKey, KeyDigest};
pub use limits::{Admission, Limiter, RateSnapshot, Rejection};
pub use refusals::RefusalLog;
pub use store::{KeyRecord, KeyStore, NewKey, StoreError};
pub use usage::{Retention, UsageLog, UsageRecord};
