//! TTLV, the binary encoding of KMIP messages (KMIP 1.4 specification §9.1): each item is a
//! 3-byte tag, a 1-byte type, a 4-byte big-endian length and a value padded with zeros to a
//! multiple of 8 bytes; a structure's value is a sequence of items.
//!
//! Hand-written rather than taken from a crate: the maintained Rust KMIP crates either pull a
//! whole async client and server stack (cosmian's) or are no longer maintained (NLnet Labs'
//! `kmip-ttlv`, archived), while dare needs seven operations and a parser it can bound
//! strictly. The decoder here takes one whole message of at most [`MAX_MESSAGE`] bytes and
//! refuses, with a [`TtlvError`], anything that is not exactly one well-formed item: lengths
//! that overrun their parent, non-zero padding, fixed-size types of the wrong length, booleans
//! other than 0 and 1, text that is not UTF-8, nesting deeper than [`MAX_DEPTH`], more than
//! [`MAX_ITEMS`] items, unknown types. It never allocates more than the input's size.

use std::fmt;

use zeroize::Zeroizing;

/// The largest message dare sends or accepts (a response to any of its requests is well
/// under 1 KiB; this leaves room for servers that add attributes).
pub const MAX_MESSAGE: usize = 64 * 1024;
/// The deepest nesting of structures accepted.
pub const MAX_DEPTH: usize = 16;
/// The most items accepted in one message.
pub const MAX_ITEMS: usize = 4096;

/// A TTLV value, by type (KMIP 1.4 §9.1.1.2).
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    /// 0x01: a sequence of items.
    Structure(Vec<Item>),
    /// 0x02: a 32-bit signed integer.
    Integer(i32),
    /// 0x03: a 64-bit signed integer.
    LongInteger(i64),
    /// 0x04: a big-endian two's-complement integer, a multiple of 8 bytes.
    BigInteger(Vec<u8>),
    /// 0x05: a 32-bit enumeration value.
    Enumeration(u32),
    /// 0x06: a boolean (8 bytes, 0 or 1).
    Boolean(bool),
    /// 0x07: UTF-8 text.
    TextString(String),
    /// 0x08: bytes; zeroed when dropped, as they may be a key (the Decrypt response).
    ByteString(Zeroizing<Vec<u8>>),
    /// 0x09: seconds since the Unix epoch.
    DateTime(i64),
    /// 0x0A: a 32-bit number of seconds.
    Interval(u32),
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Structure(items) => f.debug_list().entries(items).finish(),
            Value::Integer(v) => write!(f, "Integer({v})"),
            Value::LongInteger(v) => write!(f, "LongInteger({v})"),
            Value::BigInteger(v) => write!(f, "BigInteger({} bytes)", v.len()),
            Value::Enumeration(v) => write!(f, "Enumeration({v:#x})"),
            Value::Boolean(v) => write!(f, "Boolean({v})"),
            Value::TextString(v) => write!(f, "TextString({v:?})"),
            // Bytes may be key material: only their length is shown.
            Value::ByteString(v) => write!(f, "ByteString({} bytes)", v.len()),
            Value::DateTime(v) => write!(f, "DateTime({v})"),
            Value::Interval(v) => write!(f, "Interval({v})"),
        }
    }
}

/// A tagged value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The tag (0x42xxxx for KMIP's own tags).
    pub tag: u32,
    /// The value.
    pub value: Value,
}

impl Item {
    /// A structure.
    pub fn structure(tag: u32, items: Vec<Item>) -> Item {
        Item {
            tag,
            value: Value::Structure(items),
        }
    }

    /// An enumeration.
    pub fn enumeration(tag: u32, v: u32) -> Item {
        Item {
            tag,
            value: Value::Enumeration(v),
        }
    }

    /// An integer.
    pub fn integer(tag: u32, v: i32) -> Item {
        Item {
            tag,
            value: Value::Integer(v),
        }
    }

    /// A text string.
    pub fn text(tag: u32, v: &str) -> Item {
        Item {
            tag,
            value: Value::TextString(v.to_string()),
        }
    }

    /// A byte string.
    pub fn bytes(tag: u32, v: &[u8]) -> Item {
        Item {
            tag,
            value: Value::ByteString(Zeroizing::new(v.to_vec())),
        }
    }

    /// The items of a structure (`None` for any other type).
    pub fn children(&self) -> Option<&[Item]> {
        match &self.value {
            Value::Structure(items) => Some(items),
            _ => None,
        }
    }
}

/// Why bytes are not one well-formed TTLV item.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TtlvError {
    /// The input ends inside an item.
    Truncated,
    /// Bytes follow the item.
    Trailing,
    /// The message is larger than [`MAX_MESSAGE`].
    TooLarge(usize),
    /// Structures nest deeper than [`MAX_DEPTH`].
    TooDeep,
    /// More than [`MAX_ITEMS`] items.
    TooManyItems,
    /// A type byte KMIP does not define.
    UnknownType(u8),
    /// A fixed-size value with another length.
    BadLength {
        /// The item's tag.
        tag: u32,
        /// Its length field.
        len: u32,
    },
    /// Padding bytes that are not zero.
    BadPadding,
    /// A boolean other than 0 or 1.
    BadBoolean,
    /// A text string that is not UTF-8.
    BadText,
}

impl fmt::Display for TtlvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TtlvError::Truncated => f.write_str("the message ends inside an item"),
            TtlvError::Trailing => f.write_str("bytes follow the message"),
            TtlvError::TooLarge(n) => {
                write!(f, "the message is {n} bytes, more than {MAX_MESSAGE}")
            }
            TtlvError::TooDeep => write!(f, "structures nest deeper than {MAX_DEPTH}"),
            TtlvError::TooManyItems => write!(f, "more than {MAX_ITEMS} items"),
            TtlvError::UnknownType(t) => write!(f, "unknown item type {t:#04x}"),
            TtlvError::BadLength { tag, len } => {
                write!(
                    f,
                    "item {tag:#08x} has a length of {len}, wrong for its type"
                )
            }
            TtlvError::BadPadding => f.write_str("non-zero padding"),
            TtlvError::BadBoolean => f.write_str("a boolean that is neither 0 nor 1"),
            TtlvError::BadText => f.write_str("a text string that is not UTF-8"),
        }
    }
}

impl std::error::Error for TtlvError {}

fn type_byte(v: &Value) -> u8 {
    match v {
        Value::Structure(_) => 0x01,
        Value::Integer(_) => 0x02,
        Value::LongInteger(_) => 0x03,
        Value::BigInteger(_) => 0x04,
        Value::Enumeration(_) => 0x05,
        Value::Boolean(_) => 0x06,
        Value::TextString(_) => 0x07,
        Value::ByteString(_) => 0x08,
        Value::DateTime(_) => 0x09,
        Value::Interval(_) => 0x0A,
    }
}

fn pad_len(n: usize) -> usize {
    (8 - n % 8) % 8
}

/// Appends the encoding of `item` to `out`. `out` should be a `Zeroizing` buffer when the
/// item holds a key.
pub fn encode(item: &Item, out: &mut Vec<u8>) {
    out.extend_from_slice(&item.tag.to_be_bytes()[1..]);
    out.push(type_byte(&item.value));
    let len_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let start = out.len();
    match &item.value {
        Value::Structure(items) => {
            for i in items {
                encode(i, out);
            }
        }
        Value::Integer(v) => out.extend_from_slice(&v.to_be_bytes()),
        Value::Enumeration(v) | Value::Interval(v) => out.extend_from_slice(&v.to_be_bytes()),
        Value::LongInteger(v) | Value::DateTime(v) => out.extend_from_slice(&v.to_be_bytes()),
        Value::Boolean(b) => out.extend_from_slice(&u64::from(*b).to_be_bytes()),
        Value::BigInteger(b) => out.extend_from_slice(b),
        Value::TextString(s) => out.extend_from_slice(s.as_bytes()),
        Value::ByteString(b) => out.extend_from_slice(b),
    }
    let len = out.len() - start;
    // Messages dare builds are a few hundred bytes: the length always fits.
    let len32 = u32::try_from(len).unwrap_or(u32::MAX);
    out[len_at..len_at + 4].copy_from_slice(&len32.to_be_bytes());
    out.resize(out.len() + pad_len(len), 0);
}

/// The total length of the message whose 8-byte header is `header`: header plus value plus
/// padding, checked against [`MAX_MESSAGE`]. How a reader knows how much more to read.
pub fn message_len(header: &[u8; 8]) -> Result<usize, TtlvError> {
    let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let total = 8usize
        .checked_add(len)
        .and_then(|n| n.checked_add(pad_len(len)))
        .ok_or(TtlvError::TooLarge(usize::MAX))?;
    if total > MAX_MESSAGE {
        return Err(TtlvError::TooLarge(total));
    }
    Ok(total)
}

/// Decodes exactly one item spanning all of `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Item, TtlvError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(TtlvError::TooLarge(bytes.len()));
    }
    let mut items = 0usize;
    let (item, used) = decode_one(bytes, 0, &mut items)?;
    if used != bytes.len() {
        return Err(TtlvError::Trailing);
    }
    Ok(item)
}

fn fixed<const N: usize>(v: &[u8], tag: u32, len: u32) -> Result<[u8; N], TtlvError> {
    v.try_into().map_err(|_| TtlvError::BadLength { tag, len })
}

/// Decodes the item at the start of `bytes`; returns it and the bytes it used (padding
/// included).
fn decode_one(bytes: &[u8], depth: usize, items: &mut usize) -> Result<(Item, usize), TtlvError> {
    *items += 1;
    if *items > MAX_ITEMS {
        return Err(TtlvError::TooManyItems);
    }
    let header: &[u8; 8] = bytes
        .get(..8)
        .and_then(|h| h.try_into().ok())
        .ok_or(TtlvError::Truncated)?;
    let tag = u32::from_be_bytes([0, header[0], header[1], header[2]]);
    let ty = header[3];
    let len32 = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    let len = len32 as usize;
    let padded = len.checked_add(pad_len(len)).ok_or(TtlvError::Truncated)?;
    let body = bytes.get(8..).ok_or(TtlvError::Truncated)?;
    if body.len() < padded {
        return Err(TtlvError::Truncated);
    }
    let (v, pad) = body[..padded].split_at(len);
    if pad.iter().any(|b| *b != 0) {
        return Err(TtlvError::BadPadding);
    }
    let value = match ty {
        0x01 => {
            if depth >= MAX_DEPTH {
                return Err(TtlvError::TooDeep);
            }
            let mut children = Vec::new();
            let mut at = 0;
            while at < v.len() {
                let (child, used) = decode_one(&v[at..], depth + 1, items)?;
                children.push(child);
                at += used;
            }
            Value::Structure(children)
        }
        0x02 | 0x05 | 0x0A => {
            let b = fixed::<4>(v, tag, len32)?;
            match ty {
                0x02 => Value::Integer(i32::from_be_bytes(b)),
                0x05 => Value::Enumeration(u32::from_be_bytes(b)),
                _ => Value::Interval(u32::from_be_bytes(b)),
            }
        }
        0x03 | 0x09 => {
            let b = fixed::<8>(v, tag, len32)?;
            if ty == 0x03 {
                Value::LongInteger(i64::from_be_bytes(b))
            } else {
                Value::DateTime(i64::from_be_bytes(b))
            }
        }
        0x04 => {
            if !len.is_multiple_of(8) {
                return Err(TtlvError::BadLength { tag, len: len32 });
            }
            Value::BigInteger(v.to_vec())
        }
        0x06 => match u64::from_be_bytes(fixed::<8>(v, tag, len32)?) {
            0 => Value::Boolean(false),
            1 => Value::Boolean(true),
            _ => return Err(TtlvError::BadBoolean),
        },
        0x07 => Value::TextString(
            std::str::from_utf8(v)
                .map_err(|_| TtlvError::BadText)?
                .to_string(),
        ),
        0x08 => Value::ByteString(Zeroizing::new(v.to_vec())),
        t => return Err(TtlvError::UnknownType(t)),
    };
    Ok((Item { tag, value }, 8 + padded))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The KMIP 1.4 specification's own encoding examples (§9.1.2).
    #[test]
    fn spec_examples() {
        let cases: Vec<(Item, &str)> = vec![
            (
                Item::integer(0x420020, 8),
                "42002002000000040000000800000000",
            ),
            (
                Item {
                    tag: 0x420020,
                    value: Value::LongInteger(123456789000000000),
                },
                "420020030000000801B69B4BA5749200",
            ),
            (
                Item::enumeration(0x420020, 255),
                "4200200500000004000000FF00000000",
            ),
            (
                Item {
                    tag: 0x420020,
                    value: Value::Boolean(true),
                },
                "42002006000000080000000000000001",
            ),
            (
                Item::text(0x420020, "Hello World"),
                "420020070000000B48656C6C6F20576F726C640000000000",
            ),
            (
                Item::bytes(0x420020, &[1, 2, 3]),
                "42002008000000030102030000000000",
            ),
            (
                Item {
                    tag: 0x420020,
                    value: Value::DateTime(0x47DA67F8),
                },
                "42002009000000080000000047DA67F8",
            ),
            (
                Item::structure(
                    0x420020,
                    vec![
                        Item::enumeration(0x420004, 254),
                        Item::integer(0x420005, 255),
                    ],
                ),
                "42002001000000204200040500000004000000FE000000004200050200000004000000FF00000000",
            ),
        ];
        for (item, hex) in cases {
            let mut out = Vec::new();
            encode(&item, &mut out);
            assert_eq!(to_hex(&out), hex, "{item:?}");
            assert_eq!(decode(&out).unwrap(), item);
        }
    }

    fn to_hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02X}")).collect()
    }

    #[test]
    fn refuses_bad_encodings() {
        let mut ok = Vec::new();
        encode(&Item::text(0x420020, "abc"), &mut ok);
        assert_eq!(decode(&ok[..ok.len() - 1]), Err(TtlvError::Truncated));
        let mut t = ok.clone();
        t.push(0);
        assert_eq!(decode(&t), Err(TtlvError::Trailing));
        let mut p = ok.clone();
        *p.last_mut().unwrap() = 1;
        assert_eq!(decode(&p), Err(TtlvError::BadPadding));
        let mut ty = ok.clone();
        ty[3] = 0x0B;
        assert_eq!(decode(&ty), Err(TtlvError::UnknownType(0x0B)));
        let mut bad = Vec::new();
        encode(&Item::bytes(0x420020, &[0xFF, 0xFE]), &mut bad);
        bad[3] = 0x07;
        assert_eq!(decode(&bad), Err(TtlvError::BadText));
        let mut b = Vec::new();
        encode(
            &Item {
                tag: 1,
                value: Value::Boolean(true),
            },
            &mut b,
        );
        b[15] = 2;
        assert_eq!(decode(&b), Err(TtlvError::BadBoolean));
        // An integer claiming 8 bytes.
        let i = hex_bytes("42002002000000080000000000000008");
        assert!(matches!(decode(&i), Err(TtlvError::BadLength { .. })));
        // A length far past the input.
        let l = hex_bytes("42002008FFFFFFF0");
        assert_eq!(decode(&l), Err(TtlvError::Truncated));
        assert!(matches!(
            message_len(&[0x42, 0, 0x7B, 1, 0x7F, 0xFF, 0xFF, 0xF8]),
            Err(TtlvError::TooLarge(_))
        ));
        // Nesting past the limit.
        let mut deep = Item::integer(1, 1);
        for _ in 0..=MAX_DEPTH {
            deep = Item::structure(1, vec![deep]);
        }
        let mut d = Vec::new();
        encode(&deep, &mut d);
        assert_eq!(decode(&d), Err(TtlvError::TooDeep));
    }

    fn hex_bytes(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn debug_hides_bytes() {
        let i = Item::bytes(0x4200C2, b"secretsecret");
        assert!(!format!("{i:?}").contains("secret"));
    }
}
