//! Compiled hot paths of the clickstream pipeline. Python stays the reference: every
//! function here has a Python twin that property tests compare it with
//! (tests/events/test_native.py).

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

/// Avro types a batch of flat records may hold (`events.formats._BATCH_TYPES`).
const NULL: u8 = 0;
const BOOLEAN: u8 = 1;
const INT: u8 = 2;
const LONG: u8 = 3;
const STRING: u8 = 4;

/// One field of the writer's record: its branches (one for a plain type; a union's, in
/// order), and its name when the caller wants the field.
struct Field {
    union: bool,
    branches: Vec<u8>,
    name: Option<Vec<u8>>,
}

/// A reader over one value; every step fails on bytes that are not what the schema says.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let byte = *self.data.get(self.at)?;
        self.at += 1;
        Some(byte)
    }

    /// An Avro long: a zigzag base-128 varint of at most 10 bytes.
    fn long(&mut self) -> Option<i64> {
        let mut raw: u64 = 0;
        for shift in (0..70).step_by(7) {
            let byte = self.byte()?;
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

    /// Avro bytes or string: a long length, then that many bytes.
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.long()?).ok()?;
        let end = self.at.checked_add(n)?;
        let found = self.data.get(self.at..end)?;
        self.at = end;
        Some(found)
    }
}

/// MessagePack's string: its header, then the UTF-8 bytes.
fn pack_str(out: &mut Vec<u8>, text: &[u8]) {
    let n = text.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n < 1 << 8 {
        out.extend_from_slice(&[0xd9, n as u8]);
    } else if n < 1 << 16 {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(text);
}

/// MessagePack's integer: a fixint when it fits in one byte, else an int 64.
fn pack_int(out: &mut Vec<u8>, n: i64) {
    if (-32..128).contains(&n) {
        out.push(n as u8);
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// One value (framing `head`, then an Avro record of `fields`) as a MessagePack map of
/// the `wanted` fields the caller named, appended to `out`; None if it is not exactly
/// such a record.
fn record(
    value: &[u8],
    head: &[u8],
    fields: &[Field],
    wanted: usize,
    out: &mut Vec<u8>,
) -> Option<()> {
    if !value.starts_with(head) {
        return None;
    }
    let mut reader = Reader {
        data: value,
        at: head.len(),
    };
    if wanted < 16 {
        out.push(0x80 | wanted as u8);
    } else {
        out.push(0xde);
        out.extend_from_slice(&(wanted as u16).to_be_bytes());
    }
    for field in fields {
        let kind = if field.union {
            let index = usize::try_from(reader.long()?).ok()?;
            *field.branches.get(index)?
        } else {
            field.branches[0]
        };
        let mark = out.len();
        if let Some(name) = &field.name {
            pack_str(out, name);
        }
        match kind {
            NULL => out.push(0xc0),
            BOOLEAN => match reader.byte()? {
                0 => out.push(0xc2),
                1 => out.push(0xc3),
                _ => return None,
            },
            INT | LONG => {
                let n = reader.long()?;
                if kind == INT && i32::try_from(n).is_err() {
                    return None;
                }
                pack_int(out, n);
            }
            STRING => {
                let text = reader.bytes()?;
                std::str::from_utf8(text).ok()?; // Avro strings are UTF-8
                pack_str(out, text);
            }
            _ => return None,
        }
        if field.name.is_none() {
            out.truncate(mark); // read to move on, not kept
        }
    }
    if reader.at != value.len() {
        return None; // bytes left over: not a record of this schema
    }
    Some(())
}

/// Framed Avro values of one writer schema as one MessagePack array of maps (for
/// `msgspec.msgpack`), or None when some value is not exactly a record of it (the
/// caller then reads them one by one).
///
/// `head`: the framing every value starts with (magic byte and schema id).
/// `fields`: the writer's fields in order, each `(is_union, branch type codes, name)`,
/// the name (UTF-8) of a field to keep, or None for one only to read past.
#[pyfunction]
fn avro_to_msgpack<'py>(
    py: Python<'py>,
    values: &Bound<'py, PyList>,
    head: &[u8],
    fields: Vec<(bool, Vec<u8>, Option<Vec<u8>>)>,
) -> Option<Bound<'py, PyBytes>> {
    let fields: Vec<Field> = fields
        .into_iter()
        .map(|(union, branches, name)| Field {
            union,
            branches,
            name,
        })
        .collect();
    if fields
        .iter()
        .any(|f| f.branches.is_empty() || (!f.union && f.branches.len() != 1))
    {
        return None;
    }
    let wanted = fields.iter().filter(|f| f.name.is_some()).count();
    if wanted > usize::from(u16::MAX) {
        return None; // more than a MessagePack map 16 holds
    }
    let mut out = Vec::with_capacity(values.len() * 128 + 5);
    out.push(0xdd); // array 32
    out.extend_from_slice(&u32::try_from(values.len()).ok()?.to_be_bytes());
    for value in values.iter() {
        let value = value.downcast::<PyBytes>().ok()?;
        record(value.as_bytes(), head, &fields, wanted, &mut out)?;
    }
    Some(PyBytes::new(py, &out))
}

#[pymodule]
fn clickstream_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(avro_to_msgpack, m)?)?;
    Ok(())
}
