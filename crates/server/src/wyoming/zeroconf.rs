//! Zeroconf (mDNS) announcement of the Wyoming listener as `_wyoming._tcp.local.`, the service
//! type Home Assistant browses for, so that it offers smai without an address typed in.

use anyhow::Context;
use mdns_sd::{ServiceDaemon, ServiceInfo};
use std::net::IpAddr;

pub const SERVICE_TYPE: &str = "_wyoming._tcp.local.";

/// An announcement; withdrawn when dropped.
pub struct Announcement {
    daemon: ServiceDaemon,
    fullname: String,
}

/// Announces `port` on every interface's address (or only `ip` when the listener is bound to
/// one), as instance `name` on this host.
pub fn announce(name: &str, ip: Option<IpAddr>, port: u16) -> anyhow::Result<Announcement> {
    let daemon = ServiceDaemon::new().context("starting the mDNS responder")?;
    let host = format!("{}.local.", host_name());
    let addresses = ip.map(|ip| ip.to_string()).unwrap_or_default();
    let mut info = ServiceInfo::new(SERVICE_TYPE, name, &host, addresses.as_str(), port, None)
        .context("describing the mDNS service")?;
    if ip.is_none() {
        info = info.enable_addr_auto();
    }
    let fullname = info.get_fullname().to_owned();
    daemon.register(info).context("announcing the mDNS service")?;
    tracing::info!(%fullname, port, "wyoming announced over zeroconf");
    Ok(Announcement { daemon, fullname })
}

impl Drop for Announcement {
    fn drop(&mut self) {
        let _ = self.daemon.unregister(&self.fullname);
        let _ = self.daemon.shutdown();
    }
}

/// This machine's host name (letters, digits and dashes only, as mDNS host labels are).
fn host_name() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let ok = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) } == 0;
    let raw = if ok {
        String::from_utf8_lossy(buffer.split(|&b| b == 0).next().unwrap_or_default()).into_owned()
    } else {
        String::new()
    };
    let label: String = raw
        .split('.')
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    if label.trim_matches('-').is_empty() {
        "smai".to_owned()
    } else {
        label
    }
}
