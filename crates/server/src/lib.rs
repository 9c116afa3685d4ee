//! smai-server
