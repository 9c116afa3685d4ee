//! `smai tls init`: a private CA and a server certificate signed by it, so an on-prem install
//! turns TLS on in one command; `smai tls client NAME`: a client certificate for mutual TLS.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

#[derive(Debug, Args)]
pub struct TlsArgs {
    #[command(subcommand)]
    pub command: TlsCommand,
}

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Write a private CA (ca.pem, ca-key.pem) and a server certificate it signed (server.pem,
    /// server-key.pem) for the given host names and addresses.
    Init {
        /// Folder for the files.
        #[arg(long, default_value = "./tls")]
        dir: PathBuf,
        /// Names and IP addresses clients use to reach the server, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1,::1")]
        hosts: Vec<String>,
        /// Days the server certificate is valid (the CA: ten years).
        #[arg(long, default_value_t = 825)]
        days: i64,
        /// Replace a CA already in the folder (certificates it signed stop being trusted).
        #[arg(long)]
        force: bool,
    },
    /// Write a client certificate signed by the CA in --dir, for `--tls-client-auth`.
    Client {
        /// The certificate's common name, logged with each request the client makes.
        name: String,
        #[arg(long, default_value = "./tls")]
        dir: PathBuf,
        #[arg(long, default_value_t = 825)]
        days: i64,
    },
}

pub fn run(args: TlsArgs) -> anyhow::Result<()> {
    match args.command {
        TlsCommand::Init { dir, hosts, days, force } => init(&dir, &hosts, days, force),
        TlsCommand::Client { name, dir, days } => client(&dir, &name, days),
    }
}

const CA_YEARS: i64 = 10;

fn init(dir: &Path, hosts: &[String], days: i64, force: bool) -> anyhow::Result<()> {
    if hosts.is_empty() {
        bail!("--hosts needs at least one name or address");
    }
    let ca_path = dir.join("ca.pem");
    if ca_path.exists() && !force {
        bail!(
            "{} exists; pass --force to replace the CA (clients that trust it must get the new one)",
            ca_path.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca_key = KeyPair::generate()?;
    let ca_params = ca_params(Duration::days(365 * CA_YEARS));
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params = leaf_params(&hosts[0], Duration::days(days), ExtendedKeyUsagePurpose::ServerAuth);
    params.subject_alt_names = hosts.iter().map(|host| san(host)).collect::<anyhow::Result<_>>()?;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;

    write_file(&ca_path, &ca_cert.pem(), false)?;
    write_file(&dir.join("ca-key.pem"), &issuer.key().serialize_pem(), true)?;
    write_file(&dir.join("server.pem"), &cert.pem(), false)?;
    write_file(&dir.join("server-key.pem"), &key.serialize_pem(), true)?;
    print_usage(dir, hosts);
    Ok(())
}

fn client(dir: &Path, name: &str, days: i64) -> anyhow::Result<()> {
    let read = |file: &str| {
        let path = dir.join(file);
        std::fs::read_to_string(&path)
            .with_context(|| format!("reading {} (run `smai tls init` first)", path.display()))
    };
    let ca_key = KeyPair::from_pem(&read("ca-key.pem")?).context("ca-key.pem")?;
    let issuer = Issuer::from_ca_cert_pem(&read("ca.pem")?, ca_key).context("ca.pem")?;
    let params = leaf_params(name, Duration::days(days), ExtendedKeyUsagePurpose::ClientAuth);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    let stem = format!("client-{}", name.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_"));
    let (cert_path, key_path) = (dir.join(format!("{stem}.pem")), dir.join(format!("{stem}-key.pem")));
    write_file(&cert_path, &cert.pem(), false)?;
    write_file(&key_path, &key.serialize_pem(), true)?;
    println!("Wrote {} and {} (CN={name}).", cert_path.display(), key_path.display());
    println!("Serve with: --tls-client-ca {} --tls-client-auth required", dir.join("ca.pem").display());
    println!(
        "Client: curl --cacert {ca} --cert {cert} --key {key} https://...",
        ca = dir.join("ca.pem").display(),
        cert = cert_path.display(),
        key = key_path.display()
    );
    Ok(())
}

fn ca_params(valid_for: Duration) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name("smai private CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    set_validity(&mut params, valid_for);
    params
}

fn leaf_params(common_name: &str, valid_for: Duration, usage: ExtendedKeyUsagePurpose) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    set_validity(&mut params, valid_for);
    params
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

/// From a minute ago, so a client whose clock is slightly behind accepts it at once.
fn set_validity(params: &mut CertificateParams, valid_for: Duration) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(1);
    params.not_after = now + valid_for;
}

fn san(host: &str) -> anyhow::Result<SanType> {
    let host = host.trim();
    Ok(match host.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(host.to_owned().try_into().with_context(|| format!("invalid host name {host:?}"))?),
    })
}

/// Private keys are readable by their owner only.
fn write_file(path: &Path, contents: &str, private: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let _ = private;
    let mut file = options.open(path).with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

fn print_usage(dir: &Path, hosts: &[String]) {
    let file = |name: &str| dir.join(name).display().to_string();
    println!("Wrote a private CA and a server certificate for {} in {}.", hosts.join(", "), dir.display());
    println!("\nServe HTTPS:\n  smai serve --tls-cert {} --tls-key {}", file("server.pem"), file("server-key.pem"));
    println!("\nClients trust {} (keep {} secret; it signs certificates):", file("ca.pem"), file("ca-key.pem"));
    println!("  curl --cacert {} https://{}:8080/healthz", file("ca.pem"), url_host(&hosts[0]));
    println!("  Python httpx/openai: httpx.Client(verify=\"{}\")", file("ca.pem"));
    println!("  Python ssl/websockets: ssl.create_default_context(cafile=\"{}\")", file("ca.pem"));
    println!(
        "  Python grpc: grpc.ssl_channel_credentials(root_certificates=open(\"{}\", \"rb\").read())",
        file("ca.pem")
    );
    println!("\nFor mutual TLS: smai tls client NAME --dir {}", dir.display());
}

fn url_host(host: &str) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
        _ => host.to_owned(),
    }
}
