//! The credentials file: one `ACCESS_KEY_ID:SECRET_ACCESS_KEY` per line. It holds secrets, so
//! it is refused unless only its owner can read it (mode 0600 or stricter); there is never a
//! default key pair.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use s3s::auth::SimpleAuth;
use zeroize::Zeroizing;

/// Why the credentials file was refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum CredentialsError {
    /// It could not be read.
    Io(PathBuf, std::io::Error),
    /// Group or others may read or write it.
    Mode(PathBuf, u32),
    /// A line is not `ACCESS_KEY_ID:SECRET_ACCESS_KEY` (line number, 1-based).
    Syntax(PathBuf, usize),
    /// An access key id appears twice.
    Duplicate(PathBuf, String),
    /// No key pair at all.
    Empty(PathBuf),
}

impl fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialsError::Io(p, e) => {
                write!(f, "cannot read credentials file {}: {e}", p.display())
            }
            CredentialsError::Mode(p, m) => write!(
                f,
                "credentials file {} has mode {m:o}: it holds secret keys, make it 0600 \
                 (chmod 600)",
                p.display()
            ),
            CredentialsError::Syntax(p, n) => write!(
                f,
                "credentials file {} line {n}: expected ACCESS_KEY_ID:SECRET_ACCESS_KEY",
                p.display()
            ),
            CredentialsError::Duplicate(p, id) => write!(
                f,
                "credentials file {}: access key id {id} appears twice",
                p.display()
            ),
            CredentialsError::Empty(p) => {
                write!(f, "credentials file {} holds no key pair", p.display())
            }
        }
    }
}

impl std::error::Error for CredentialsError {}

/// Reads the key pairs of `path` into the authenticator s3s verifies signatures with.
/// Returns it and the number of pairs.
pub fn load_credentials(path: &Path) -> Result<(Credentials, usize), CredentialsError> {
    let io = |e| CredentialsError::Io(path.to_owned(), e);
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mode = f.metadata().map_err(io)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CredentialsError::Mode(path.to_owned(), mode));
    }
    let mut text = Zeroizing::new(String::new());
    f.read_to_string(&mut text).map_err(io)?;
    let mut auth = SimpleAuth::new();
    let mut n = 0;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((id, secret)) = line.split_once(':') else {
            return Err(CredentialsError::Syntax(path.to_owned(), i + 1));
        };
        if id.is_empty() || secret.is_empty() || !id.bytes().all(|c| c.is_ascii_graphic()) {
            return Err(CredentialsError::Syntax(path.to_owned(), i + 1));
        }
        if auth.lookup(id).is_some() {
            return Err(CredentialsError::Duplicate(path.to_owned(), id.to_owned()));
        }
        auth.register(id.to_owned(), secret.into());
        n += 1;
    }
    if n == 0 {
        return Err(CredentialsError::Empty(path.to_owned()));
    }
    Ok((Credentials(auth), n))
}

/// The key pairs of a credentials file, as s3s's `SimpleAuth` holds them, answering an unknown
/// access key id as S3 does: 403 `InvalidAccessKeyId` (`SimpleAuth` says `NotSignedUp`).
#[derive(Debug)]
pub struct Credentials(SimpleAuth);

impl Credentials {
    /// Whether `access_key` is one of the file's key ids.
    pub fn knows(&self, access_key: &str) -> bool {
        self.0.lookup(access_key).is_some()
    }
}

#[async_trait::async_trait]
impl s3s::auth::S3Auth for Credentials {
    async fn get_secret_key(&self, access_key: &str) -> s3s::S3Result<s3s::auth::SecretKey> {
        match self.0.lookup(access_key) {
            Some(s) => Ok(s.clone()),
            None => Err(s3s::s3_error!(
                InvalidAccessKeyId,
                "The AWS access key Id you provided does not exist in our records."
            )),
        }
    }
}
