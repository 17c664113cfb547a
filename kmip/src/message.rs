//! KMIP request and response messages for the operations dare uses (KMIP 1.4 specification
//! §4 operations, §6 message contents, §7 message format), one batch item per message.
//!
//! Requests carry protocol version 1.4: the version that defines the GCM tag fields of
//! Encrypt and Decrypt (Authenticated Encryption Additional Data / Tag, 0x4200FE/0x4200FF).
//! [`parse_response`] checks the response's shape strictly — one batch item, for the
//! operation asked — and turns a failed result into [`ResponseError::Failed`] with the
//! server's reason and message.

use std::fmt;

use zeroize::Zeroizing;

use crate::ttlv::{self, Item, TtlvError, Value};

/// KMIP tags used here (KMIP 1.4 §9.1.3.1).
#[allow(missing_docs)]
pub mod tag {
    pub const ATTRIBUTE: u32 = 0x420008;
    pub const ATTRIBUTE_NAME: u32 = 0x42000A;
    pub const ATTRIBUTE_VALUE: u32 = 0x42000B;
    pub const BATCH_COUNT: u32 = 0x42000D;
    pub const BATCH_ITEM: u32 = 0x42000F;
    pub const BLOCK_CIPHER_MODE: u32 = 0x420011;
    pub const CRYPTOGRAPHIC_ALGORITHM: u32 = 0x420028;
    pub const CRYPTOGRAPHIC_LENGTH: u32 = 0x42002A;
    pub const CRYPTOGRAPHIC_PARAMETERS: u32 = 0x42002B;
    pub const CRYPTOGRAPHIC_USAGE_MASK: u32 = 0x42002C;
    pub const IV_COUNTER_NONCE: u32 = 0x42003D;
    pub const OBJECT_TYPE: u32 = 0x420057;
    pub const OPERATION: u32 = 0x42005C;
    pub const PROTOCOL_VERSION: u32 = 0x420069;
    pub const PROTOCOL_VERSION_MAJOR: u32 = 0x42006A;
    pub const PROTOCOL_VERSION_MINOR: u32 = 0x42006B;
    pub const QUERY_FUNCTION: u32 = 0x420074;
    pub const REQUEST_HEADER: u32 = 0x420077;
    pub const REQUEST_MESSAGE: u32 = 0x420078;
    pub const REQUEST_PAYLOAD: u32 = 0x420079;
    pub const RESPONSE_HEADER: u32 = 0x42007A;
    pub const RESPONSE_MESSAGE: u32 = 0x42007B;
    pub const RESPONSE_PAYLOAD: u32 = 0x42007C;
    pub const RESULT_MESSAGE: u32 = 0x42007D;
    pub const RESULT_REASON: u32 = 0x42007E;
    pub const RESULT_STATUS: u32 = 0x42007F;
    pub const REVOCATION_REASON: u32 = 0x420081;
    pub const REVOCATION_REASON_CODE: u32 = 0x420082;
    pub const TEMPLATE_ATTRIBUTE: u32 = 0x420091;
    pub const UNIQUE_IDENTIFIER: u32 = 0x420094;
    pub const DATA: u32 = 0x4200C2;
    pub const TAG_LENGTH: u32 = 0x4200CE;
    pub const AE_ADDITIONAL_DATA: u32 = 0x4200FE;
    pub const AE_TAG: u32 = 0x4200FF;
}

/// The operations dare sends (KMIP 1.4 §9.1.3.2.27).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Create a managed object (here: an AES-256 key).
    Create,
    /// Query the server's capabilities (a health check).
    Query,
    /// Activate an object (Pre-Active → Active).
    Activate,
    /// Revoke an object (Active → Deactivated).
    Revoke,
    /// Destroy an object's key material.
    Destroy,
    /// Encrypt with a key held by the server.
    Encrypt,
    /// Decrypt with a key held by the server.
    Decrypt,
}

impl Operation {
    /// The enumeration value.
    pub fn code(self) -> u32 {
        match self {
            Operation::Create => 0x01,
            Operation::Query => 0x18,
            Operation::Activate => 0x12,
            Operation::Revoke => 0x13,
            Operation::Destroy => 0x14,
            Operation::Encrypt => 0x1F,
            Operation::Decrypt => 0x20,
        }
    }

    /// The operation's name in the specification.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Create => "Create",
            Operation::Query => "Query",
            Operation::Activate => "Activate",
            Operation::Revoke => "Revoke",
            Operation::Destroy => "Destroy",
            Operation::Encrypt => "Encrypt",
            Operation::Decrypt => "Decrypt",
        }
    }
}

/// Result Reason values (KMIP 1.4 §9.1.3.2.29) dare acts on.
pub mod reason {
    /// Item Not Found.
    pub const ITEM_NOT_FOUND: u32 = 0x01;
    /// Permission Denied.
    pub const PERMISSION_DENIED: u32 = 0x0C;
    /// Illegal Operation.
    pub const ILLEGAL_OPERATION: u32 = 0x0B;
    /// Cryptographic Failure (a GCM tag that does not verify).
    pub const CRYPTOGRAPHIC_FAILURE: u32 = 0x0A;
}

/// The name of a Result Reason value.
pub fn reason_name(r: u32) -> &'static str {
    match r {
        0x01 => "Item Not Found",
        0x02 => "Response Too Large",
        0x03 => "Authentication Not Successful",
        0x04 => "Invalid Message",
        0x05 => "Operation Not Supported",
        0x06 => "Missing Data",
        0x07 => "Invalid Field",
        0x08 => "Feature Not Supported",
        0x0A => "Cryptographic Failure",
        0x0B => "Illegal Operation",
        0x0C => "Permission Denied",
        0x0D => "Object Archived",
        0x100 => "General Failure",
        _ => "unknown reason",
    }
}

/// Why a response is not what was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseError {
    /// Not a well-formed response to the request (TTLV or KMIP structure).
    Malformed(String),
    /// The server answered that the operation failed.
    Failed {
        /// Its Result Reason, if it gave one.
        reason: Option<u32>,
        /// Its Result Message, if it gave one.
        message: String,
    },
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::Malformed(why) => write!(f, "malformed KMIP response: {why}"),
            ResponseError::Failed { reason, message } => {
                match reason {
                    Some(r) => write!(f, "{} ({r:#x})", reason_name(*r))?,
                    None => f.write_str("operation failed")?,
                }
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
        }
    }
}

impl From<TtlvError> for ResponseError {
    fn from(e: TtlvError) -> Self {
        ResponseError::Malformed(e.to_string())
    }
}

/// A request message of one batch item, encoded (zeroed when dropped: an Encrypt request
/// carries a key).
pub fn request(op: Operation, payload: Vec<Item>) -> Zeroizing<Vec<u8>> {
    let msg = Item::structure(
        tag::REQUEST_MESSAGE,
        vec![
            Item::structure(
                tag::REQUEST_HEADER,
                vec![
                    Item::structure(
                        tag::PROTOCOL_VERSION,
                        vec![
                            Item::integer(tag::PROTOCOL_VERSION_MAJOR, 1),
                            Item::integer(tag::PROTOCOL_VERSION_MINOR, 4),
                        ],
                    ),
                    Item::integer(tag::BATCH_COUNT, 1),
                ],
            ),
            Item::structure(
                tag::BATCH_ITEM,
                vec![
                    Item::enumeration(tag::OPERATION, op.code()),
                    Item::structure(tag::REQUEST_PAYLOAD, payload),
                ],
            ),
        ],
    );
    let mut out = Zeroizing::new(Vec::with_capacity(256));
    ttlv::encode(&msg, &mut out);
    out
}

fn malformed(why: &str) -> ResponseError {
    ResponseError::Malformed(why.to_string())
}

fn only<'a>(items: &'a [Item], t: u32, what: &str) -> Result<&'a Item, ResponseError> {
    let mut it = items.iter().filter(|i| i.tag == t);
    match (it.next(), it.next()) {
        (Some(i), None) => Ok(i),
        (None, _) => Err(ResponseError::Malformed(format!("no {what}"))),
        (Some(_), Some(_)) => Err(ResponseError::Malformed(format!("several {what}s"))),
    }
}

fn optional<'a>(items: &'a [Item], t: u32, what: &str) -> Result<Option<&'a Item>, ResponseError> {
    let mut it = items.iter().filter(|i| i.tag == t);
    match (it.next(), it.next()) {
        (i, None) => Ok(i),
        (_, Some(_)) => Err(ResponseError::Malformed(format!("several {what}s"))),
    }
}

fn children<'a>(i: &'a Item, what: &str) -> Result<&'a [Item], ResponseError> {
    i.children()
        .ok_or_else(|| ResponseError::Malformed(format!("{what} is not a structure")))
}

fn enumeration(i: &Item, what: &str) -> Result<u32, ResponseError> {
    match i.value {
        Value::Enumeration(v) => Ok(v),
        _ => Err(ResponseError::Malformed(format!(
            "{what} is not an enumeration"
        ))),
    }
}

/// Decodes a response to a request for `op` and returns its payload's items (empty when
/// the response has no payload). A failed result is [`ResponseError::Failed`].
pub fn parse_response(bytes: &[u8], op: Operation) -> Result<Vec<Item>, ResponseError> {
    let msg = ttlv::decode(bytes)?;
    if msg.tag != tag::RESPONSE_MESSAGE {
        return Err(malformed("not a Response Message"));
    }
    let top = children(&msg, "the Response Message")?;
    let header = children(
        only(top, tag::RESPONSE_HEADER, "Response Header")?,
        "the Response Header",
    )?;
    match only(header, tag::BATCH_COUNT, "Batch Count")?.value {
        Value::Integer(1) => {}
        _ => return Err(malformed("Batch Count is not 1")),
    }
    let item = children(only(top, tag::BATCH_ITEM, "Batch Item")?, "the Batch Item")?;
    // A server may leave the Operation out of a failed item (KMIP 1.4 §6.2); when present it
    // must be the one asked for.
    if let Some(o) = optional(item, tag::OPERATION, "Operation")?
        && enumeration(o, "Operation")? != op.code()
    {
        return Err(ResponseError::Malformed(format!(
            "the response is for another operation than {}",
            op.name()
        )));
    }
    let status = enumeration(
        only(item, tag::RESULT_STATUS, "Result Status")?,
        "Result Status",
    )?;
    if status != 0 {
        let reason = optional(item, tag::RESULT_REASON, "Result Reason")?
            .map(|r| enumeration(r, "Result Reason"))
            .transpose()?;
        let message = match optional(item, tag::RESULT_MESSAGE, "Result Message")? {
            Some(Item {
                value: Value::TextString(s),
                ..
            }) => sanitize(s),
            Some(_) => return Err(malformed("Result Message is not text")),
            None => String::new(),
        };
        return Err(ResponseError::Failed { reason, message });
    }
    match optional(item, tag::RESPONSE_PAYLOAD, "Response Payload")? {
        Some(p) => Ok(children(p, "the Response Payload")?.to_vec()),
        None => Ok(Vec::new()),
    }
}

/// A server's message as one printable line of at most 200 characters.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect()
}

/// The text string tagged `t` in `payload`.
pub fn text_field(payload: &[Item], t: u32, what: &str) -> Result<String, ResponseError> {
    match &only(payload, t, what)?.value {
        Value::TextString(s) => Ok(s.clone()),
        _ => Err(ResponseError::Malformed(format!("{what} is not text"))),
    }
}

/// The byte string tagged `t` in `payload`.
pub fn bytes_field(
    payload: &[Item],
    t: u32,
    what: &str,
) -> Result<Zeroizing<Vec<u8>>, ResponseError> {
    match &only(payload, t, what)?.value {
        Value::ByteString(b) => Ok(b.clone()),
        _ => Err(ResponseError::Malformed(format!("{what} is not bytes"))),
    }
}

/// `Attribute { Attribute Name, Attribute Value }` (KMIP 1.x template attributes).
pub fn attribute(name: &str, value: Value) -> Item {
    Item::structure(
        tag::ATTRIBUTE,
        vec![
            Item::text(tag::ATTRIBUTE_NAME, name),
            Item {
                tag: tag::ATTRIBUTE_VALUE,
                value,
            },
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(items: Vec<Item>) -> Vec<u8> {
        let msg = Item::structure(
            tag::RESPONSE_MESSAGE,
            vec![
                Item::structure(
                    tag::RESPONSE_HEADER,
                    vec![Item::integer(tag::BATCH_COUNT, 1)],
                ),
                Item::structure(tag::BATCH_ITEM, items),
            ],
        );
        let mut out = Vec::new();
        ttlv::encode(&msg, &mut out);
        out
    }

    #[test]
    fn parses_success_and_failure() {
        let ok = response(vec![
            Item::enumeration(tag::OPERATION, Operation::Activate.code()),
            Item::enumeration(tag::RESULT_STATUS, 0),
            Item::structure(
                tag::RESPONSE_PAYLOAD,
                vec![Item::text(tag::UNIQUE_IDENTIFIER, "7")],
            ),
        ]);
        let p = parse_response(&ok, Operation::Activate).unwrap();
        assert_eq!(text_field(&p, tag::UNIQUE_IDENTIFIER, "uid").unwrap(), "7");
        assert!(matches!(
            parse_response(&ok, Operation::Destroy),
            Err(ResponseError::Malformed(_))
        ));
        let failed = response(vec![
            Item::enumeration(tag::RESULT_STATUS, 1),
            Item::enumeration(tag::RESULT_REASON, reason::ITEM_NOT_FOUND),
            Item::text(tag::RESULT_MESSAGE, "no\nsuch object"),
        ]);
        let e = parse_response(&failed, Operation::Decrypt).unwrap_err();
        assert_eq!(
            e,
            ResponseError::Failed {
                reason: Some(1),
                message: "no such object".into()
            }
        );
        assert_eq!(e.to_string(), "Item Not Found (0x1): no such object");
    }
}
