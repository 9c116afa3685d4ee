//! smai-auth
pub mod limits;
