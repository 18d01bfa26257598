//! Turning typed keys and values into record bytes and back.
//!
//! [`Serializer`] writes a value into a buffer the caller owns (so a sink
//! can reuse one buffer for every record); [`Deserializer`] reads one from
//! a record's bytes. Both are synchronous and fail with an
//! [`ErrorKind::Serialization`](crate::ErrorKind::Serialization) error.
//!
//! Built in:
//!
//! | type | reads and writes | feature |
//! |---|---|---|
//! | [`Raw`] | bytes as they are (`[u8]`, `Vec<u8>`, [`Bytes`]) | always |
//! | [`Utf8`] | UTF-8 text (`str`, `String`); invalid UTF-8 is an error | always |
//! | [`Json`] | any `serde` type as JSON | `json` |
//! | [`Postcard`] | any `serde` type in the compact postcard binary format | `postcard` |
//!
//! ```
//! use bytes::BytesMut;
//! use smartkafka::serialization::{Deserializer, Serializer, Utf8};
//!
//! let mut buf = BytesMut::new();
//! Utf8.serialize("hello", &mut buf)?;
//! let back: String = Utf8.deserialize(&buf)?;
//! assert_eq!(back, "hello");
//! assert!(Deserializer::<String>::deserialize(&Utf8, &[0xff]).is_err());
//! # Ok::<(), smartkafka::Error>(())
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use crate::Error;

/// Writes values of `T` as record bytes.
///
/// Implement it for a format of your own:
///
/// ```
/// use bytes::{BufMut, BytesMut};
/// use smartkafka::serialization::Serializer;
///
/// struct Celsius;
/// impl Serializer<f64> for Celsius {
///     fn serialize(&self, value: &f64, out: &mut BytesMut) -> Result<(), smartkafka::Error> {
///         if !value.is_finite() {
///             return Err(smartkafka::Error::serialization("temperature is not finite"));
///         }
///         out.put_slice(format!("{value:.1}C").as_bytes());
///         Ok(())
///     }
/// }
/// let mut out = BytesMut::new();
/// Celsius.serialize(&21.54, &mut out)?;
/// assert_eq!(&out[..], b"21.5C");
/// assert!(Celsius.serialize(&f64::NAN, &mut BytesMut::new()).is_err());
/// # Ok::<(), smartkafka::Error>(())
/// ```
pub trait Serializer<T: ?Sized>: Send + Sync {
    /// Appends `value`'s bytes to `out`. On error, what was appended is
    /// discarded by the caller.
    fn serialize(&self, value: &T, out: &mut BytesMut) -> Result<(), Error>;

    /// The MIME type of what this serializer writes, for a `content-type`
    /// header.
    fn content_type(&self) -> &'static str {
        "application/octet-stream"
    }
}

/// Reads values of `T` from record bytes.
pub trait Deserializer<T>: Send + Sync {
    /// Reads one value from all of `bytes`.
    fn deserialize(&self, bytes: &[u8]) -> Result<T, Error>;
}

/// Bytes as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct Raw;

impl Serializer<[u8]> for Raw {
    fn serialize(&self, value: &[u8], out: &mut BytesMut) -> Result<(), Error> {
        out.put_slice(value);
        Ok(())
    }
}

impl Serializer<Vec<u8>> for Raw {
    fn serialize(&self, value: &Vec<u8>, out: &mut BytesMut) -> Result<(), Error> {
        out.put_slice(value);
        Ok(())
    }
}

impl Serializer<Bytes> for Raw {
    fn serialize(&self, value: &Bytes, out: &mut BytesMut) -> Result<(), Error> {
        out.put_slice(value);
        Ok(())
    }
}

impl Deserializer<Vec<u8>> for Raw {
    fn deserialize(&self, bytes: &[u8]) -> Result<Vec<u8>, Error> {
        Ok(bytes.to_vec())
    }
}

impl Deserializer<Bytes> for Raw {
    fn deserialize(&self, bytes: &[u8]) -> Result<Bytes, Error> {
        Ok(Bytes::copy_from_slice(bytes))
    }
}

/// UTF-8 text.
#[derive(Debug, Clone, Copy, Default)]
pub struct Utf8;

impl Serializer<str> for Utf8 {
    fn serialize(&self, value: &str, out: &mut BytesMut) -> Result<(), Error> {
        out.put_slice(value.as_bytes());
        Ok(())
    }

    fn content_type(&self) -> &'static str {
        "text/plain; charset=utf-8"
    }
}

impl Serializer<String> for Utf8 {
    fn serialize(&self, value: &String, out: &mut BytesMut) -> Result<(), Error> {
        out.put_slice(value.as_bytes());
        Ok(())
    }

    fn content_type(&self) -> &'static str {
        "text/plain; charset=utf-8"
    }
}

impl Deserializer<String> for Utf8 {
    fn deserialize(&self, bytes: &[u8]) -> Result<String, Error> {
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(text.to_string()),
            Err(e) => Err(Error::serialization(format!("not UTF-8 text: {e}")).caused_by(e)),
        }
    }
}

/// JSON through `serde_json`, for any `Serialize` / `DeserializeOwned`
/// type.
///
/// ```
/// # #[cfg(feature = "json")] {
/// use bytes::BytesMut;
/// use smartkafka::serialization::{Deserializer, Json, Serializer};
///
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
/// struct Order { id: u64, total: f64 }
///
/// let mut buf = BytesMut::new();
/// Json.serialize(&Order { id: 7, total: 9.5 }, &mut buf).unwrap();
/// assert_eq!(&buf[..], br#"{"id":7,"total":9.5}"#);
/// let back: Order = Json.deserialize(&buf).unwrap();
/// assert_eq!(back, Order { id: 7, total: 9.5 });
/// let err = Deserializer::<Order>::deserialize(&Json, b"{\"id\":").unwrap_err();
/// assert_eq!(err.kind(), &smartkafka::ErrorKind::Serialization);
/// # }
/// ```
#[cfg(feature = "json")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

#[cfg(feature = "json")]
impl<T: serde::Serialize + ?Sized> Serializer<T> for Json {
    fn serialize(&self, value: &T, out: &mut BytesMut) -> Result<(), Error> {
        serde_json::to_writer(out.writer(), value)
            .map_err(|e| Error::serialization(format!("cannot write JSON: {e}")).caused_by(e))
    }

    fn content_type(&self) -> &'static str {
        "application/json"
    }
}

#[cfg(feature = "json")]
impl<T: serde::de::DeserializeOwned> Deserializer<T> for Json {
    fn deserialize(&self, bytes: &[u8]) -> Result<T, Error> {
        serde_json::from_slice(bytes)
            .map_err(|e| Error::serialization(format!("cannot read JSON: {e}")).caused_by(e))
    }
}

/// The postcard binary format (compact, `serde`-based, stable wire format),
/// for any `Serialize` / `DeserializeOwned` type.
///
/// ```
/// # #[cfg(feature = "postcard")] {
/// use bytes::BytesMut;
/// use smartkafka::serialization::{Deserializer, Postcard, Serializer};
///
/// let mut buf = BytesMut::new();
/// Postcard.serialize(&(7u32, "seven".to_string()), &mut buf).unwrap();
/// let back: (u32, String) = Postcard.deserialize(&buf).unwrap();
/// assert_eq!(back, (7, "seven".to_string()));
/// # }
/// ```
#[cfg(feature = "postcard")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Postcard;

#[cfg(feature = "postcard")]
impl<T: serde::Serialize + ?Sized> Serializer<T> for Postcard {
    fn serialize(&self, value: &T, out: &mut BytesMut) -> Result<(), Error> {
        let bytes = postcard::to_allocvec(value).map_err(|e| {
            Error::serialization(format!("cannot write postcard: {e}")).caused_by(e)
        })?;
        out.put_slice(&bytes);
        Ok(())
    }
}

#[cfg(feature = "postcard")]
impl<T: serde::de::DeserializeOwned> Deserializer<T> for Postcard {
    fn deserialize(&self, bytes: &[u8]) -> Result<T, Error> {
        let (value, rest) = postcard::take_from_bytes(bytes)
            .map_err(|e| Error::serialization(format!("cannot read postcard: {e}")).caused_by(e))?;
        if !rest.is_empty() {
            return Err(Error::serialization(format!(
                "postcard value followed by {} unread bytes",
                rest.len()
            )));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_bytes_round_trip_unchanged() {
        let mut out = BytesMut::new();
        Raw.serialize(&[0u8, 255, 7][..], &mut out).unwrap();
        let back: Vec<u8> = Raw.deserialize(&out).unwrap();
        assert_eq!(back, vec![0, 255, 7]);
    }

    #[test]
    fn invalid_utf8_is_a_serialization_error() {
        let err = Deserializer::<String>::deserialize(&Utf8, &[b'a', 0xc3]).unwrap_err();
        assert_eq!(err.kind(), &crate::ErrorKind::Serialization);
        assert!(std::error::Error::source(&err).is_some());
    }

    #[cfg(feature = "postcard")]
    #[test]
    fn postcard_refuses_trailing_bytes_and_truncation() {
        let mut out = BytesMut::new();
        Postcard.serialize(&(1u64, "abc"), &mut out).unwrap();
        let mut longer = out.to_vec();
        longer.push(0);
        assert!(Deserializer::<(u64, String)>::deserialize(&Postcard, &longer).is_err());
        assert!(Deserializer::<(u64, String)>::deserialize(&Postcard, &out[..3]).is_err());
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_appends_to_what_the_buffer_holds() {
        let mut out = BytesMut::from(&b"x"[..]);
        Json.serialize(&[1, 2], &mut out).unwrap();
        assert_eq!(&out[..], b"x[1,2]");
    }
}
