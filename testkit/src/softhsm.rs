//! SoftHSM2 tokens for the tests of dare's PKCS#11 root of trust, made by the test itself.
//!
//! SoftHSM2 reads its configuration from `SOFTHSM2_CONF` once, when the module is
//! initialised, and a process's login state on a token is shared by all its sessions. So a
//! test that uses a token runs in a process of its own, started with `SOFTHSM2_CONF` pointing
//! at a configuration whose `directories.tokendir` is a fresh temporary directory:
//!
//! ```no_run
//! use dare_testkit::softhsm::{self, KeySpec};
//!
//! #[test]
//! fn round_trip() {
//!     // In the test process: makes the directory and runs this same test again in a child
//!     // process with SOFTHSM2_CONF set, asserts that it passed, and returns None.
//!     let Some(hsm) = softhsm::isolated("round_trip") else { return };
//!     // In the child: tokens first (the module sees only tokens made before it starts).
//!     let token = hsm.init_token("dare");
//!     hsm.create_key(&token, &KeySpec::good("dare-root"));
//!     // ... open the root of trust on softhsm::module(), token.label, token.pin ...
//! }
//! ```
//!
//! Without `softhsm2-util` or the module, [`SoftHsm::new`] panics saying how to install
//! them (`apt-get install softhsm2`): a test that cannot have its token fails, it never
//! passes without one. Keys are made through cryptoki with exactly the attributes a test asks
//! for ([`KeySpec`]), including the ones dare must refuse.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;

/// Set in the child process [`isolated`] starts: the token directory's parent.
const CHILD_ENV: &str = "DARE_TESTKIT_SOFTHSM_DIR";

/// Where distributions put the SoftHSM2 module.
const MODULES: [&str; 5] = [
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];

const INSTALL: &str = "SoftHSM2 is needed by the PKCS#11 (HSM) tests: apt-get install softhsm2 \
                       (softhsm2-util and libsofthsm2.so)";

/// The SoftHSM2 PKCS#11 module. Panics, saying how to install it, when there is none.
pub fn module() -> PathBuf {
    MODULES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no SoftHSM2 module in {MODULES:?}. {INSTALL}"))
}

/// `softhsm2-util`. Panics, saying how to install it, when it is not on `PATH`.
pub fn util() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|d| d.join("softhsm2-util"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("softhsm2-util is not on PATH. {INSTALL}"))
}

/// A SoftHSM2 token directory and its configuration file.
#[derive(Debug)]
pub struct SoftHsm {
    dir: PathBuf,
    /// Removes the directory when the parent's handle is dropped (the child's has none).
    _tmp: Option<tempfile::TempDir>,
}

/// An initialised token: its label and its PINs (random, so a test can look for them in
/// every output).
#[derive(Debug, Clone)]
pub struct Token {
    /// The token's label.
    pub label: String,
    /// The user PIN.
    pub pin: String,
    /// The security officer's PIN.
    pub so_pin: String,
}

/// The attributes of a key a test creates: [`KeySpec::good`] is what dare accepts; a test
/// changes one field to get a key dare must refuse.
#[derive(Debug, Clone)]
pub struct KeySpec {
    /// `CKA_LABEL`.
    pub label: String,
    /// `CKA_KEY_TYPE`: `CKK_AES` or another.
    pub key_type: KeyType,
    /// `CKA_VALUE_LEN` in bytes (for a generated key).
    pub len: u64,
    /// `CKA_EXTRACTABLE`.
    pub extractable: bool,
    /// `CKA_SENSITIVE`.
    pub sensitive: bool,
    /// `CKA_WRAP`.
    pub wrap: bool,
    /// `CKA_UNWRAP`.
    pub unwrap: bool,
    /// A known value (`C_CreateObject`) instead of one generated inside the token.
    pub value: Option<Vec<u8>>,
}

impl KeySpec {
    /// A 256-bit AES key, generated in the token, never extractable, sensitive, wrap and
    /// unwrap only.
    pub fn good(label: &str) -> KeySpec {
        KeySpec {
            label: label.to_string(),
            key_type: KeyType::AES,
            len: 32,
            extractable: false,
            sensitive: true,
            wrap: true,
            unwrap: true,
            value: None,
        }
    }
}

/// Runs the calling test again in a child process of its own whose `SOFTHSM2_CONF` points at
/// a fresh token directory, and asserts that it passed; returns `None` then. In that child,
/// returns the directory. `test` is the test's path as libtest names it (`round_trip`, or
/// `module::round_trip`).
pub fn isolated(test: &str) -> Option<SoftHsm> {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        return Some(SoftHsm {
            dir: PathBuf::from(dir),
            _tmp: None,
        });
    }
    let hsm = SoftHsm::new();
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads", "1"])
        .env("SOFTHSM2_CONF", hsm.conf())
        .env(CHILD_ENV, &hsm.dir)
        .output()
        .expect("cannot run the test binary again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{test} failed in its SoftHSM2 process ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    None
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).expect("the system random number generator");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl SoftHsm {
    /// A new token directory and configuration in a temporary directory (mode 0700). Panics,
    /// saying how to install SoftHSM2, when `softhsm2-util` or the module is missing.
    pub fn new() -> SoftHsm {
        util();
        module();
        let tmp = tempfile::Builder::new()
            .prefix("dare-softhsm-")
            .tempdir()
            .expect("a temporary directory");
        let dir = tmp.path().to_path_buf();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        fs::create_dir(dir.join("tokens")).unwrap();
        fs::write(
            dir.join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n\
                 slots.removable = false\n",
                dir.join("tokens").display()
            ),
        )
        .unwrap();
        SoftHsm {
            dir,
            _tmp: Some(tmp),
        }
    }

    /// The configuration file (`SOFTHSM2_CONF`).
    pub fn conf(&self) -> PathBuf {
        self.dir.join("softhsm2.conf")
    }

    /// The directory (the configuration and `tokens/`); a test may keep PIN files here.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Initialises a token in the next free slot with random PINs (`softhsm2-util
    /// --init-token --free`). Call it before the module is first initialised in the process:
    /// SoftHSM2 does not see tokens made after that.
    pub fn init_token(&self, label: &str) -> Token {
        let t = Token {
            label: label.to_string(),
            pin: format!("pin-{}", random_hex(8)),
            so_pin: format!("so-{}", random_hex(8)),
        };
        let out = Command::new(util())
            .env("SOFTHSM2_CONF", self.conf())
            .args([
                OsStr::new("--init-token"),
                OsStr::new("--free"),
                OsStr::new("--label"),
                OsStr::new(label),
                OsStr::new("--so-pin"),
                OsStr::new(&t.so_pin),
                OsStr::new("--pin"),
                OsStr::new(&t.pin),
            ])
            .output()
            .expect("cannot run softhsm2-util");
        assert!(
            out.status.success(),
            "softhsm2-util --init-token failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    /// Creates a token secret key with exactly the attributes of `spec`, through cryptoki, in
    /// a session of its own that is closed (so the process is logged out again) before this
    /// returns. The process's `SOFTHSM2_CONF` must be this directory's ([`isolated`]).
    pub fn create_key(&self, token: &Token, spec: &KeySpec) {
        assert_eq!(
            std::env::var_os("SOFTHSM2_CONF").map(PathBuf::from),
            Some(self.conf()),
            "create_key runs in the process `isolated` started"
        );
        let ctx = Pkcs11::new(module()).expect("cannot load the SoftHSM2 module");
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => panic!("C_Initialize: {e}"),
        }
        let slot = ctx
            .get_slots_with_token()
            .unwrap()
            .into_iter()
            .find(|s| ctx.get_token_info(*s).unwrap().label() == token.label)
            .unwrap_or_else(|| panic!("no token {:?}", token.label));
        let session = ctx.open_rw_session(slot).unwrap();
        match session.login(UserType::User, Some(&AuthPin::from(token.pin.as_str()))) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => panic!("C_Login: {e}"),
        }
        let mut t = vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(spec.key_type),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Label(spec.label.as_bytes().to_vec()),
            Attribute::Extractable(spec.extractable),
            Attribute::Sensitive(spec.sensitive),
            Attribute::Wrap(spec.wrap),
            Attribute::Unwrap(spec.unwrap),
        ];
        match &spec.value {
            Some(v) => {
                t.push(Attribute::Value(v.clone()));
                session.create_object(&t).expect("C_CreateObject");
            }
            None => {
                t.push(Attribute::ValueLen(spec.len.into()));
                let mech = if spec.key_type == KeyType::AES {
                    Mechanism::AesKeyGen
                } else if spec.key_type == KeyType::GENERIC_SECRET {
                    Mechanism::GenericSecretKeyGen
                } else {
                    panic!("create_key generates AES and generic secret keys only")
                };
                session.generate_key(&mech, &t).expect("C_GenerateKey");
            }
        }
        session.close().unwrap();
    }
}

impl Default for SoftHsm {
    fn default() -> Self {
        SoftHsm::new()
    }
}
