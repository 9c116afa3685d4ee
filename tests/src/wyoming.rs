//! Wyoming end-to-end pieces: a server with the listener on, running as a key created before
//! it starts (the listener checks its key at start-up), and the PyPI `wyoming` package's
//! client (tests/python/wyoming_client.py) from the venv named by SMAI_WYOMING_PYTHON.

use crate::TestServer;
use serde_json::Value;
use smai_auth::{KeyStore, NewKey};
use smai_core::SystemClock;
use smai_server::serve::Engines;
use smai_server::ServeConfig;
use std::net::SocketAddr;
use std::sync::Arc;

pub fn python() -> String {
    std::env::var("SMAI_WYOMING_PYTHON").unwrap_or_else(|_| {
        panic!(
            "SMAI_WYOMING_PYTHON is not set: create the venv with `python3 -m venv .venv-wyoming && \
             .venv-wyoming/bin/pip install wyoming==1.10.2` and export SMAI_WYOMING_PYTHON=$PWD/.venv-wyoming/bin/python"
        )
    })
}

/// A server with the Wyoming listener on 127.0.0.1:0, running as `key` (created first), or as
/// the anonymous principal with `--auth disabled` when `key` is `None`.
pub async fn server(engines: Engines, key: Option<NewKey>, configure: impl FnOnce(&mut ServeConfig)) -> Wyoming {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("smai.db");
    let key_id = match key {
        Some(new) => {
            let pool = smai_auth::open_database(&db).await.expect("database opens");
            let (record, _) = KeyStore::new(pool.clone(), Arc::new(SystemClock)).create(&new).await.expect("key");
            pool.close().await;
            Some(record.id)
        }
        None => None,
    };
    let t = TestServer::start_in(
        dir,
        |c| {
            c.wyoming_listen = smai_server::config::WyomingListen(Some("127.0.0.1:0".parse().unwrap()));
            c.wyoming_key_id = key_id.clone();
            if key_id.is_none() {
                c.auth = smai_server::AuthMode::Disabled;
            }
            configure(c);
        },
        engines,
    )
    .await;
    let addr = t.server.wyoming_addr.expect("the Wyoming listener is on");
    Wyoming { t, addr }
}

pub struct Wyoming {
    pub t: TestServer,
    pub addr: SocketAddr,
}

impl Wyoming {
    pub fn uri(&self) -> String {
        format!("tcp://{}", self.addr)
    }

    /// Runs the client with `args` after the URI; its JSON result.
    pub async fn client(&self, command: &str, args: &[&str]) -> Value {
        let script = crate::real::workspace().join("tests/python/wyoming_client.py");
        let output = tokio::process::Command::new(python())
            .arg(script)
            .arg(command)
            .arg(self.uri())
            .args(args)
            .output()
            .await
            .expect("the wyoming client runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "wyoming client {command} {args:?} failed: {stderr}");
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("client output is not JSON ({e}): {stderr}"))
    }
}

/// The `type`s of a client's events, in order.
pub fn kinds(result: &Value) -> Vec<String> {
    result["events"].as_array().expect("events").iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect()
}

/// The events of one type.
pub fn of_kind<'a>(result: &'a Value, kind: &str) -> Vec<&'a Value> {
    result["events"].as_array().expect("events").iter().filter(|e| e["type"] == kind).collect()
}
