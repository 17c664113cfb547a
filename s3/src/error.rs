//! dare's errors as the S3 errors AWS gives for the same situation (code and status).
//! Messages are AWS's where a client might match on them; a library message is added only
//! where it holds no secret (dare's messages never carry key material).

use dare::{Error, KeyError};
use http::StatusCode;
use s3s::{S3Error, S3ErrorCode, s3_error};

fn custom(code: &'static str, status: StatusCode, msg: String) -> S3Error {
    let mut e = S3Error::with_message(S3ErrorCode::Custom(code.into()), msg);
    e.set_status_code(status);
    e
}

/// An error of the key management service as S3 reports it for SSE-KMS (`KMS.*`, 400).
fn kms(e: &dare_kms::KmsError) -> S3Error {
    use dare_kms::KmsError as K;
    let (code, msg) = match e {
        K::Disabled { .. } => ("KMS.DisabledException", e.to_string()),
        K::PendingDeletion { .. } | K::PendingImport { .. } | K::InvalidState { .. } => {
            ("KMS.KMSInvalidStateException", e.to_string())
        }
        K::NotFound(_) | K::Deleted { .. } => ("KMS.NotFoundException", e.to_string()),
        _ => ("KMS.KMSInvalidStateException", e.to_string()),
    };
    custom(code, StatusCode::BAD_REQUEST, msg)
}

pub(crate) fn map(e: Error) -> S3Error {
    match &e {
        Error::NoSuchBucket(_) => s3_error!(NoSuchBucket, "The specified bucket does not exist"),
        Error::NoSuchObject { .. } => s3_error!(NoSuchKey, "The specified key does not exist."),
        Error::BucketExists(_) => s3_error!(
            BucketAlreadyOwnedByYou,
            "Your previous request to create the named bucket succeeded and you already own it."
        ),
        Error::BucketNotEmpty { .. } => s3_error!(
            BucketNotEmpty,
            "The bucket you tried to delete is not empty"
        ),
        Error::InvalidName { what: "bucket", .. } => {
            s3_error!(InvalidBucketName, "The specified bucket is not valid: {e}")
        }
        Error::InvalidName { .. } => s3_error!(KeyTooLongError, "{e}"),
        Error::InvalidArgument(m) => s3_error!(InvalidArgument, "{m}"),
        Error::RangeNotSatisfiable { .. } => {
            s3_error!(InvalidRange, "The requested range is not satisfiable")
        }
        Error::EncryptionPolicy(m) => s3_error!(InvalidRequest, "{m}"),
        Error::CustomerKeyNotApplicable { .. } => s3_error!(
            InvalidRequest,
            "The encryption parameters are not applicable to this object."
        ),
        Error::Key(KeyError::CustomerKeyRequired) => s3_error!(
            InvalidRequest,
            "The object was stored using a form of Server Side Encryption. The correct \
             parameters must be provided to retrieve the object."
        ),
        Error::Key(KeyError::CustomerKeyMismatch) | Error::Key(KeyError::UnwrapFailed) => {
            s3_error!(
                AccessDenied,
                "The provided SSE-C key does not match the key the object was stored with."
            )
        }
        Error::Key(KeyError::CustomerKeyMd5Mismatch) => s3_error!(
            InvalidArgument,
            "The calculated MD5 hash of the key did not match the hash that was provided."
        ),
        // The key hierarchy reports a refusal of the key service as text only; a disabled
        // key is told apart by its message (dare-kms's `Disabled` Display: "is disabled").
        Error::Key(KeyError::KmsRefused(m)) => custom(
            if m.contains(" is disabled") {
                "KMS.DisabledException"
            } else {
                "KMS.KMSInvalidStateException"
            },
            StatusCode::BAD_REQUEST,
            m.clone(),
        ),
        Error::Kms(k) => kms(k),
        // Verification failures: never an oracle, never data.
        Error::Open(_) | Error::NotEncrypted { .. } | Error::DataFileMissing { .. } => {
            s3_error!(
                InternalError,
                "The object could not be read: it failed verification or its data is missing \
                 (run dare fsck)."
            )
        }
        Error::PutOutcomeUnknown { .. } => s3_error!(
            ServiceUnavailable,
            "The metadata database went away during the commit; the object may or may not \
             exist. Retry."
        ),
        _ => s3_error!(InternalError, "{e}"),
    }
}
