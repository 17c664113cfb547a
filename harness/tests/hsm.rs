//! The real `dare` binary on a store whose master keys are wrapped inside a SoftHSM2 token
//! (docs/KEYS.md §5.4): init, put, rotate, get; a wrong PIN, a missing token or key, a key
//! that could leave the HSM, another key, no HSM at all — each refused with one clear line,
//! a non-zero exit and nothing changed. Every output of every test is checked for the PIN.
//!
//! Each test runs in a process of its own with its own token directory
//! (`dare_testkit::softhsm::isolated`); the `dare` processes it starts inherit
//! `SOFTHSM2_CONF`. Without SoftHSM2 the tests fail, saying `apt-get install softhsm2`.

mod common;

use std::cell::RefCell;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{Store, check_failure, pattern, write};
use dare_testkit::softhsm::{self, KeySpec, SoftHsm, Token};
use serde_json::Value;

/// A store directory (not created yet) on a SoftHSM2 token, and every output so far.
struct Hsm {
    store: Store,
    token: Token,
    pin_file: PathBuf,
    /// Secrets that must never be printed: the token's PINs and every wrong PIN tried.
    secrets: RefCell<Vec<String>>,
    outputs: RefCell<Vec<String>>,
}

impl Hsm {
    /// Token `dare`; a key `dare-root` dare accepts unless `key` is `false`.
    fn new(hsm: &SoftHsm, key: bool) -> Hsm {
        let token = hsm.init_token("dare");
        if key {
            hsm.create_key(&token, &KeySpec::good("dare-root"));
        }
        let store = Store::empty();
        let pin_file = store.tmp("pin");
        secret_file(&pin_file, &token.pin);
        Hsm {
            secrets: RefCell::new(vec![token.pin.clone(), token.so_pin.clone()]),
            store,
            token,
            pin_file,
            outputs: RefCell::new(Vec::new()),
        }
    }

    /// The `--hsm-*` flags for `key` with the PIN file `pin`.
    fn flags(key: &str, pin: &Path) -> Vec<OsString> {
        let mut v: Vec<OsString> = vec!["--hsm-module".into(), softhsm::module().into()];
        v.extend(["--hsm-token", "dare", "--hsm-key", key].map(OsString::from));
        v.push("--hsm-pin-file".into());
        v.push(pin.into());
        v
    }

    /// Runs `dare --store S ARGS` with `extra` global flags and environment; records its
    /// output.
    fn run_with(&self, extra: &[OsString], env: &[(&str, &str)], args: &[&str]) -> Output {
        let mut c = self.store.cmd(args);
        c.args(extra);
        for (k, v) in env {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        self.outputs.borrow_mut().push(format!(
            "dare {args:?} {extra:?}:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ));
        o
    }

    /// With the right key and PIN file.
    fn run(&self, args: &[&str]) -> Output {
        self.run_with(&Self::flags("dare-root", &self.pin_file), &[], args)
    }

    fn ok(&self, args: &[&str]) -> Vec<u8> {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "dare {args:?} failed ({:?}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        o.stdout
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_slice(&self.ok(args)).unwrap()
    }

    /// What must not change when a command is refused: the key records and the data files.
    fn state(&self) -> (Value, Vec<(PathBuf, Vec<u8>)>) {
        (
            self.json(&["keys", "dump", "--json"]),
            self.store.data_files().into_iter().collect(),
        )
    }

    fn uri(&self) -> String {
        "pkcs11:token=dare;object=dare-root;type=secret-key".to_string()
    }
}

impl Drop for Hsm {
    /// No output of the test, success or error, `--json` or not, holds a PIN.
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        for out in self.outputs.borrow().iter() {
            for s in self.secrets.borrow().iter() {
                assert!(!out.contains(s.as_str()), "a PIN was printed: {out}");
            }
        }
    }
}

/// A file holding `secret`, mode 0600.
fn secret_file(p: &Path, secret: &str) {
    fs::write(p, format!("{secret}\n")).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(0o600)).unwrap();
}

/// A refused command: one line, exit status `code`, the line contains `needle`.
fn refused(o: &Output, code: i32, needle: &str) -> String {
    let (c, line) = check_failure(needle, o);
    assert_eq!(c, code, "{line}");
    assert!(line.contains(needle), "expected {needle:?} in: {line}");
    line
}

#[test]
fn init_put_rotate_get_on_softhsm() {
    let Some(hsm) = softhsm::isolated("init_put_rotate_get_on_softhsm") else {
        return;
    };
    let h = Hsm::new(&hsm, true);
    let init = h.json(&["init", "--chunk-size", "4096", "--json"]);
    assert_eq!(init["root_of_trust"], "pkcs11");
    assert_eq!(init["hsm_key"], h.uri().as_str());
    // No root key file: the HSM is the root of trust.
    assert!(!h.store.path.join("root.key").exists());
    h.ok(&["bucket", "create", "photos"]);
    let a = pattern(10_000, 1);
    let b = pattern(3, 2);
    let fa = h.store.tmp("a");
    let fb = h.store.tmp("b");
    write(&fa, &a);
    write(&fb, &b);
    h.ok(&["put", "photos/a", fa.to_str().unwrap()]);
    h.ok(&["put", "photos/b", fb.to_str().unwrap()]);

    let rot = h.json(&["keys", "rotate", "--wait", "--json"]);
    assert_eq!(rot["task"]["state"], "completed", "{rot}");
    let c = pattern(70_000, 3);
    let fc = h.store.tmp("c");
    write(&fc, &c);
    h.ok(&["put", "photos/c", fc.to_str().unwrap()]);
    // The PIN from DARE_HSM_PIN instead of a file, for a rotation run in the background.
    let mut env_flags = Hsm::flags("dare-root", &h.pin_file);
    env_flags.truncate(env_flags.len() - 2);
    let pin = h.token.pin.clone();
    let bg = h.run_with(&env_flags, &[("DARE_HSM_PIN", &pin)], &["keys", "rotate"]);
    assert!(
        bg.status.success(),
        "{}",
        String::from_utf8_lossy(&bg.stderr)
    );
    let id = String::from_utf8_lossy(&bg.stdout).trim().to_string();
    let st = h.run_with(
        &env_flags,
        &[("DARE_HSM_PIN", &pin)],
        &["keys", "rotation", "status", &id, "--wait", "--json"],
    );
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );

    for (name, want) in [("a", &a), ("b", &b), ("c", &c)] {
        assert_eq!(&h.ok(&["get", &format!("photos/{name}")]), want, "{name}");
    }
    // The store records the key's URI; every master key blob is the §5.4 layout.
    let dump = h.json(&["keys", "dump", "--json"]);
    assert_eq!(dump["store"]["root_of_trust"], h.uri().as_str());
    let masters = dump["master_keys"].as_array().unwrap();
    assert_eq!(masters.len(), 3, "{dump}");
    for m in masters {
        let blob = base64_decode(m["wrapped"].as_str().unwrap());
        assert_eq!(blob.len(), 53);
        assert_eq!(&blob[..5], &[1, 0x0a, 0x21, 0, 0]);
        assert_eq!(
            &blob[5..13],
            &base64_decode(masters[0]["wrapped"].as_str().unwrap())[5..13]
        );
    }
}

#[test]
fn wrong_pin_refused_and_nothing_changed() {
    let Some(hsm) = softhsm::isolated("wrong_pin_refused_and_nothing_changed") else {
        return;
    };
    let h = Hsm::new(&hsm, true);
    h.ok(&["init", "--chunk-size", "4096"]);
    h.ok(&["bucket", "create", "photos"]);
    let fa = h.store.tmp("a");
    write(&fa, &pattern(5000, 7));
    h.ok(&["put", "photos/a", fa.to_str().unwrap()]);
    let before = h.state();

    let wrong = format!("{}-wrong", h.token.pin);
    h.secrets.borrow_mut().push(wrong.clone());
    let wrong_file = h.store.tmp("wrong-pin");
    secret_file(&wrong_file, &wrong);
    let flags = Hsm::flags("dare-root", &wrong_file);
    for args in [
        vec!["get", "photos/a"],
        vec!["put", "photos/b", fa.to_str().unwrap()],
        vec!["keys", "rotate", "--wait"],
        vec!["keys", "dump", "--json"],
        vec!["bucket", "create", "more"],
        vec!["rm", "photos/a"],
    ] {
        let o = h.run_with(&flags, &[], &args);
        let line = refused(&o, 1, "refused the PIN (CKR_PIN_INCORRECT)");
        assert!(line.contains("\"dare\""), "{line}");
    }
    // Through DARE_HSM_PIN too.
    let mut env_flags = flags.clone();
    env_flags.truncate(env_flags.len() - 2);
    let o = h.run_with(
        &env_flags,
        &[("DARE_HSM_PIN", &wrong)],
        &["get", "photos/a"],
    );
    refused(&o, 1, "refused the PIN");
    assert_eq!(h.state(), before);

    // A new store with a wrong PIN: nothing is created.
    let other = h.store.tmp("other");
    let mut c = h.store.cmd_at(&other, &["init"]);
    c.args(&flags);
    let o = c.output().unwrap();
    h.outputs
        .borrow_mut()
        .push(String::from_utf8_lossy(&o.stderr).into_owned());
    refused(&o, 1, "refused the PIN");
    assert!(!other.exists());
}

#[test]
fn missing_token_or_key_refused() {
    let Some(hsm) = softhsm::isolated("missing_token_or_key_refused") else {
        return;
    };
    let h = Hsm::new(&hsm, true);
    h.ok(&["init", "--chunk-size", "4096"]);
    let before = h.state();
    let mut flags = Hsm::flags("dare-root", &h.pin_file);
    flags[3] = "no-such-token".into();
    let o = h.run_with(&flags, &[], &["bucket", "ls"]);
    let line = refused(&o, 1, "no initialised token labelled \"no-such-token\"");
    assert!(line.contains("tokens found: \"dare\""), "{line}");
    let o = h.run_with(
        &Hsm::flags("no-such-key", &h.pin_file),
        &[],
        &["bucket", "ls"],
    );
    refused(&o, 1, "holds no secret key labelled \"no-such-key\"");
    // Module, token and key go together.
    let o = h.run_with(&flags[..4], &[], &["bucket", "ls"]);
    refused(&o, 2, "missing: --hsm-key LABEL (DARE_HSM_KEY)");
    assert_eq!(h.state(), before);
    // Nothing is created for a new store either.
    let other = h.store.tmp("other");
    let mut c = h.store.cmd_at(&other, &["init"]);
    c.args(Hsm::flags("no-such-key", &h.pin_file));
    refused(&c.output().unwrap(), 1, "no secret key labelled");
    assert!(!other.exists());
}

/// A key that can leave the HSM is refused: `dare init` creates nothing on it.
#[test]
fn extractable_or_non_sensitive_key_refused() {
    let Some(hsm) = softhsm::isolated("extractable_or_non_sensitive_key_refused") else {
        return;
    };
    let h = Hsm::new(&hsm, false);
    let mut spec = KeySpec::good("extractable");
    spec.extractable = true;
    hsm.create_key(&h.token, &spec);
    let mut spec = KeySpec::good("readable");
    spec.sensitive = false;
    hsm.create_key(&h.token, &spec);
    let mut spec = KeySpec::good("aes-128");
    spec.len = 16;
    hsm.create_key(&h.token, &spec);
    for (key, needle) in [
        (
            "extractable",
            "it is extractable (CKA_EXTRACTABLE is not false)",
        ),
        (
            "readable",
            "it is not sensitive (CKA_SENSITIVE is not true)",
        ),
        ("aes-128", "it is a 128-bit AES key"),
    ] {
        let o = h.run_with(&Hsm::flags(key, &h.pin_file), &[], &["init"]);
        let line = refused(&o, 1, needle);
        assert!(
            line.contains(&format!(
                "refusing the HSM key pkcs11:token=dare;object={key}"
            )),
            "{line}"
        );
        assert!(!h.store.path.exists());
    }
}

/// `dare hsm init-key` makes a key dare accepts (and refuses to make it twice); a store on
/// it cannot be opened without an HSM or with another key, and an HSM does not open a store
/// protected otherwise.
#[test]
fn init_key_and_the_wrong_root() {
    let Some(hsm) = softhsm::isolated("init_key_and_the_wrong_root") else {
        return;
    };
    let h = Hsm::new(&hsm, false);
    let made = h.json(&["hsm", "init-key", "--json"]);
    assert_eq!(made["hsm_key"], h.uri().as_str());
    assert_eq!(made["extractable"], false);
    let o = h.run(&["hsm", "init-key"]);
    refused(&o, 1, "already holds an object labelled");
    h.ok(&["init"]);
    h.ok(&["bucket", "create", "photos"]);
    let before = h.state();

    // No HSM options: the error names the key the store needs.
    let o = h.store.run(&["bucket", "ls"]);
    h.outputs
        .borrow_mut()
        .push(String::from_utf8_lossy(&o.stderr).into_owned());
    let line = refused(
        &o,
        1,
        "protected by the HSM key pkcs11:token=dare;object=dare-root",
    );
    assert!(line.contains("--hsm-module"), "{line}");
    // Another key on the same token.
    let o = h.run_with(&Hsm::flags("spare", &h.pin_file), &[], &["hsm", "init-key"]);
    assert!(o.status.success());
    let o = h.run_with(&Hsm::flags("spare", &h.pin_file), &[], &["bucket", "ls"]);
    refused(&o, 4, "cannot unwrap this store's master key");
    // A passphrase and an HSM at once.
    let mut flags = Hsm::flags("dare-root", &h.pin_file);
    flags.extend(["--passphrase-file".into(), h.pin_file.clone().into()]);
    let o = h.run_with(&flags, &[], &["bucket", "ls"]);
    refused(&o, 2, "choose one root of trust");
    assert_eq!(h.state(), before);

    // A store with a root key file refuses the HSM.
    let plain = Store::new(4096);
    let mut c = plain.cmd(&["bucket", "ls"]);
    c.args(Hsm::flags("dare-root", &h.pin_file));
    let o = c.output().unwrap();
    h.outputs
        .borrow_mut()
        .push(String::from_utf8_lossy(&o.stderr).into_owned());
    refused(&o, 1, "protected by root-key-file, not by an HSM");
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}
