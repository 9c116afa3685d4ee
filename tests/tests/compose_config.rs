//! docker-compose.yml and its variants under deploy/compose/ are valid for docker-compose, keep
//! the server on loopback with its state on named volumes, and name only environment variables
//! that smai reads; the systemd unit passes systemd-analyze. Skipped, with a message, where the
//! tool is not installed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// `docker-compose` (v1) or `docker compose` (v2), whichever answers.
fn compose_command() -> Option<Vec<&'static str>> {
    [vec!["docker-compose"], vec!["docker", "compose"]].into_iter().find(|command| {
        let mut args = command[1..].to_vec();
        args.push("version");
        Command::new(command[0]).args(args).output().is_ok_and(|out| out.status.success())
    })
}

fn config(compose: &[&str], files: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(compose[0]);
    command.args(&compose[1..]).current_dir(root());
    for file in files {
        command.args(["-f", file]);
    }
    // The defaults must be what is tested, not the caller's environment.
    for variable in [
        "SMAI_BIND",
        "SMAI_PORT",
        "SMAI_GRPC_PORT",
        "SMAI_AUTH",
        "SMAI_MODELS_EXPORT",
        "SMAI_TLS_DIR",
        "SMAI_WYOMING_KEY_ID",
        "SMAI_WYOMING_PORT",
    ] {
        command.env_remove(variable);
    }
    command.envs(env.iter().copied()).arg("config").output().expect("compose runs")
}

fn rendered(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    text
}

#[test]
fn the_stack_and_its_variants_pass_compose_config() {
    let Some(compose) = compose_command() else {
        eprintln!(
            "SKIPPED: neither docker-compose nor `docker compose` is installed (scripts/setup --test installs it)"
        );
        return;
    };
    let base = rendered(&config(&compose, &["docker-compose.yml"], &[]));
    assert!(base.contains("127.0.0.1:8080:8080"), "published on loopback by default:\n{base}");
    assert!(base.contains("127.0.0.1:50051:50051"), "gRPC published on loopback by default:\n{base}");
    for expected in
        ["models:/var/lib/smai/models", "data:/var/lib/smai/data", "service_completed_successfully", "healthcheck"]
    {
        assert!(base.contains(expected), "{expected} missing:\n{base}");
    }
    let private = rendered(&config(&compose, &["docker-compose.yml"], &[("SMAI_BIND", "10.0.0.5")]));
    assert!(private.contains("10.0.0.5:8080:8080"), "{private}");

    let tls = rendered(&config(&compose, &["docker-compose.yml", "deploy/compose/tls.yml"], &[]));
    assert!(tls.contains("SMAI_TLS_CERT: /etc/smai/tls/server.pem") && tls.contains("/etc/smai/tls:ro"), "{tls}");
    let no_auth = rendered(&config(&compose, &["docker-compose.yml", "deploy/compose/no-auth.yml"], &[]));
    assert!(no_auth.contains("SMAI_AUTH: disabled"), "{no_auth}");

    let air_gapped = ["docker-compose.yml", "deploy/compose/air-gapped.yml"];
    let refused = config(&compose, &air_gapped, &[]);
    assert!(!refused.status.success(), "the air-gapped variant needs SMAI_MODELS_EXPORT");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("SMAI_MODELS_EXPORT"));
    let imported = rendered(&config(&compose, &air_gapped, &[("SMAI_MODELS_EXPORT", "/media/smai-models")]));
    assert!(imported.contains("/media/smai-models:/import:ro") && imported.contains("SMAI_MODELS_FROM: /import"));

    let wyoming = ["docker-compose.yml", "deploy/compose/wyoming.yml"];
    let refused = config(&compose, &wyoming, &[]);
    assert!(!refused.status.success(), "the Wyoming variant needs the key it runs as");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("SMAI_WYOMING_KEY_ID"));
    let wyoming = rendered(&config(&compose, &wyoming, &[("SMAI_WYOMING_KEY_ID", "key_home")]));
    assert!(wyoming.contains("127.0.0.1:10300:10300"), "Wyoming published on loopback by default:\n{wyoming}");
    assert!(wyoming.contains("SMAI_WYOMING_KEY_ID: key_home"), "{wyoming}");
}

/// Every `SMAI_*` variable the compose files and the unit's environment file set is one that
/// smai declares (a misspelt variable would be silently ignored).
#[test]
fn the_deployment_files_name_only_variables_smai_reads() {
    let sources = [
        "crates/server/src/config.rs",
        "crates/server/src/cli/mod.rs",
        "crates/server/src/cli/models.rs",
        "crates/inference/src/phonemize/espeak.rs",
    ];
    let declared: String = sources.iter().map(|s| std::fs::read_to_string(root().join(s)).unwrap()).collect();
    let files = [
        "docker-compose.yml",
        "deploy/compose/tls.yml",
        "deploy/compose/no-auth.yml",
        "deploy/compose/air-gapped.yml",
        "deploy/compose/wyoming.yml",
        "deploy/smai.env",
        "Dockerfile",
    ];
    // Variables compose itself substitutes (image tags, ports, folders), not read by smai.
    let compose_only = [
        "SMAI_VERSION",
        "SMAI_RUST_IMAGE",
        "SMAI_DEBIAN_IMAGE",
        "SMAI_BIND",
        "SMAI_PORT",
        "SMAI_GRPC_PORT",
        "SMAI_TLS_DIR",
        "SMAI_MODELS_EXPORT",
        "SMAI_WYOMING_PORT",
    ];
    for file in files {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        for variable in smai_variables(&text) {
            if compose_only.contains(&variable.as_str()) {
                continue;
            }
            let read = [format!("env = \"{variable}\""), format!("var(\"{variable}\")")];
            assert!(read.iter().any(|r| declared.contains(r)), "{file} sets {variable}, which smai does not read");
        }
    }
}

fn smai_variables(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("SMAI_") {
        let name: String =
            rest[at..].chars().take_while(|c| c.is_ascii_uppercase() || *c == '_' || c.is_ascii_digit()).collect();
        rest = &rest[at + name.len()..];
        // `SMAI_*` in prose names the family, not a variable.
        if name.len() > "SMAI_".len() {
            found.push(name);
        }
    }
    found
}

/// deploy/smai.service passes `systemd-analyze verify` (its directives, their values, the
/// sandboxing options) where systemd is installed; the binary's path is swapped for one that
/// exists here.
#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("SKIPPED: systemd-analyze is not installed");
        return;
    };
    assert!(version.status.success());
    let unit = std::fs::read_to_string(root().join("deploy/smai.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/smai serve"), "{unit}");
    for hardening in
        ["User=smai", "ProtectSystem=strict", "StateDirectory=smai", "Restart=on-failure", "NoNewPrivileges=yes"]
    {
        assert!(unit.contains(hardening), "{hardening} missing");
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("smai.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/smai serve", "/bin/true serve")).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&copy).output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && report.trim().is_empty(), "systemd-analyze verify: {report}");
}
