//! Bounded decoding: a schema-driven pre-scan of every response before
//! kafka-protocol decodes it.
//!
//! # The threat
//!
//! kafka-protocol trusts the element counts it reads from the wire: its
//! `Array` and `CompactArray` decoders call `Vec::with_capacity(n)` with `n`
//! taken straight from the bytes. A 20-byte frame that declares 2^31 elements
//! therefore makes it try to allocate gigabytes, which either exhausts memory
//! or aborts the process. Strings, byte blobs and primitives are read with
//! bounds-checked accessors and are safe on their own; arrays are not.
//!
//! # The approach
//!
//! Every response body is walked here first, against a compact schema of the
//! message (see the `schema` submodule), transcribed from the structure of
//! kafka-protocol's generated `Decodable` impls: which fields exist at which
//! version, which are nullable, which versions are flexible and which tagged
//! fields the decoder knows. The walk reads every length and count exactly as
//! kafka-protocol will and
//!
//! * rejects any array count larger than the bytes left divided by the
//!   smallest possible encoding of one element (so an accepted count is
//!   always backed by real bytes),
//! * rejects string and byte lengths larger than the bytes left, negative
//!   lengths other than the null marker `-1`, and nulls where the field is
//!   not nullable,
//! * rejects truncated input and unsigned varints that kafka-protocol would
//!   read differently from the protocol definition (more than five bytes, or
//!   bits beyond 32),
//! * walks known tagged fields with their own schema strictly inside the
//!   size they declare, and requires the value to fill that size exactly,
//!   because kafka-protocol decodes them from the stream without looking at
//!   the size; unknown tagged fields are skipped by their size,
//! * rejects trailing bytes after the message. A well-formed response fills
//!   its frame exactly; leftovers mean the frame and the schema disagree (a
//!   wrong version, a broker bug or a forged frame), and then no count read
//!   from it can be trusted either.
//!
//! Because the walk proves that every array holds as many elements as it
//! declares, each of which was fully present, kafka-protocol's
//! `with_capacity` calls are bounded by the data actually received: the
//! memory kafka-protocol allocates is at most a small constant times the
//! size of the frame. Measured with kafka-protocol 0.18: ordinary responses
//! decode into at most about 35 times their size; the worst accepted shape,
//! many tiny structs each carrying one unknown tagged field (kafka-protocol
//! keeps unknown tags in a `BTreeMap`, one ~400-byte node per struct), comes
//! to about 90 times.
//!
//! The guard itself allocates nothing on success, never panics, and does
//! work linear in the size of its input. Its recursion depth is bounded by
//! the nesting of the static schemas, not by the input.
//!
//! APIs or versions without a schema are reported by [`is_guarded`];
//! callers must refuse to decode those rather than decode them unguarded.

#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

// Explicit path: resolves the same whether this file is compiled as
// `protocol/guard.rs` or included from elsewhere with `#[path]`.
#[path = "guard/schema.rs"]
mod schema;

use std::fmt;

use kafka_protocol::messages::ApiKey;

use schema::{Field, MESSAGES, Message, Ty};

/// Why a response header or body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GuardError {
    /// There is no schema for this API at this version, so its responses
    /// cannot be checked and must not be decoded.
    #[error("no response schema for {api:?} v{version}")]
    Unguarded {
        /// The API whose response was offered.
        api: ApiKey,
        /// The version it was offered at.
        version: i16,
    },
    /// The response header version is not one Kafka defines (0 or 1).
    #[error("unknown response header version {0}")]
    UnknownHeaderVersion(i16),
    /// A response header is malformed.
    #[error("response header v{version}: {path}: {problem}")]
    Header {
        /// The response header version.
        version: i16,
        /// Where in the header the problem was found.
        path: String,
        /// What was wrong.
        problem: Problem,
    },
    /// A response body is malformed or hostile.
    #[error("{message} v{version}: {path}: {problem}")]
    Body {
        /// The message name, such as `Metadata`.
        message: &'static str,
        /// The version the body was checked at.
        version: i16,
        /// Where in the body the problem was found, such as
        /// `topics[3].partitions`; `<body>` for the message as a whole.
        path: String,
        /// What was wrong.
        problem: Problem,
    },
}

/// The specific defect found at one position of a header or body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// An array declares more elements than the remaining bytes can hold.
    #[error("count {count} exceeds {remaining} remaining bytes{}", per_element(*.min_element_size))]
    CountTooLarge {
        /// The declared number of elements.
        count: u64,
        /// The fewest bytes one element can take.
        min_element_size: usize,
        /// The bytes left in the enclosing buffer.
        remaining: usize,
    },
    /// A string or byte field declares more bytes than remain.
    #[error("length {length} exceeds {remaining} remaining bytes")]
    LengthTooLarge {
        /// The declared length.
        length: u64,
        /// The bytes left in the enclosing buffer.
        remaining: usize,
    },
    /// The input ends inside a fixed-size value.
    #[error("truncated: needs {needed} bytes, {remaining} remaining")]
    Truncated {
        /// The bytes the value needs.
        needed: usize,
        /// The bytes left in the enclosing buffer.
        remaining: usize,
    },
    /// A length or count is negative but not the null marker `-1`.
    #[error("negative length {0}")]
    NegativeLength(i64),
    /// A null appears where the field is not nullable at this version.
    #[error("null in a field that is not nullable")]
    UnexpectedNull,
    /// An unsigned varint is longer than five bytes or exceeds 32 bits.
    #[error("malformed unsigned varint")]
    MalformedVarint,
    /// A known tagged field's value does not fill its declared size exactly.
    #[error("tagged field declares {declared} bytes but its value takes {used}")]
    TaggedFieldSize {
        /// The size the field declares.
        declared: usize,
        /// The bytes its value actually takes.
        used: usize,
    },
    /// Bytes remain after the complete message.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
}

fn per_element(min: usize) -> String {
    if min > 1 {
        format!(" at {min} or more bytes per element")
    } else {
        String::new()
    }
}

/// Checks a response body (the bytes after the response header) of `api` at
/// `version` before it is decoded.
///
/// `Ok(())` means every count, length and tagged field in `body` is backed by
/// bytes actually present and `body` holds exactly one message, so decoding
/// it with kafka-protocol allocates memory in proportion to `body.len()`.
///
/// # Errors
///
/// [`GuardError::Unguarded`] if there is no schema for `api` at `version`
/// (see [`is_guarded`]); [`GuardError::Body`] naming the offending field
/// otherwise.
pub fn check_response_body(api: ApiKey, version: i16, body: &[u8]) -> Result<(), GuardError> {
    let message = find(api, version).ok_or(GuardError::Unguarded { api, version })?;
    let mut walker = Walker::new(body, version, version >= message.flexible);
    walker
        .walk_struct(message.fields)
        .and_then(|()| walker.finish())
        .map_err(|fail| GuardError::Body {
            message: message.name,
            version,
            path: fail.render_path(),
            problem: fail.problem,
        })
}

/// Checks a response header at `header_version` (0: correlation id only;
/// 1: correlation id and tagged fields) at the start of `bytes`, which may
/// continue with the body.
///
/// Returns the length of the header, that is, where the body starts.
///
/// # Errors
///
/// [`GuardError::UnknownHeaderVersion`] for versions other than 0 and 1;
/// [`GuardError::Header`] if the header is truncated or its tagged fields
/// overrun the input.
pub fn check_response_header(header_version: i16, bytes: &[u8]) -> Result<usize, GuardError> {
    let flexible = match header_version {
        0 => false,
        1 => true,
        other => return Err(GuardError::UnknownHeaderVersion(other)),
    };
    let mut walker = Walker::new(bytes, header_version, flexible);
    walker
        .walk_struct(schema::RESPONSE_HEADER)
        .map(|()| walker.pos)
        .map_err(|fail| GuardError::Header {
            version: header_version,
            path: fail.render_path(),
            problem: fail.problem,
        })
}

/// Whether responses of `api` at `version` have a schema here.
///
/// Callers must refuse to decode responses for which this is `false`:
/// [`check_response_body`] cannot vouch for them.
#[must_use]
pub fn is_guarded(api: ApiKey, version: i16) -> bool {
    find(api, version).is_some()
}

/// The APIs that have a response schema, each with the inclusive range of
/// versions covered.
pub fn guarded_apis() -> impl Iterator<Item = (ApiKey, i16, i16)> {
    MESSAGES.iter().map(|m| (m.api, m.min, m.max))
}

fn find(api: ApiKey, version: i16) -> Option<&'static Message> {
    MESSAGES
        .iter()
        .find(|m| m.api == api && (m.min..=m.max).contains(&version))
}

/// One step of the path to a failure.
#[derive(Debug, Clone, Copy)]
enum Step {
    Field(&'static str),
    Index(u64),
    UnknownTag(u32),
    TagSection,
}

/// A failure on its way up the walk, collecting its path (innermost first).
#[derive(Debug)]
struct Fail {
    steps: Vec<Step>,
    problem: Problem,
}

impl Fail {
    fn new(problem: Problem) -> Self {
        Fail {
            steps: Vec::new(),
            problem,
        }
    }

    fn at(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    fn render_path(&self) -> String {
        let mut out = String::new();
        for step in self.steps.iter().rev() {
            let _ = match step {
                Step::Field(name) if out.is_empty() => fmt::Write::write_str(&mut out, name),
                Step::Field(name) => fmt::Write::write_fmt(&mut out, format_args!(".{name}")),
                Step::Index(i) => fmt::Write::write_fmt(&mut out, format_args!("[{i}]")),
                Step::UnknownTag(tag) => {
                    fmt::Write::write_fmt(&mut out, format_args!("<tag {tag}>"))
                }
                Step::TagSection => fmt::Write::write_str(&mut out, "<tagged fields>"),
            };
        }
        if out.is_empty() {
            out.push_str("<body>");
        }
        out
    }
}

type Walk<T = ()> = Result<T, Fail>;

/// A cursor over one buffer at one message version.
struct Walker<'a> {
    buf: &'a [u8],
    pos: usize,
    version: i16,
    flexible: bool,
}

impl<'a> Walker<'a> {
    fn new(buf: &'a [u8], version: i16, flexible: bool) -> Self {
        Walker {
            buf,
            pos: 0,
            version,
            flexible,
        }
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn finish(&self) -> Walk {
        match self.remaining() {
            0 => Ok(()),
            n => Err(Fail::new(Problem::TrailingBytes(n))),
        }
    }

    /// Takes `n` bytes, failing with `problem` if fewer remain.
    fn take_or(&mut self, n: usize, problem: impl FnOnce(usize) -> Problem) -> Walk<&'a [u8]> {
        let remaining = self.remaining();
        let bytes = n
            .checked_add(self.pos)
            .filter(|_| n <= remaining)
            .and_then(|end| self.buf.get(self.pos..end));
        match bytes {
            Some(bytes) => {
                self.pos = self.pos.saturating_add(n);
                Ok(bytes)
            }
            None => Err(Fail::new(problem(remaining))),
        }
    }

    fn fixed<const N: usize>(&mut self) -> Walk<[u8; N]> {
        let bytes = self.take_or(N, |remaining| Problem::Truncated {
            needed: N,
            remaining,
        })?;
        <[u8; N]>::try_from(bytes).map_err(|_| {
            Fail::new(Problem::Truncated {
                needed: N,
                remaining: bytes.len(),
            })
        })
    }

    fn skip_length(&mut self, length: u64) -> Walk {
        let n = usize::try_from(length).unwrap_or(usize::MAX);
        self.take_or(n, |remaining| Problem::LengthTooLarge { length, remaining })
            .map(|_| ())
    }

    /// Reads an unsigned varint the way the protocol defines it: at most five
    /// bytes, at most 32 bits. kafka-protocol reads such varints identically.
    fn varint(&mut self) -> Walk<u32> {
        let mut value: u32 = 0;
        for i in 0..5u32 {
            let [b] = self.fixed::<1>()?;
            if i == 4 && b > 0x0f {
                return Err(Fail::new(Problem::MalformedVarint));
            }
            value |= u32::from(b & 0x7f).wrapping_shl(i.wrapping_mul(7));
            if b < 0x80 {
                return Ok(value);
            }
        }
        Err(Fail::new(Problem::MalformedVarint))
    }

    /// Reads a length prefix: a compact `varint - 1` (0 meaning null) in
    /// flexible versions, otherwise a signed integer of `width` bytes (`-1`
    /// meaning null). `None` is null.
    fn length(&mut self, width: usize) -> Walk<Option<u64>> {
        if self.flexible {
            return Ok(self.varint()?.checked_sub(1).map(u64::from));
        }
        let n = if width == 2 {
            i64::from(i16::from_be_bytes(self.fixed()?))
        } else {
            i64::from(i32::from_be_bytes(self.fixed()?))
        };
        match n {
            -1 => Ok(None),
            n if n < 0 => Err(Fail::new(Problem::NegativeLength(n))),
            n => Ok(u64::try_from(n).ok()),
        }
    }

    fn walk_struct(&mut self, fields: &'static [Field]) -> Walk {
        let version = self.version;
        for field in fields
            .iter()
            .filter(|f| f.tag.is_none() && f.present(version))
        {
            self.walk_value(&field.ty, field.nullable_at(version))
                .map_err(|e| e.at(Step::Field(field.name)))?;
        }
        if self.flexible {
            self.walk_tagged_fields(fields)?;
        }
        Ok(())
    }

    fn walk_tagged_fields(&mut self, fields: &'static [Field]) -> Walk {
        let count = self.varint().map_err(|e| e.at(Step::TagSection))?;
        // Each tagged field takes at least two bytes: its tag and its size.
        self.check_count(u64::from(count), 2)
            .map_err(|e| e.at(Step::TagSection))?;
        let version = self.version;
        for _ in 0..count {
            let tag = self.varint().map_err(|e| e.at(Step::TagSection))?;
            let size = self.varint().map_err(|e| e.at(Step::UnknownTag(tag)))?;
            let size = u64::from(size);
            let known = fields
                .iter()
                .find(|f| f.tag == Some(tag) && f.present(version));
            let Some(field) = known else {
                self.skip_length(size)
                    .map_err(|e| e.at(Step::UnknownTag(tag)))?;
                continue;
            };
            let start = self.pos;
            self.skip_length(size)
                .map_err(|e| e.at(Step::Field(field.name)))?;
            let value = self.buf.get(start..self.pos).unwrap_or_default();
            let mut inner = Walker::new(value, version, self.flexible);
            inner
                .walk_value(&field.ty, field.nullable_at(version))
                .and_then(|()| match inner.remaining() {
                    0 => Ok(()),
                    _ => Err(Fail::new(Problem::TaggedFieldSize {
                        declared: value.len(),
                        used: inner.pos,
                    })),
                })
                .map_err(|e| e.at(Step::Field(field.name)))?;
        }
        Ok(())
    }

    fn check_count(&self, count: u64, min_element_size: usize) -> Walk {
        let remaining = self.remaining();
        let capacity = remaining
            .checked_div(min_element_size.max(1))
            .unwrap_or(remaining);
        if count > u64::try_from(capacity).unwrap_or(u64::MAX) {
            return Err(Fail::new(Problem::CountTooLarge {
                count,
                min_element_size,
                remaining,
            }));
        }
        Ok(())
    }

    fn walk_value(&mut self, ty: &'static Ty, nullable: bool) -> Walk {
        let null = |nullable: bool| {
            if nullable {
                Ok(())
            } else {
                Err(Fail::new(Problem::UnexpectedNull))
            }
        };
        match ty {
            Ty::I8 | Ty::Bool => self.fixed::<1>().map(|_| ()),
            Ty::I16 | Ty::U16 => self.fixed::<2>().map(|_| ()),
            Ty::I32 | Ty::U32 => self.fixed::<4>().map(|_| ()),
            Ty::I64 | Ty::F64 => self.fixed::<8>().map(|_| ()),
            Ty::Uuid => self.fixed::<16>().map(|_| ()),
            Ty::String => match self.length(2)? {
                None => null(nullable),
                Some(n) => self.skip_length(n),
            },
            Ty::Bytes | Ty::Records => match self.length(4)? {
                None => null(nullable),
                Some(n) => self.skip_length(n),
            },
            Ty::Struct(fields) => self.walk_struct(fields),
            Ty::Array(element) => match self.length(4)? {
                None => null(nullable),
                Some(count) => {
                    self.check_count(count, element.min_size(self.version, self.flexible))?;
                    for i in 0..count {
                        self.walk_value(element, false)
                            .map_err(|e| e.at(Step::Index(i)))?;
                    }
                    Ok(())
                }
            },
        }
    }
}
