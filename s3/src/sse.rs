//! The SSE request headers: SSE-C (`x-amz-server-side-encryption-customer-*` and their
//! `copy-source` variants) and `x-amz-server-side-encryption` / `-aws-kms-key-id` on writes.
//!
//! SSE-C errors are AWS's: a key that is not 256 bits or whose MD5 does not match is 400
//! InvalidArgument, an algorithm other than AES256 400 InvalidEncryptionAlgorithmError, a key
//! over plain HTTP 400 InvalidRequest (unless the operator allowed it for testing).

use base64::Engine as _;
use dare::Secret32;
use s3s::crypto::{Checksum as _, Md5};
use s3s::{S3Error, s3_error};
use zeroize::Zeroizing;

/// The three SSE-C values of a request (or of its copy source).
pub(crate) struct SseC<'a> {
    pub algorithm: Option<&'a str>,
    pub key: Option<&'a str>,
    pub key_md5: Option<&'a str>,
}

/// A verified customer key and its MD5 (base64) to echo.
pub(crate) struct CustomerKey {
    pub key: Secret32,
    pub md5: String,
}

impl SseC<'_> {
    /// The customer key the headers give, verified; `None` when there are none.
    pub(crate) fn parse(&self, secure: bool) -> Result<Option<CustomerKey>, S3Error> {
        if self.algorithm.is_none() && self.key.is_none() && self.key_md5.is_none() {
            return Ok(None);
        }
        if !secure {
            return Err(s3_error!(
                InvalidRequest,
                "Requests specifying Server Side Encryption with Customer provided keys must \
                 be made over a secure connection."
            ));
        }
        let (Some(alg), Some(key), Some(md5)) = (self.algorithm, self.key, self.key_md5) else {
            return Err(s3_error!(
                InvalidArgument,
                "Requests specifying Server Side Encryption with Customer provided keys must \
                 provide the algorithm, the key and the key's MD5."
            ));
        };
        if alg != "AES256" {
            return Err(s3_error!(
                InvalidEncryptionAlgorithmError,
                "The encryption request you specified is not valid. The valid value is AES256."
            ));
        }
        let raw = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(key.trim())
                .map_err(|_| {
                    s3_error!(
                        InvalidArgument,
                        "The secret key was invalid for the specified algorithm."
                    )
                })?,
        );
        let Ok(bytes) = <[u8; 32]>::try_from(raw.as_slice()) else {
            return Err(s3_error!(
                InvalidArgument,
                "The secret key was invalid for the specified algorithm."
            ));
        };
        let bytes = Zeroizing::new(bytes);
        let mut h = Md5::new();
        h.update(&*bytes);
        let digest: [u8; 16] = h.finalize();
        let got = base64::engine::general_purpose::STANDARD.encode(digest);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            got.as_bytes(),
            md5.trim().as_bytes(),
        )) {
            return Err(s3_error!(
                InvalidArgument,
                "The calculated MD5 hash of the key did not match the hash that was provided."
            ));
        }
        Ok(Some(CustomerKey {
            key: Secret32::from_bytes("customer key", *bytes),
            md5: got,
        }))
    }
}
