//! Rotation refuses keys that cannot be rotated: revoked, expired, or already rotated (the
//! newer key is the one to rotate), so a key's grants never fork into two live successors.

use smai_auth::{open_database, KeyStore, NewKey, StoreError};
use smai_core::{ManualClock, Service, Tier, VoiceAccess};
use std::sync::Arc;

fn new_key(expires_in_ms: Option<i64>) -> NewKey {
    NewKey {
        org: "acme".into(),
        name: None,
        services: [Service::Tts].into(),
        voices: VoiceAccess::All,
        tier: Tier::default(),
        expires_in_ms,
    }
}

#[tokio::test]
async fn only_a_live_unrotated_key_can_be_rotated() {
    let dir = tempfile::tempdir().unwrap();
    let pool = open_database(&dir.path().join("keys.db")).await.unwrap();
    let clock = ManualClock::new(1_000_000);
    let store = KeyStore::new(pool.clone(), Arc::new(clock.clone()));

    let (first, _) = store.create(&new_key(None)).await.unwrap();
    let (second, _) = store.rotate(&first.id, 60_000).await.unwrap();
    match store.rotate(&first.id, 60_000).await {
        Err(StoreError::AlreadyRotated(old, newer)) => assert_eq!((old, newer), (first.id.clone(), second.id.clone())),
        other => panic!("rotating a rotated key: {other:?}"),
    }
    store.rotate(&second.id, 60_000).await.expect("the newer key rotates");

    let (revoked, _) = store.create(&new_key(None)).await.unwrap();
    store.revoke(&revoked.id).await.unwrap();
    assert!(matches!(store.rotate(&revoked.id, 0).await, Err(StoreError::Revoked(_))));

    let (expiring, _) = store.create(&new_key(Some(1_000))).await.unwrap();
    clock.advance_ms(1_000);
    assert!(matches!(store.rotate(&expiring.id, 0).await, Err(StoreError::Expired(_))));
    pool.close().await;
}
