//! Compiled hot paths of the clickstream pipeline. Python stays the reference: every
//! function here has a Python twin that property tests compare it with
//! (tests/events/test_native.py).

use std::io::Write;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

/// Avro types a batch of flat records may hold (`events.formats._BATCH_TYPES`).
const NULL: u8 = 0;
const BOOLEAN: u8 = 1;
const INT: u8 = 2;
const LONG: u8 = 3;
const STRING: u8 = 4;

/// One field of the writer's record: its branches (one for a plain type; a union's, in
/// order), and its JSON key (`"name":`) when the caller wants the field.
struct Field {
    union: bool,
    branches: Vec<u8>,
    key: Option<Vec<u8>>,
}

/// A reader over one value; every step fails on bytes that are not what the schema says.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// An Avro long: a zigzag base-128 varint of at most 10 bytes.
    fn long(&mut self) -> Option<i64> {
        let mut raw: u64 = 0;
        for shift in (0..70).step_by(7) {
            let byte = *self.data.get(self.at)?;
            self.at += 1;
            if shift == 63 && byte > 1 {
                return None; // more than 64 bits
            }
            raw |= u64::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return Some((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        None
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.long()?).ok()?;
        let end = self.at.checked_add(n)?;
        let found = self.data.get(self.at..end)?;
        self.at = end;
        Some(found)
    }
}

/// Where the first byte JSON must escape is (`"`, `\\`, a control character), eight
/// bytes at a time: a word with none of them is passed over whole.
fn to_escape(text: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut at = 0;
    while at + 8 <= text.len() {
        let word = u64::from_le_bytes(text[at..at + 8].try_into().unwrap());
        let quote = word ^ (ONES * b'"' as u64);
        let slash = word ^ (ONES * b'\\' as u64);
        let found = (word.wrapping_sub(ONES * 0x20)
            | quote.wrapping_sub(ONES) & !quote
            | slash.wrapping_sub(ONES) & !slash)
            & !word
            & HIGH;
        if found != 0 {
            break; // one of these eight; the byte loop below says which
        }
        at += 8;
    }
    text[at..]
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|i| at + i)
}

/// Appends `text` as a JSON string: runs of plain bytes copied at once.
fn json_string(out: &mut Vec<u8>, text: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let mut rest = text;
    while let Some(i) = to_escape(rest) {
        out.extend_from_slice(&rest[..i]);
        match rest[i] {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xF) as usize]);
            }
        }
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

/// One value (framing `head`, then an Avro record of `fields`) as a JSON object of the
/// wanted fields, appended to `out`; None if it is not exactly such a record.
fn record(value: &[u8], head: &[u8], fields: &[Field], out: &mut Vec<u8>) -> Option<()> {
    if !value.starts_with(head) {
        return None;
    }
    let mut reader = Reader { data: value, at: head.len() };
    out.push(b'{');
    let mut first = true;
    for field in fields {
        let kind = if field.union {
            let index = usize::try_from(reader.long()?).ok()?;
            *field.branches.get(index)?
        } else {
            field.branches[0]
        };
        let mark = out.len();
        if let Some(key) = &field.key {
            if !first {
                out.push(b',');
            }
            out.extend_from_slice(key);
        }
        match kind {
            NULL => out.extend_from_slice(b"null"),
            BOOLEAN => {
                let byte = *reader.data.get(reader.at)?;
                reader.at += 1;
                match byte {
                    0 => out.extend_from_slice(b"false"),
                    1 => out.extend_from_slice(b"true"),
                    _ => return None,
                }
            }
            INT | LONG => {
                let n = reader.long()?;
                if kind == INT && i32::try_from(n).is_err() {
                    return None;
                }
                write!(out, "{n}").ok()?;
            }
            STRING => {
                let text = reader.bytes()?;
                std::str::from_utf8(text).ok()?; // Avro strings are UTF-8
                json_string(out, text);
            }
            _ => return None,
        }
        if field.key.is_none() {
            out.truncate(mark); // read to move on, not written
        } else {
            first = false;
        }
    }
    if reader.at != value.len() {
        return None; // bytes left over: not a record of this schema
    }
    out.push(b'}');
    Some(())
}

/// Framed Avro values of one writer schema as one JSON array of objects, or None when
/// some value is not exactly a record of it (the caller then reads them one by one).
///
/// `head`: the framing every value starts with (magic byte and schema id).
/// `fields`: the writer's fields in order, each `(is_union, branch type codes, key)`,
/// the key `b'"name":'` for a field to write, or None for one only to skip.
#[pyfunction]
fn avro_to_json<'py>(
    py: Python<'py>,
    values: &Bound<'py, PyList>,
    head: &[u8],
    fields: Vec<(bool, Vec<u8>, Option<Vec<u8>>)>,
) -> Option<Bound<'py, PyBytes>> {
    let fields: Vec<Field> = fields
        .into_iter()
        .map(|(union, branches, key)| Field { union, branches, key })
        .collect();
    if fields.iter().any(|f| f.branches.is_empty() || (!f.union && f.branches.len() != 1)) {
        return None;
    }
    let mut out = Vec::with_capacity(values.len() * 128 + 2);
    out.push(b'[');
    for (i, value) in values.iter().enumerate() {
        let value = value.downcast::<PyBytes>().ok()?;
        if i > 0 {
            out.push(b',');
        }
        record(value.as_bytes(), head, &fields, &mut out)?;
    }
    out.push(b']');
    Some(PyBytes::new(py, &out))
}

#[pymodule]
fn clickstream_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(avro_to_json, m)?)?;
    Ok(())
}
