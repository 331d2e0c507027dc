//! The language packs in service, and their reload.
//!
//! The packs offered are the stored settings' `languages` (priority order, up to 9). They are
//! decoded, resampled, normalised and G.711-encoded once ([`PromptSets::load`]) and shared by
//! every call. A call takes the [`PromptSets`] current when it starts and keeps that `Arc` to
//! its end, so a reload never changes what a call in progress hears.
//!
//! A reload (SIGHUP, `POST /api/v1/langpacks/reload`, or a change of the stored languages)
//! loads everything again beside the packs in service; only a complete success replaces them.
//! A broken pack is refused with the loader's message and the old packs stay in service. A
//! refused reload after a change of `languages` is not retried by itself: fix the pack, then
//! SIGHUP or `POST /langpacks/reload` (which load the stored languages of that moment).

use crate::langpack::{Catalogue, PromptSets};
use anyhow::Context;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use tokio::sync::{mpsc, oneshot};

/// The packs in service. Cheap to read: one lock taken only to clone an `Arc`.
pub struct Prompts {
    current: RwLock<Arc<PromptSets>>,
    /// Serialises reloads (two at once would race to install).
    reloading: tokio::sync::Mutex<()>,
    packs_dir: PathBuf,
    catalogue: PathBuf,
}

/// A reload request (from the API): the reply is the summary line or the reason it failed.
pub type ReloadRequest = oneshot::Sender<Result<String, String>>;
pub type ReloadSender = mpsc::UnboundedSender<ReloadRequest>;

impl Prompts {
    /// Loads the packs for `tags` (blocking work on the blocking pool).
    pub async fn load(
        packs_dir: PathBuf,
        catalogue: PathBuf,
        tags: Vec<String>,
    ) -> anyhow::Result<Prompts> {
        let sets = load_sets(packs_dir.clone(), catalogue.clone(), tags).await?;
        Ok(Prompts {
            current: RwLock::new(Arc::new(sets)),
            reloading: tokio::sync::Mutex::new(()),
            packs_dir,
            catalogue,
        })
    }

    /// The packs a new call uses.
    pub fn current(&self) -> Arc<PromptSets> {
        // A poisoned lock only means a panic elsewhere while cloning an Arc: the value is fine.
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Loads `tags` again from disk and, only if every pack loads, puts them in service.
    /// Returns a one-line summary; on error the packs in service are unchanged.
    pub async fn reload(&self, tags: Vec<String>) -> anyhow::Result<String> {
        let _one_at_a_time = self.reloading.lock().await;
        let sets = load_sets(self.packs_dir.clone(), self.catalogue.clone(), tags).await?;
        let summary = summary(&sets);
        match self.current.write() {
            Ok(mut g) => *g = Arc::new(sets),
            Err(p) => *p.into_inner() = Arc::new(sets),
        }
        Ok(summary)
    }
}

/// `en-US 1.1.0, fr-FR 1.1.0 (2 prompts from another language)`.
pub fn summary(sets: &PromptSets) -> String {
    sets.iter()
        .map(|s| {
            let fallbacks = s.fallbacks().len();
            if fallbacks == 0 {
                format!("{} {}", s.language, s.manifest().version)
            } else {
                format!(
                    "{} {} ({fallbacks} prompts from another language)",
                    s.language,
                    s.manifest().version
                )
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn load_sets(
    packs_dir: PathBuf,
    catalogue_path: PathBuf,
    tags: Vec<String>,
) -> anyhow::Result<PromptSets> {
    tokio::task::spawn_blocking(move || -> anyhow::Result<PromptSets> {
        let catalogue = Catalogue::load(&catalogue_path).with_context(|| {
            format!("loading the prompt catalogue {}", catalogue_path.display())
        })?;
        let (sets, _warnings) =
            PromptSets::load(&packs_dir, &catalogue, &tags).with_context(|| {
                format!(
                    "loading language packs {tags:?} from {} (config key langpacks.dir; the \
                     languages are the self-provisioning settings' `languages`)",
                    packs_dir.display()
                )
            })?;
        Ok(sets)
    })
    .await
    .context("the pack loader panicked")?
}
