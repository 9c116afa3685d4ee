//! scripts/setup: finds an installed system and changes nothing, and refuses with the exact
//! apt-get line when a package is missing and it can neither be root nor use sudo.

use std::path::{Path, PathBuf};
use std::process::Command;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/setup")
}

#[test]
fn a_second_run_on_an_installed_system_installs_nothing() {
    // The suite runs after scripts/setup --test, so everything is in place here.
    for _ in 0..2 {
        let out = Command::new("bash").arg(script()).arg("--test").output().expect("bash runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("nothing to do"), "{stdout}");
    }
}

/// A PATH holding only stand-ins: a user without root, no sudo, and dpkg knowing no package.
fn unprivileged_path(dir: &Path) -> String {
    let stubs = [("id", "echo 1000"), ("dpkg", "exit 1"), ("cargo", "exit 0")];
    for (name, body) in stubs {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    dir.display().to_string()
}

#[test]
fn without_root_or_sudo_it_stops_with_the_line_to_run() {
    let dir = tempfile::tempdir().unwrap();
    let bash = Command::new("sh").args(["-c", "command -v bash"]).output().unwrap();
    let bash = String::from_utf8(bash.stdout).unwrap().trim().to_owned();
    let out = Command::new(bash).arg(script()).env("PATH", unprivileged_path(dir.path())).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it went on without the packages: {stderr}");
    assert!(
        stderr.contains(
            "apt-get install -y -qq gcc g++ make cmake clang libclang-dev libsonic-dev libopus-dev pkg-config \
             python3-pip"
        ),
        "{stderr}"
    );
}
