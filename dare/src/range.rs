//! Byte ranges as HTTP (RFC 9110 §14.1.2) and S3 take them: `bytes=FIRST-LAST`,
//! `bytes=FIRST-` and `bytes=-SUFFIX` (the `bytes=` unit is optional here). LAST past the end
//! is clamped to the end; a range starting at or past the end — or any range of an empty
//! object — is not satisfiable (416); a suffix longer than the object is the whole object.

use crate::error::Error;

/// Resolves `spec` against an object of `size` bytes into `(offset, len)`, `len >= 1`.
pub fn parse_range(spec: &str, size: u64) -> Result<(u64, u64), Error> {
    let bad = || {
        Error::InvalidArgument(format!(
            "range {spec:?} is not FIRST-LAST, FIRST- or -SUFFIX (byte positions, inclusive)"
        ))
    };
    let s = spec.trim();
    let s = s.strip_prefix("bytes=").unwrap_or(s);
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let num = |t: &str| -> Result<u64, Error> {
        if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse::<u64>().map_err(|_| bad())
    };
    let unsatisfiable = || Error::RangeNotSatisfiable {
        range: spec.to_owned(),
        size,
    };
    match (a.is_empty(), b.is_empty()) {
        (false, false) => {
            let (first, last) = (num(a)?, num(b)?);
            if last < first {
                return Err(bad());
            }
            if first >= size {
                return Err(unsatisfiable());
            }
            let last = last.min(size - 1);
            Ok((first, last - first + 1))
        }
        (false, true) => {
            let first = num(a)?;
            if first >= size {
                return Err(unsatisfiable());
            }
            Ok((first, size - first))
        }
        (true, false) => {
            let n = num(b)?;
            if n == 0 || size == 0 {
                return Err(unsatisfiable());
            }
            let n = n.min(size);
            Ok((size - n, n))
        }
        (true, true) => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_semantics() {
        assert_eq!(parse_range("0-0", 10).unwrap(), (0, 1));
        assert_eq!(parse_range("bytes=2-4", 10).unwrap(), (2, 3));
        assert_eq!(parse_range("2-100", 10).unwrap(), (2, 8), "LAST clamped");
        assert_eq!(parse_range("7-", 10).unwrap(), (7, 3));
        assert_eq!(parse_range("-3", 10).unwrap(), (7, 3));
        assert_eq!(
            parse_range("-30", 10).unwrap(),
            (0, 10),
            "suffix longer than object"
        );
        for s in ["10-12", "10-", "-0"] {
            assert!(
                matches!(parse_range(s, 10), Err(Error::RangeNotSatisfiable { .. })),
                "{s}"
            );
        }
        for s in ["0-0", "-1", "0-"] {
            assert!(
                matches!(parse_range(s, 0), Err(Error::RangeNotSatisfiable { .. })),
                "{s}"
            );
        }
        for s in [
            "", "-", "5", "a-b", "3-1", "+1-2", "1-+2", " - ", "0x1-2", "1--2",
        ] {
            assert!(
                matches!(parse_range(s, 10), Err(Error::InvalidArgument(_))),
                "{s:?}"
            );
        }
        assert_eq!(parse_range("0-18446744073709551615", 10).unwrap(), (0, 10));
        assert!(parse_range("99999999999999999999-", 10).is_err());
    }
}
