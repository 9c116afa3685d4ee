//! The key store: organisations and API keys in SQLite. Only digests are stored; the plaintext
//! key leaves this module once, as the return value of `create` or `rotate`.

use crate::key::{ApiKey, KeyDigest};
use rand::distributions::{Alphanumeric, DistString};
use serde::Serialize;
use smai_core::{Principal, Service, SharedClock, Tier, VoiceAccess};
use sqlx::{Row, SqlitePool};
use std::collections::BTreeSet;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no key with id {0}")]
    NoSuchKey(String),
    #[error("key {0} is revoked")]
    Revoked(String),
    #[error("key {0} has expired")]
    Expired(String),
    #[error("key {0} was already rotated (replaced by {1}); rotate the newer key")]
    AlreadyRotated(String, String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// What a new key is granted.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub org: String,
    pub name: Option<String>,
    pub services: BTreeSet<Service>,
    pub voices: VoiceAccess,
    pub tier: Tier,
    /// Lifetime from now, in milliseconds.
    pub expires_in_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeyRecord {
    pub id: String,
    pub org: String,
    pub name: Option<String>,
    pub prefix: String,
    #[serde(skip)]
    pub digest: Vec<u8>,
    pub tier: Tier,
    pub services: BTreeSet<Service>,
    pub voices: VoiceAccess,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub replaced_by: Option<String>,
}

impl KeyRecord {
    /// Whether the key may be used at `now_ms` (not revoked, not past its expiry).
    pub fn is_active(&self, now_ms: i64) -> bool {
        self.revoked_at.is_none_or(|t| t > now_ms) && self.expires_at.is_none_or(|t| t > now_ms)
    }

    pub fn principal(&self) -> Principal {
        Principal {
            key_id: Some(self.id.clone()),
            org: self.org.clone(),
            services: self.services.clone(),
            voices: self.voices.clone(),
            tier: self.tier,
        }
    }
}

#[derive(Clone, Debug)]
pub struct KeyStore {
    pool: SqlitePool,
    clock: SharedClock,
}

const SELECT_KEY: &str = "SELECT k.id, o.name AS org, k.name, k.prefix, k.digest, k.rpm, k.tpm, k.tpd, \
    k.concurrency, k.services, k.voices, k.created_at, k.expires_at, k.revoked_at, k.last_used_at, \
    k.replaced_by FROM api_keys k JOIN organisations o ON o.id = k.org_id";

impl KeyStore {
    pub fn new(pool: SqlitePool, clock: SharedClock) -> Self {
        Self { pool, clock }
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub async fn create(&self, new: &NewKey) -> Result<(KeyRecord, ApiKey), StoreError> {
        let now = self.clock.now_ms();
        let mut tx = self.pool.begin().await?;
        let org_id = format!("org_{}", random_id());
        sqlx::query("INSERT INTO organisations (id, name, created_at) VALUES (?, ?, ?) ON CONFLICT(name) DO NOTHING")
            .bind(&org_id)
            .bind(&new.org)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let org_id: String = sqlx::query_scalar("SELECT id FROM organisations WHERE name = ?")
            .bind(&new.org)
            .fetch_one(&mut *tx)
            .await?;
        let key = ApiKey::generate();
        let id = format!("key_{}", random_id());
        sqlx::query(
            "INSERT INTO api_keys (id, org_id, name, digest, prefix, rpm, tpm, tpd, concurrency, services, voices, \
             created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(&org_id)
        .bind(&new.name)
        .bind(key.digest().0.as_slice())
        .bind(key.display_prefix())
        .bind(new.tier.rpm as i64)
        .bind(new.tier.tpm as i64)
        .bind(new.tier.tpd as i64)
        .bind(new.tier.concurrency as i64)
        .bind(encode_services(&new.services))
        .bind(encode_voices(&new.voices))
        .bind(now)
        .bind(new.expires_in_ms.map(|ms| now + ms))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let record = self.get(&id).await?.ok_or_else(|| StoreError::NoSuchKey(id.clone()))?;
        Ok((record, key))
    }

    pub async fn get(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let row = sqlx::query(&format!("{SELECT_KEY} WHERE k.id = ?")).bind(id).fetch_optional(&self.pool).await?;
        row.map(|r| record_from_row(&r)).transpose()
    }

    pub async fn find_by_digest(&self, digest: &KeyDigest) -> Result<Option<KeyRecord>, StoreError> {
        let row = sqlx::query(&format!("{SELECT_KEY} WHERE k.digest = ?"))
            .bind(digest.0.as_slice())
            .fetch_optional(&self.pool)
            .await?;
        let record = row.map(|r| record_from_row(&r)).transpose()?;
        // The index lookup found it; the constant-time check keeps the final comparison
        // independent of how many bytes match.
        Ok(record.filter(|r| digest.ct_eq(&r.digest)))
    }

    pub async fn list(&self, org: Option<&str>) -> Result<Vec<KeyRecord>, StoreError> {
        let rows = match org {
            Some(org) => {
                sqlx::query(&format!("{SELECT_KEY} WHERE o.name = ? ORDER BY k.created_at, k.id"))
                    .bind(org)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => sqlx::query(&format!("{SELECT_KEY} ORDER BY k.created_at, k.id")).fetch_all(&self.pool).await?,
        };
        rows.iter().map(record_from_row).collect()
    }

    pub async fn revoke(&self, id: &str) -> Result<KeyRecord, StoreError> {
        let now = self.clock.now_ms();
        let done = sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NoSuchKey(id.into()));
        }
        self.get(id).await?.ok_or_else(|| StoreError::NoSuchKey(id.into()))
    }

    /// Issues a new key with the same grants; the old one keeps working for `grace_ms`.
    pub async fn rotate(&self, id: &str, grace_ms: i64) -> Result<(KeyRecord, ApiKey), StoreError> {
        let old = self.get(id).await?.ok_or_else(|| StoreError::NoSuchKey(id.into()))?;
        let now = self.clock.now_ms();
        if old.revoked_at.is_some_and(|t| t <= now) {
            return Err(StoreError::Revoked(id.into()));
        }
        if let Some(newer) = &old.replaced_by {
            return Err(StoreError::AlreadyRotated(id.into(), newer.clone()));
        }
        if old.expires_at.is_some_and(|t| t <= now) {
            return Err(StoreError::Expired(id.into()));
        }
        let new = NewKey {
            org: old.org.clone(),
            name: old.name.clone(),
            services: old.services.clone(),
            voices: old.voices.clone(),
            tier: old.tier,
            expires_in_ms: old.expires_at.map(|t| (t - now).max(0)),
        };
        let (record, key) = self.create(&new).await?;
        let grace_end = now + grace_ms.max(0);
        sqlx::query("UPDATE api_keys SET replaced_by = ?, expires_at = MIN(COALESCE(expires_at, ?), ?) WHERE id = ?")
            .bind(&record.id)
            .bind(grace_end)
            .bind(grace_end)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok((record, key))
    }

    pub async fn touch(&self, id: &str, at_ms: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_keys SET last_used_at = ? WHERE id = ?")
            .bind(at_ms)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

fn random_id() -> String {
    Alphanumeric.sample_string(&mut rand::thread_rng(), 16)
}

fn encode_services(services: &BTreeSet<Service>) -> String {
    services.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
}

fn encode_voices(voices: &VoiceAccess) -> String {
    match voices {
        VoiceAccess::All => "*".into(),
        VoiceAccess::Only(list) => list.iter().cloned().collect::<Vec<_>>().join(","),
    }
}

fn decode_voices(text: &str) -> VoiceAccess {
    if text == "*" {
        VoiceAccess::All
    } else {
        VoiceAccess::Only(text.split(',').filter(|v| !v.is_empty()).map(str::to_owned).collect())
    }
}

fn record_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<KeyRecord, StoreError> {
    let services: String = row.try_get("services")?;
    let voices: String = row.try_get("voices")?;
    let count =
        |name: &str| -> Result<u32, sqlx::Error> { Ok(row.try_get::<i64, _>(name)?.clamp(0, u32::MAX as i64) as u32) };
    Ok(KeyRecord {
        id: row.try_get("id")?,
        org: row.try_get("org")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        digest: row.try_get("digest")?,
        tier: Tier { rpm: count("rpm")?, tpm: count("tpm")?, tpd: count("tpd")?, concurrency: count("concurrency")? },
        services: services.split(',').filter_map(Service::parse).collect(),
        voices: decode_voices(&voices),
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        last_used_at: row.try_get("last_used_at")?,
        replaced_by: row.try_get("replaced_by")?,
    })
}
