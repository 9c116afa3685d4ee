//! The `smai keys` command line against a real SQLite file.

use std::process::Command;

fn smai(db: &std::path::Path, args: &[&str]) -> std::process::Output {
    let output = Command::new(env!("CARGO_BIN_EXE_smai")).arg("keys").args(args).arg("--db").arg(db).output().unwrap();
    assert!(output.status.success(), "smai keys {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    output
}

fn json(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

#[test]
fn create_list_show_rotate_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keys.db");
    let created = json(&smai(
        &db,
        &[
            "create",
            "--org",
            "acme",
            "--name",
            "ci",
            "--services",
            "tts",
            "--voices",
            "joe,joe-slow",
            "--rpm",
            "10",
            "--expires-in",
            "90d",
            "--json",
        ],
    ));
    let id = created["id"].as_str().unwrap().to_owned();
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("smai_") && key.len() == 54);
    assert_eq!(created["record"]["tier"]["rpm"], 10);
    assert_eq!(created["record"]["services"], serde_json::json!(["tts"]));

    let listed = smai(&db, &["list", "--org", "acme", "--json"]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(text.contains(&id) && !text.contains(&key[5..]), "listing shows ids, never secrets");
    let table = smai(&db, &["list"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains(&id));

    let shown = json(&smai(&db, &["show", &id]));
    assert_eq!(shown["voices"]["only"], serde_json::json!(["joe", "joe-slow"]));
    assert!(shown["expires_at"].as_i64().unwrap() > shown["created_at"].as_i64().unwrap() + 89 * 86_400_000);

    let rotated = json(&smai(&db, &["rotate", &id, "--grace", "1h", "--json"]));
    assert_eq!(rotated["replaces"], id.as_str());
    assert_ne!(rotated["key"], key.as_str());
    let old = json(&smai(&db, &["show", &id]));
    assert_eq!(old["replaced_by"], rotated["id"]);

    smai(&db, &["revoke", &id]);
    assert!(json(&smai(&db, &["show", &id]))["revoked_at"].is_i64());

    let missing =
        Command::new(env!("CARGO_BIN_EXE_smai")).args(["keys", "show", "key_nope", "--db"]).arg(&db).output().unwrap();
    assert!(!missing.status.success());
}
