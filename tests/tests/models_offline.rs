//! An air-gapped install: `smai models export` copies installed models out, and
//! `smai models pull --from` installs them elsewhere with pip pointed at a closed port, so any
//! attempt to reach the registry would fail; a tampered export is refused with the hash named.

use smai_server::cli::{run_models, ModelsArgs, ModelsCommand};
use std::path::{Path, PathBuf};

const MODELS: [&str; 2] = ["tiny.en", "en_US-joe-medium"];

fn installed_models() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    std::env::var_os("SMAI_MODELS_DIR").map(PathBuf::from).unwrap_or_else(|| workspace.join("models/cache"))
}

/// `smai models ...` on `dir`; the error as its message with causes.
fn models(dir: &Path, command: ModelsCommand) -> Result<(), String> {
    run_models(ModelsArgs { dir: dir.to_path_buf(), manifest: None, command }).map_err(|e| format!("{e:#}"))
}

/// pip with its index on a port where nothing listens: a registry fetch cannot succeed.
fn offline_pull(from: &Path, only: &str) -> ModelsCommand {
    ModelsCommand::Pull {
        only: Some(only.into()),
        pip: "env -u PIP_FIND_LINKS PIP_INDEX_URL=http://127.0.0.1:9/simple python3 -m pip".into(),
        from: Some(from.to_path_buf()),
    }
}

#[test]
fn pull_from_an_export_installs_offline_and_refuses_a_tampered_file() {
    let source = installed_models();
    let export = tempfile::tempdir().unwrap();
    for id in MODELS {
        models(&source, ModelsCommand::Export { to: export.path().to_path_buf(), only: Some(id.into()) })
            .unwrap_or_else(|e| panic!("export {id} from {} (run `smai models pull`): {e}", source.display()));
    }

    let site = tempfile::tempdir().unwrap();
    for id in MODELS {
        models(site.path(), offline_pull(export.path(), id)).unwrap_or_else(|e| panic!("offline pull of {id}: {e}"));
        for file in std::fs::read_dir(source.join(id)).unwrap() {
            let name = file.unwrap().file_name();
            let (original, copy) = (source.join(id).join(&name), site.path().join(id).join(&name));
            assert_eq!(std::fs::metadata(&original).unwrap().len(), std::fs::metadata(&copy).unwrap().len());
        }
    }

    // One flipped byte in the exported voice: refused, nothing installed, the hash named.
    let voice = export.path().join("en_US-joe-medium/en_US-joe-medium.onnx.json");
    let mut bytes = std::fs::read(&voice).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&voice, bytes).unwrap();
    let other_site = tempfile::tempdir().unwrap();
    let refused = models(other_site.path(), offline_pull(export.path(), "en_US-joe-medium")).unwrap_err();
    let message = refused;
    assert!(message.contains("3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33"), "{message}");
    assert!(!other_site.path().join("en_US-joe-medium/en_US-joe-medium.onnx.json").exists());
}
