//! Counting a batch's events per key and pane, the map-side combine of a sliding or
//! tumbling count (`operators.windows.routing.combine_panes`, whose Python `Counter` is
//! the reference in tests/operators/test_native_panes.py).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

/// A hasher for keys that are hashes already (Python's hash of the key, and the pane):
/// one multiply a word, as rustc's FxHasher does.
#[derive(Default)]
struct WordHasher(u64);

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_i64(&mut self, word: i64) {
        self.write_u64(word as u64);
    }

    fn write_isize(&mut self, word: isize) {
        self.write_u64(word as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// One (key, pane) seen in the batch, and how many events it had.
struct Row<'py> {
    key: Bound<'py, PyAny>,
    pane: i64,
    count: u64,
    /// The next row whose key has the same Python hash and the same pane (rare).
    next: Option<usize>,
}

/// `[(key, pane, count)]` for `keys[i]` and `times[i]`, where an event's pane is
/// `time - time % slide` (Python's `%`: the start of the slide the time falls in), in the
/// order each (key, pane) was first seen, as `collections.Counter` gives them. Keys are
/// compared as a dict compares them (`is`, then `==`).
///
/// None when `keys` or `times` is not a list, the two differ in length, a time is not an
/// int that fits 64 bits, or `slide` is not positive: the caller then counts in Python.
#[pyfunction]
pub fn count_panes<'py>(
    py: Python<'py>,
    keys: &Bound<'py, PyAny>,
    times: &Bound<'py, PyAny>,
    slide: i64,
) -> PyResult<Option<Bound<'py, PyList>>> {
    let (Ok(keys), Ok(times)) = (keys.downcast::<PyList>(), times.downcast::<PyList>()) else {
        return Ok(None);
    };
    if slide <= 0 || keys.len() != times.len() {
        return Ok(None);
    }
    let mut first: HashMap<(isize, i64), usize, BuildHasherDefault<WordHasher>> =
        HashMap::with_capacity_and_hasher(64, BuildHasherDefault::default());
    let mut rows: Vec<Row<'py>> = Vec::with_capacity(64);
    for (key, time) in keys.iter().zip(times.iter()) {
        let Ok(time) = time.extract::<i64>() else {
            return Ok(None);
        };
        let Some(pane) = time.checked_sub(time.rem_euclid(slide)) else {
            return Ok(None);
        };
        let hash = key.hash()?;
        match first.get(&(hash, pane)).copied() {
            None => {
                first.insert((hash, pane), rows.len());
                rows.push(Row { key, pane, count: 1, next: None });
            }
            Some(mut at) => loop {
                let row = &rows[at];
                if row.key.is(&key) || row.key.eq(&key)? {
                    rows[at].count += 1;
                    break;
                }
                match row.next {
                    Some(next) => at = next,
                    None => {
                        let new = rows.len();
                        rows[at].next = Some(new);
                        rows.push(Row { key, pane, count: 1, next: None });
                        break;
                    }
                }
            },
        }
    }
    let out = PyList::empty(py);
    for row in rows {
        let pane = row.pane.into_pyobject(py)?.into_any();
        let count = row.count.into_pyobject(py)?.into_any();
        out.append(PyTuple::new(py, [row.key, pane, count])?)?;
    }
    Ok(Some(out))
}
