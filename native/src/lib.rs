//! Compiled hot paths of the clickstream pipeline: Avro batches, a replay file's lines,
//! and a batch's counts per key and pane (`panes`). Python stays the reference: every
//! function here has a Python twin that property tests compare it with
//! (tests/events/test_native.py, tests/sources/test_replay_native.py,
//! tests/operators/test_native_panes.py).

mod panes;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use pyo3::exceptions::PyValueError;
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

/// Whether a line is blank as Python's `bytes.isspace` says: not empty, and only
/// ASCII whitespace (a replay skips such lines).
fn blank(line: &[u8]) -> bool {
    !line.is_empty()
        && line
            .iter()
            .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
}

/// The whole lines of `block` from `start` on, each with its newline: a line ends after
/// a `\n`, or at the end of the block when `at_eof` (the file's last line may have none).
struct Lines<'a> {
    block: &'a [u8],
    at: usize,
    at_eof: bool,
}

impl<'a> Iterator for Lines<'a> {
    /// (where the line starts, where it ends)
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        let rest = self.block.get(self.at..)?;
        let end = match memchr::memchr(b'\n', rest) {
            Some(i) => self.at + i + 1,
            None if self.at_eof && !rest.is_empty() => self.block.len(),
            None => return None,
        };
        let line = (self.at, end);
        self.at = end;
        Some(line)
    }
}

/// What `LineFile::pick` found: where the lines taken end, how many they are, how
/// many of them are kept, and whether every line not kept is known.
struct Picked {
    end: usize,
    taken: usize,
    kept: usize,
    all_known: bool,
}

/// Up to `wanted` whole lines of `block` from `start` on; the kept ones appended to
/// `out`, each followed by a comma (see `LineFile::pick`).
fn pick(
    block: &[u8],
    start: usize,
    wanted: usize,
    at_eof: bool,
    own: Option<&[Vec<u8>]>,
    known: &[Vec<u8>],
    out: &mut Vec<u8>,
) -> Picked {
    let mut found = Picked {
        end: start,
        taken: 0,
        kept: 0,
        all_known: true,
    };
    let lines = Lines {
        block,
        at: start,
        at_eof,
    };
    for (from, to) in lines.take(wanted) {
        let line = &block[from..to];
        found.end = to;
        found.taken += 1;
        let keep = match own {
            None => !blank(line),
            Some(own) if own.iter().any(|p| line.starts_with(p)) => true,
            Some(_) => {
                if !blank(line) && !known.iter().any(|p| line.starts_with(p)) {
                    found.all_known = false;
                }
                false
            }
        };
        if keep {
            found.kept += 1;
            if found.all_known {
                out.extend_from_slice(line);
                out.push(b',');
            }
        }
    }
    found
}

/// A replay file read a block at a time into one buffer, which is kept: fresh buffers
/// of megabytes cost a page fault each 4 KiB, more than finding the lines in them.
/// `sources.replay` reads with it; its line-by-line Python path is the reference
/// (tests/sources/test_replay_native.py).
#[pyclass]
struct LineFile {
    file: Option<File>,
    buf: Vec<u8>,
    /// `buf[start..end]` is read from the file and not yet taken; `base` is the file
    /// offset of `buf[0]`
    start: usize,
    end: usize,
    base: u64,
    eof: bool,
    /// the span of `buf` the last `pick` took
    last: (usize, usize),
}

impl LineFile {
    /// Read more of the file after what is left (a line that did not fit); at its end,
    /// `eof`.
    fn fill(&mut self) -> PyResult<()> {
        self.buf.copy_within(self.start..self.end, 0);
        self.base += self.start as u64;
        self.end -= self.start;
        self.start = 0;
        self.last = (0, 0);
        if self.end == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0); // one line longer than the buffer
        }
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| PyValueError::new_err("the replay file is closed"))?;
        let n = file.read(&mut self.buf[self.end..])?;
        self.end += n;
        self.eof = n == 0;
        Ok(())
    }
}

#[pymethods]
impl LineFile {
    /// The file at `path`, from byte `position` on, read `block` bytes at a time.
    #[new]
    fn new(path: &str, position: u64, block: usize) -> PyResult<Self> {
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(position))?;
        Ok(LineFile {
            file: Some(file),
            buf: vec![0; block.max(1)],
            start: 0,
            end: 0,
            base: position,
            eof: false,
            last: (0, 0),
        })
    }

    /// Up to `wanted` whole lines, and which of them a part reads, the way
    /// `sources.replay` reads them line by line: how many lines were taken, how many of
    /// them are kept, and the kept ones as one JSON array (`[line,line]`, for one msgspec
    /// decode). Kept: every line that starts with one of `own`, or with `own` None,
    /// every line; blank lines never. The array is None when a line that is not blank
    /// starts with none of `known` (with `own` given): the caller then reads the lines
    /// taken (`taken`) one by one. No line is taken only at the end of the file.
    #[pyo3(signature = (wanted, own, known))]
    fn pick<'py>(
        &mut self,
        py: Python<'py>,
        wanted: usize,
        own: Option<Vec<Vec<u8>>>,
        known: Vec<Vec<u8>>,
    ) -> PyResult<(usize, usize, Option<Bound<'py, PyBytes>>)> {
        let mut out = Vec::new();
        loop {
            out.clear();
            out.push(b'[');
            let block = &self.buf[..self.end];
            let found = pick(
                block,
                self.start,
                wanted,
                self.eof,
                own.as_deref(),
                &known,
                &mut out,
            );
            if found.taken == 0 && !self.eof {
                self.fill()?;
                continue;
            }
            self.last = (self.start, found.end);
            self.start = found.end;
            if !found.all_known {
                return Ok((found.taken, found.kept, None));
            }
            if found.kept > 0 {
                out.pop(); // the last comma
            }
            out.push(b']');
            return Ok((found.taken, found.kept, Some(PyBytes::new(py, &out))));
        }
    }

    /// The bytes of the lines the last `pick` took.
    fn taken<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.buf[self.last.0..self.last.1])
    }

    /// The next line that is not blank and starts with none of `known`, or None at the
    /// end of the file. The replay's partition scan passes over the lines of partitions
    /// it found already with this.
    fn next_unknown<'py>(
        &mut self,
        py: Python<'py>,
        known: Vec<Vec<u8>>,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        loop {
            let lines = Lines {
                block: &self.buf[..self.end],
                at: self.start,
                at_eof: self.eof,
            };
            let mut unknown = None;
            for (from, to) in lines {
                self.start = to;
                let line = &self.buf[from..to];
                if !known.iter().any(|p| line.starts_with(p)) && !blank(line) {
                    unknown = Some(line);
                    break;
                }
            }
            if let Some(line) = unknown {
                return Ok(Some(PyBytes::new(py, line)));
            }
            if self.eof {
                return Ok(None);
            }
            self.fill()?;
        }
    }

    /// The file offset after the last line taken.
    #[getter]
    fn position(&self) -> u64 {
        self.base + self.start as u64
    }

    /// Whether every line of the file has been taken.
    #[getter]
    fn done(&self) -> bool {
        self.eof && self.start == self.end
    }

    fn close(&mut self) {
        self.file = None;
    }
}

#[pymodule]
fn clickstream_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(avro_to_msgpack, m)?)?;
    m.add_class::<LineFile>()?;
    m.add_function(wrap_pyfunction!(panes::count_panes, m)?)?;
    Ok(())
}
