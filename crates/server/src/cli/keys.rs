//! `smai keys ...`: key management against the SQLite key store. The plaintext key is printed
//! once, at creation or rotation, and never stored.

use crate::config::parse_duration;
use clap::{Args, Subcommand};
use serde_json::json;
use smai_auth::{open_database, KeyRecord, KeyStore, NewKey};
use smai_core::{Service, SystemClock, Tier, VoiceAccess};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

/// Longest key lifetime accepted: expiry times are milliseconds since 1970 in an i64, and
/// anything near that is surely a typo.
const MAX_LIFETIME: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 86_400);

/// A key lifetime: positive and at most a hundred years.
fn parse_lifetime(text: &str) -> Result<std::time::Duration, String> {
    let lifetime = parse_duration(text)?;
    if lifetime.is_zero() {
        return Err("a key lifetime must be longer than zero (leave --expires-in out for no expiry)".into());
    }
    if lifetime > MAX_LIFETIME {
        return Err(format!("a key lifetime of {text} is too long; at most 100 years"));
    }
    Ok(lifetime)
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    /// SQLite database holding the keys.
    #[arg(long, env = "SMAI_DB", default_value = "./data/smai.db", global = true)]
    pub db: PathBuf,
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; prints it once.
    Create(CreateArgs),
    /// List keys (never their secrets).
    List {
        #[arg(long)]
        org: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one key's grants and state.
    Show { id: String },
    /// Revoke a key now.
    Revoke { id: String },
    /// Issue a new key with the same grants; the old one works until the grace period ends.
    Rotate {
        id: String,
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        grace: std::time::Duration,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[arg(long)]
    pub org: String,
    #[arg(long)]
    pub name: Option<String>,
    /// Comma-separated services: tts, asr.
    #[arg(long, default_value = "tts,asr")]
    pub services: String,
    /// Comma-separated voice ids, or `all`.
    #[arg(long, default_value = "all")]
    pub voices: String,
    #[arg(long, default_value_t = Tier::default().rpm)]
    pub rpm: u32,
    #[arg(long, default_value_t = Tier::default().tpm)]
    pub tpm: u32,
    #[arg(long, default_value_t = Tier::default().tpd)]
    pub tpd: u32,
    #[arg(long, default_value_t = Tier::default().concurrency)]
    pub concurrency: u32,
    /// Lifetime such as 90d or 12h; no expiry when absent.
    #[arg(long, value_parser = parse_lifetime)]
    pub expires_in: Option<std::time::Duration>,
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: KeysArgs) -> anyhow::Result<()> {
    let pool = open_database(&args.db).await?;
    let store = KeyStore::new(pool.clone(), Arc::new(SystemClock));
    let result = execute(&store, args.command).await;
    pool.close().await;
    result
}

async fn execute(store: &KeyStore, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create(args) => {
            let new = NewKey {
                org: args.org,
                name: args.name,
                services: parse_services(&args.services)?,
                voices: parse_voices(&args.voices),
                tier: Tier { rpm: args.rpm, tpm: args.tpm, tpd: args.tpd, concurrency: args.concurrency },
                // parse_lifetime keeps this within i64 milliseconds.
                expires_in_ms: args.expires_in.map(|d| d.as_millis() as i64),
            };
            let (record, key) = store.create(&new).await?;
            if args.json {
                println!("{}", json!({"id": record.id, "key": key.as_str(), "record": record}));
            } else {
                println!("{}", key.as_str());
                eprintln!("Created {} for {}. The key is shown only once; store it now.", record.id, record.org);
            }
        }
        KeysCommand::List { org, json } => {
            let records = store.list(org.as_deref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&records)?);
            } else {
                println!("{:<22} {:<16} {:<15} {:<9} {:<8}", "ID", "ORG", "PREFIX", "SERVICES", "STATE");
                for r in &records {
                    println!(
                        "{:<22} {:<16} {:<15} {:<9} {:<8}",
                        r.id,
                        r.org,
                        r.prefix,
                        services_text(r),
                        state_text(r)
                    );
                }
            }
        }
        KeysCommand::Show { id } => {
            let record = store.get(&id).await?.ok_or_else(|| anyhow::anyhow!("no key with id {id}"))?;
            println!("{}", serde_json::to_string_pretty(&record)?);
        }
        KeysCommand::Revoke { id } => {
            let record = store.revoke(&id).await?;
            eprintln!("Revoked {} ({}).", record.id, record.prefix);
        }
        KeysCommand::Rotate { id, grace, json } => {
            let (record, key) = store.rotate(&id, grace.as_millis() as i64).await?;
            if json {
                println!("{}", json!({"id": record.id, "key": key.as_str(), "replaces": id}));
            } else {
                println!("{}", key.as_str());
                eprintln!(
                    "Created {} replacing {id}; the old key works for {}.",
                    record.id,
                    humantime::format_duration(grace)
                );
            }
        }
    }
    Ok(())
}

fn parse_services(text: &str) -> anyhow::Result<BTreeSet<Service>> {
    let mut services = BTreeSet::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        services.insert(Service::parse(part).ok_or_else(|| anyhow::anyhow!("unknown service {part:?}; use tts, asr"))?);
    }
    anyhow::ensure!(!services.is_empty(), "a key needs at least one service");
    Ok(services)
}

fn parse_voices(text: &str) -> VoiceAccess {
    if text.trim().eq_ignore_ascii_case("all") {
        VoiceAccess::All
    } else {
        VoiceAccess::Only(text.split(',').map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned).collect())
    }
}

fn services_text(record: &KeyRecord) -> String {
    record.services.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
}

fn state_text(record: &KeyRecord) -> &'static str {
    let now = smai_core::Clock::now_ms(&SystemClock);
    match (record.revoked_at, record.is_active(now)) {
        (Some(t), _) if t <= now => "revoked",
        (_, false) => "expired",
        _ if record.replaced_by.is_some() => "rotating",
        _ => "active",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_must_be_positive_and_representable() {
        assert_eq!(parse_lifetime("90d").unwrap(), std::time::Duration::from_secs(90 * 86_400));
        assert!(parse_lifetime("0s").unwrap_err().contains("longer than zero"));
        assert!(parse_lifetime("0d").is_err());
        assert!(parse_lifetime("200y").unwrap_err().contains("too long"));
        assert!(parse_lifetime("99999999999999999999y").is_err(), "overflowing numbers are refused");
        assert!(parse_lifetime("banana").is_err());
    }
}
