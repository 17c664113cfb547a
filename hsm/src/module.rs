//! Loading a PKCS#11 module: once per process, after checking who may replace it.
//!
//! `C_Initialize` may run once per process per module, and the login state of a token is
//! the process's, shared by all its sessions (PKCS#11 v2.40 §5.4). So every [`crate::PkcsRoot`]
//! of one module shares one context, kept for the life of the process (never finalised: a
//! finalise would end every other root's sessions). A module another part of the process
//! initialised already (`CKR_CRYPTOKI_ALREADY_INITIALIZED`) is used as it is.
//!
//! Loading a module runs its code inside dare, with the master keys. So, as for a root key
//! file, a module that another local user could replace is refused before it is loaded: the
//! resolved file must be owned by the user running dare or root and not writable by group or
//! others, and so must its directory (`dare_keys::files`, Guard::Integrity).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use dare_keys::files::{self, Guard};

use crate::HsmError;

/// The modules this process loaded, by resolved path.
static LOADED: Mutex<Vec<(PathBuf, Pkcs11)>> = Mutex::new(Vec::new());

/// The context of the module at `path`, loaded and initialised on first use.
pub(crate) fn load(path: &Path) -> Result<Pkcs11, HsmError> {
    let fail = |why: String| HsmError::ModuleLoad {
        module: path.to_path_buf(),
        why,
    };
    let real = fs::canonicalize(path).map_err(|e| fail(e.to_string()))?;
    let md = fs::metadata(&real).map_err(|e| fail(e.to_string()))?;
    if !md.is_file() {
        return Err(fail(format!("{} is not a regular file", real.display())));
    }
    files::check_file("PKCS#11 module", &real, &md, Guard::Integrity).map_err(HsmError::File)?;
    files::check_dir("PKCS#11 module directory", &files::parent_of(&real), false)
        .map_err(HsmError::File)?;
    let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, ctx)) = loaded.iter().find(|(p, _)| *p == real) {
        return Ok(ctx.clone());
    }
    let ctx = Pkcs11::new(&real).map_err(|e| fail(e.to_string()))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(fail(format!("C_Initialize failed: {}", rv_text(&e)))),
    }
    loaded.push((real, ctx.clone()));
    Ok(ctx)
}

/// Finalises the module at `path` (C_Finalize) and forgets it, so that the next [`load`]
/// initialises it again and the module reads its tokens anew. Only for a module that shows no
/// initialised token at all (so no root of this process can be using it): see
/// `root::find_token_reloading`.
pub(crate) fn reload(path: &Path, ctx: Pkcs11) {
    let Ok(real) = fs::canonicalize(path) else {
        return;
    };
    let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    loaded.retain(|(p, _)| *p != real);
    drop(loaded);
    // A failure here leaves the module as it was; the next load reports what is wrong.
    let _ = ctx.finalize();
}

/// A cryptoki error in a few words: the return value's name (`PinIncorrect`), or the
/// binding's own message.
pub(crate) fn rv_text(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, _) => format!("{rv:?}"),
        other => other.to_string(),
    }
}
