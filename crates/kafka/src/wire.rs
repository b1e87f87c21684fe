//! The Confluent wire format: magic byte `0`, the schema id as a big-endian `u32`, then the
//! Avro body. Every upstream producer with a Confluent-compatible serializer writes this, so it
//! is what our decoders accept and what our encoders write.

use crate::codec::DecodeError;

/// The only magic byte the format defines.
pub const MAGIC: u8 = 0;

/// Length of the header in front of the Avro body.
pub const HEADER_LEN: usize = 5;

/// Splits a payload into its schema id and Avro body.
///
/// # Errors
/// [`DecodeError::Truncated`] when the payload is shorter than the header, and
/// [`DecodeError::BadMagic`] when the first byte is not the magic byte: both mean the record was
/// not written by a schema-registry serializer and belong in the DLQ.
pub fn split(payload: &[u8]) -> Result<(u32, &[u8]), DecodeError> {
    match payload {
        [MAGIC, a, b, c, d, body @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        [first, ..] if *first != MAGIC => Err(DecodeError::BadMagic { found: *first }),
        short => Err(DecodeError::Truncated {
            len: short.len(),
            part: "header",
        }),
    }
}

/// Appends the header for `schema_id` to `buf`.
pub fn write_header(schema_id: u32, buf: &mut Vec<u8>) {
    buf.push(MAGIC);
    buf.extend_from_slice(&schema_id.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_id_and_body() {
        let (id, body) = split(&[0, 0, 0, 1, 2, 9, 9]).unwrap();
        assert_eq!(id, 258);
        assert_eq!(body, &[9, 9]);
    }

    #[test]
    fn header_only_is_an_empty_body() {
        assert_eq!(split(&[0, 0, 0, 0, 7]).unwrap(), (7, &[][..]));
    }

    #[test]
    fn classifies_bad_payloads() {
        assert!(matches!(
            split(&[]),
            Err(DecodeError::Truncated { len: 0, .. })
        ));
        assert!(matches!(
            split(&[0, 0, 1]),
            Err(DecodeError::Truncated { len: 3, .. })
        ));
        assert!(matches!(
            split(b"{\"json\":1}"),
            Err(DecodeError::BadMagic { found: b'{' })
        ));
        assert!(matches!(
            split(&[1, 0, 0, 0, 1, 5]),
            Err(DecodeError::BadMagic { found: 1 })
        ));
    }

    #[test]
    fn header_round_trips() {
        let mut buf = vec![42, 42];
        write_header(0xDEAD_BEEF, &mut buf);
        buf.push(3);
        assert_eq!(split(&buf[2..]).unwrap(), (0xDEAD_BEEF, &[3][..]));
    }
}
