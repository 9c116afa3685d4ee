//! Who is calling: the authenticated key (or the anonymous principal of no-auth mode).

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Tts,
    Asr,
}

impl Service {
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Tts => "tts",
            Service::Asr => "asr",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tts" => Some(Service::Tts),
            "asr" => Some(Service::Asr),
            _ => None,
        }
    }
}

/// Per-key limits. Defaults are the product document's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    pub rpm: u32,
    pub tpm: u32,
    pub tpd: u32,
    pub concurrency: u32,
}

impl Default for Tier {
    fn default() -> Self {
        Self { rpm: 60, tpm: 50_000, tpd: 1_000_000, concurrency: 5 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VoiceAccess {
    All,
    Only(BTreeSet<String>),
}

impl VoiceAccess {
    pub fn allows(&self, voice: &str) -> bool {
        match self {
            VoiceAccess::All => true,
            VoiceAccess::Only(set) => set.contains(voice),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Key id (`None` for the anonymous principal of no-auth mode).
    pub key_id: Option<String>,
    pub org: String,
    pub services: BTreeSet<Service>,
    pub voices: VoiceAccess,
    pub tier: Tier,
}

impl Principal {
    /// The principal every request runs as when authentication is disabled.
    pub fn anonymous(tier: Tier) -> Self {
        Self {
            key_id: None,
            org: "anonymous".into(),
            services: [Service::Tts, Service::Asr].into_iter().collect(),
            voices: VoiceAccess::All,
            tier,
        }
    }
    pub fn can_use(&self, service: Service) -> bool {
        self.services.contains(&service)
    }
    /// Identity that limits are accounted under.
    pub fn limit_key(&self) -> &str {
        self.key_id.as_deref().unwrap_or("anonymous")
    }
}
