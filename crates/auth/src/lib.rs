//! smai-auth
