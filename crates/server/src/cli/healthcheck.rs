//! `smai healthcheck`: asks the local server's `/readyz` and exits 0 when it answers 200, else 1
//! with the reason. It is the container image's HEALTHCHECK, which has no curl. It reads the
//! same `SMAI_LISTEN` and `SMAI_TLS_CERT` as `serve`, so it needs no arguments there; over HTTPS
//! it trusts exactly the server's own certificate (see `tls::pinned`).

use crate::config::parse_duration;
use clap::Args;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// The server's listen address; an unspecified one (0.0.0.0, ::) is asked on loopback.
    #[arg(long, env = "SMAI_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The server's certificate, when it serves HTTPS.
    #[arg(long, env = "SMAI_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// How long to wait for the whole answer.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
}

pub async fn run(args: HealthcheckArgs) -> anyhow::Result<()> {
    let address = loopback_if_unspecified(args.listen);
    let status = tokio::time::timeout(args.timeout, ask_readyz(address, args.tls_cert.as_deref()))
        .await
        .map_err(|_| anyhow::anyhow!("{address}: no answer within {:?}", args.timeout))??;
    if status.split_whitespace().nth(1) != Some("200") {
        anyhow::bail!("{address}: /readyz answered {status:?}");
    }
    println!("{address}: ready");
    Ok(())
}

fn loopback_if_unspecified(address: SocketAddr) -> SocketAddr {
    match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), address.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), address.port()),
        _ => address,
    }
}

/// The status line of `GET /readyz`.
async fn ask_readyz(address: SocketAddr, tls_cert: Option<&Path>) -> anyhow::Result<String> {
    let tcp = TcpStream::connect(address).await?;
    match tls_cert {
        None => status_line(tcp).await,
        Some(cert) => {
            let config = crate::tls::pinned::client_config(cert)?;
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let name = rustls::pki_types::ServerName::IpAddress(address.ip().into());
            status_line(connector.connect(name, tcp).await?).await
        }
    }
}

async fn status_line(mut stream: impl AsyncRead + AsyncWrite + Unpin) -> anyhow::Result<String> {
    stream.write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await?;
    let mut answer = Vec::new();
    // The status line is all that is needed; the body is short, and the read stops at 4 kB.
    (&mut stream).take(4096).read_to_end(&mut answer).await?;
    let text = String::from_utf8_lossy(&answer);
    Ok(text.lines().next().unwrap_or_default().to_string())
}
