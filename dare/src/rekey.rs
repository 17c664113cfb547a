//! Rekey: moving a store's master keys to another root of trust — internal (a root key file
//! or a passphrase), a PKCS#11 HSM, or (merged separately) a KMIP key server — as an
//! asynchronous, resumable task (NetApp Element's RekeySoftwareEncryptionAtRestMasterKey and
//! GetAsyncResult; docs/KEYS.md §8.3). The task itself is `dare-keys`' ([`KeyStore::start_rekey`],
//! [`KeyStore::run_rekey`]); this module builds the target root from a [`Root`] and ties it to
//! an open store.
//!
//! A store runs or resumes a rekey only when opened with both roots:
//! [`Dare::open_with_target`]. Before the task's switch (step 3) the store opens with its old
//! root alone, after it with the new root alone; objects read at every step.
//!
//! [`KeyStore::start_rekey`]: dare_keys::KeyStore::start_rekey
//! [`KeyStore::run_rekey`]: dare_keys::KeyStore::run_rekey

use std::path::Path;
use std::sync::Arc;

use dare_hsm::PkcsRoot;
use dare_keys::{
    KeysInfo, PassphraseRoot, RootOfTrust, RotationOptions, RotationStatus, TaskReport,
};

use crate::error::Error;
use crate::store::{Dare, Root, root_of_trust};

/// The root of trust a rekey moves to, built from `target`: `root.key` in `dir` (created,
/// mode 0600, if missing), a passphrase (at least 12 bytes: it protects the store from now
/// on), an HSM key (opened: module, token, PIN and key checked), or a custom root.
pub(crate) fn target_root(dir: &Path, target: &Root) -> Result<Arc<dyn RootOfTrust>, Error> {
    Ok(match target {
        Root::Passphrase(p) => {
            dare_keys::check_new_passphrase(p)?;
            Arc::new(PassphraseRoot::new(p.to_vec()))
        }
        Root::Pkcs11 { config, pin } => Arc::new(PkcsRoot::open(config, pin)?),
        Root::KeyFile | Root::Kmip { .. } | Root::Custom(_) => root_of_trust(dir, target, true)?,
    })
}

impl Dare {
    /// The rekey target this handle was opened with; [`Error::InvalidArgument`] without one.
    fn target(&self) -> Result<Arc<dyn RootOfTrust>, Error> {
        self.rekey_target.clone().ok_or_else(|| {
            Error::InvalidArgument(
                "a rekey needs the store opened with its target root of trust \
                 (Dare::open_with_target)"
                    .into(),
            )
        })
    }

    /// Starts a rekey to the target this handle was opened with and returns its handle (the
    /// task id). Refuses while a rotation or rekey is unfinished (naming it), and a target
    /// that already protects the store. Nothing is written when it refuses.
    pub fn start_rekey(&self) -> Result<u64, Error> {
        let target = self.target()?;
        Ok(self.keys.start_rekey(&*target)?)
    }

    /// Runs rekey task `id` here until it completes (or fails, leaving it resumable).
    pub fn run_rekey(&self, id: u64, opts: &RotationOptions) -> Result<RotationStatus, Error> {
        let target = self.target()?;
        Ok(self.keys.run_rekey(id, target, opts)?)
    }

    /// Resumes rekey task `id` from its last saved step.
    pub fn resume_rekey(&self, id: u64, opts: &RotationOptions) -> Result<RotationStatus, Error> {
        let target = self.target()?;
        Ok(self.keys.resume_rekey(id, target, opts)?)
    }

    /// The report of a rotation or rekey task (NetApp's GetAsyncResult): state, times, the
    /// master key it decommissions and the one it made.
    pub fn task(&self, id: u64) -> Result<TaskReport, Error> {
        Ok(self.keys.task_report(id)?)
    }

    /// The store's master keys: the current one and who protects it, and every other one
    /// with its deactivation (NetApp's GetSoftwareEncryptionAtRestInfo).
    pub fn key_info(&self) -> Result<KeysInfo, Error> {
        Ok(self.keys.key_info()?)
    }
}
