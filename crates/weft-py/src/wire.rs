//! `weft._weft.wire_dumps` / `wire_loads`: the Rust wire codec (crate
//! `weft-wire`) with the same Python semantics as the pure-Python twin
//! `weft._bootstrap.wire.dumps` / `loads` (docs/wire.md). Errors are that
//! module's `DumpError` / `LoadError` classes, so callers catch one family.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyBytes, PyComplex, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString,
    PyTuple, PyType,
};
use weft_wire::{Emitter, LoadOptions, MAX_CHANNELS, MAX_CONTAINERS, MAX_DEPTH, MAX_INT_DIGITS, MAX_VALUES};

const ERRORS_MODULE: &str = "weft._bootstrap.wire";

fn error_type<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyType>>,
    name: &str,
) -> PyResult<Bound<'py, PyType>> {
    Ok(cell.import(py, ERRORS_MODULE, name)?.clone())
}

pub(crate) fn dump_error(py: Python<'_>, msg: String) -> PyErr {
    static T: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    match error_type(py, &T, "DumpError") {
        Ok(t) => PyErr::from_type(t, msg),
        Err(e) => e,
    }
}

pub(crate) fn load_error(py: Python<'_>, msg: String) -> PyErr {
    static T: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    match error_type(py, &T, "LoadError") {
        Ok(t) => PyErr::from_type(t, msg),
        Err(e) => e,
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    let tp = obj.get_type();
    let qual = tp
        .qualname()
        .map(|s| s.to_string())
        .unwrap_or_else(|_| "?".into());
    match tp.module().map(|s| s.to_string()) {
        Ok(m) if m != "builtins" => format!("{m}.{qual}"),
        _ => qual,
    }
}

/// Values, containers and channel references written so far, counted
/// exactly as the decoder will count them (docs/wire.md, "Resource
/// limits"): a message it would refuse is a DumpError here.
#[derive(Default)]
pub(crate) struct Counts {
    values: usize,
    containers: usize,
    channels: usize,
}

impl Counts {
    fn value(&mut self, py: Python<'_>) -> PyResult<()> {
        self.values += 1;
        if self.values > MAX_VALUES {
            return Err(dump_error(py, format!("more than {MAX_VALUES} values in one message")));
        }
        Ok(())
    }
    fn container(&mut self, py: Python<'_>) -> PyResult<()> {
        self.containers += 1;
        if self.containers > MAX_CONTAINERS {
            return Err(dump_error(py, format!("more than {MAX_CONTAINERS} containers in one message")));
        }
        Ok(())
    }
    fn channel(&mut self, py: Python<'_>) -> PyResult<()> {
        self.channels += 1;
        if self.channels > MAX_CHANNELS {
            return Err(dump_error(
                py,
                format!("more than {MAX_CHANNELS} channel references in one message"),
            ));
        }
        Ok(())
    }
}

/// Serialize `obj` into `out` (after what it holds) as one message's value,
/// mirroring `_save` in the Python twin: the same bytes, the same errors.
/// Straight from the Python objects to bytes, through `weft_wire::Emitter`.
pub(crate) fn dump_into(out: &mut Vec<u8>, obj: &Bound<'_, PyAny>, depth: usize) -> PyResult<()> {
    dump_counted(out, obj, depth, &mut Counts::default())
}

fn dump_counted(out: &mut Vec<u8>, obj: &Bound<'_, PyAny>, depth: usize, counts: &mut Counts) -> PyResult<()> {
    let py = obj.py();
    // a tuple or set is counted after its items, where the decoder meets it
    let late = obj.is_exact_instance_of::<PyTuple>()
        || obj.is_exact_instance_of::<PySet>()
        || obj.is_exact_instance_of::<PyFrozenSet>();
    if !late {
        counts.value(py)?;
    }
    let wire = |r: Result<(), weft_wire::DumpError>| r.map_err(|e| dump_error(py, e.to_string()));
    if obj.is_none() {
        Emitter::new(out).none();
        return Ok(());
    }
    if let Ok(b) = obj.cast_exact::<PyBool>() {
        Emitter::new(out).bool(b.is_true());
        return Ok(());
    }
    if obj.is_exact_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            Emitter::new(out).int(i);
            return Ok(());
        }
        let text = obj
            .str()
            .map_err(|e| dump_error(py, format!("int too large to serialize: {e}")))?
            .to_string();
        let digits = text.strip_prefix('-').unwrap_or(&text).len();
        if digits > MAX_INT_DIGITS {
            return Err(dump_error(
                py,
                format!(
                    "int with {} decimal digits exceeds the limit of {MAX_INT_DIGITS}",
                    text.len()
                ),
            ));
        }
        return wire(Emitter::new(out).int_text(&text));
    }
    if let Ok(f) = obj.cast_exact::<PyFloat>() {
        Emitter::new(out).float(f.value());
        return Ok(());
    }
    if let Ok(c) = obj.cast_exact::<PyComplex>() {
        Emitter::new(out).complex(c.real(), c.imag());
        return Ok(());
    }
    if let Ok(b) = obj.cast_exact::<PyBytes>() {
        return wire(Emitter::new(out).bytes(b.as_bytes()));
    }
    if let Ok(s) = obj.cast_exact::<PyString>() {
        let s = s
            .to_str()
            .map_err(|e| dump_error(py, format!("str is not UTF-8 encodable: {e}")))?;
        return wire(Emitter::new(out).str(s));
    }
    let is_container = obj.is_exact_instance_of::<PyTuple>()
        || obj.is_exact_instance_of::<PyList>()
        || obj.is_exact_instance_of::<PyDict>()
        || obj.is_exact_instance_of::<PySet>()
        || obj.is_exact_instance_of::<PyFrozenSet>();
    if is_container {
        let depth = depth + 1;
        if depth > MAX_DEPTH {
            return Err(dump_error(
                py,
                format!(
                    "containers nested deeper than {MAX_DEPTH} (a self-referencing {}?)",
                    type_name(obj)
                ),
            ));
        }
        if !late {
            counts.container(py)?;
        }
        if let Ok(d) = obj.cast_exact::<PyDict>() {
            Emitter::new(out).dict_start();
            // PyDict_Next, not pyo3's dict iterator: that one panics when
            // the dict changes size, and encoding a key or value can run
            // Python code (a channel's _weft_channel_id property) that
            // changes it. A change is a DumpError, as in the Python twin;
            // every pair written is whole, so the bytes stay decodable.
            let size = d.len();
            let mut pos: pyo3::ffi::Py_ssize_t = 0;
            loop {
                let mut k: *mut pyo3::ffi::PyObject = std::ptr::null_mut();
                let mut v: *mut pyo3::ffi::PyObject = std::ptr::null_mut();
                // SAFETY: `d` is a live dict (we hold a reference and the
                // GIL); PyDict_Next reads the dict's current table with
                // bounds checks on `pos`, so it is memory-safe even after
                // the dict was mutated (it may then skip or repeat entries,
                // which the size check below turns into an error).
                let more = unsafe { pyo3::ffi::PyDict_Next(d.as_ptr(), &mut pos, &mut k, &mut v) };
                if more == 0 {
                    break;
                }
                // SAFETY: on success PyDict_Next gives borrowed, non-null
                // references owned by the dict; we take strong references
                // at once, before any Python code can run and drop them.
                let (key, value) = unsafe { (Bound::from_borrowed_ptr(py, k), Bound::from_borrowed_ptr(py, v)) };
                dump_counted(out, &key, depth, counts)?;
                dump_counted(out, &value, depth, counts)?;
                Emitter::new(out).setitem();
                if d.len() != size {
                    return Err(dump_error(
                        py,
                        "dict changed during serialization: dictionary changed size during iteration".into(),
                    ));
                }
            }
            return Ok(());
        }
        if let Ok(l) = obj.cast_exact::<PyList>() {
            // a list that changes size while it is written (a channel's
            // _weft_channel_id property could do it) still ends well-formed
            let items: Vec<Bound<'_, PyAny>> = l.iter().collect();
            wire(Emitter::new(out).list_start(items.len()))?;
            for (i, item) in items.iter().enumerate() {
                counts.value(py)?; // the index
                Emitter::new(out).list_item(i);
                dump_counted(out, item, depth, counts)?;
                Emitter::new(out).setitem();
                counts.values -= 1; // stored: the index no longer counts
            }
            return Ok(());
        }
        let mut n = 0;
        for item in obj.try_iter()? {
            // a set changed by the encoding of its items: a DumpError
            let item = item.map_err(|e| {
                if e.is_instance_of::<pyo3::exceptions::PyRuntimeError>(py) {
                    dump_error(py, format!("{} changed during serialization: {}", type_name(obj), e.value(py)))
                } else {
                    e
                }
            })?;
            dump_counted(out, &item, depth, counts)?;
            n += 1;
        }
        counts.value(py)?;
        counts.container(py)?;
        let mut e = Emitter::new(out);
        return wire(if obj.is_exact_instance_of::<PyTuple>() {
            e.tuple_end(n)
        } else {
            e.set_end(n, obj.is_exact_instance_of::<PyFrozenSet>())
        });
    }
    let cid = match obj.getattr(pyo3::intern!(py, "_weft_channel_id")) {
        Ok(c) => c,
        Err(e) if e.is_instance_of::<pyo3::exceptions::PyAttributeError>(py) => {
            return Err(dump_error(
                py,
                format!(
                    "can't serialize object of type {} (supported: None, bool, int, float, complex, \
                     bytes, str, tuple, list, dict, set, frozenset, channels)",
                    type_name(obj)
                ),
            ))
        }
        Err(e) => return Err(e),
    };
    if !cid.is_none() {
        if cid.is_exact_instance_of::<PyInt>() {
            if let Ok(id) = cid.extract::<u32>() {
                if id <= i32::MAX as u32 {
                    counts.channel(py)?;
                    return wire(Emitter::new(out).channel(id));
                }
            }
        }
        return Err(dump_error(
            py,
            format!(
                "{}._weft_channel_id is {}, expected an int in 0..2**31-1",
                type_name(obj),
                cid.repr()?
            ),
        ));
    }
    Err(dump_error(
        py,
        format!("can't serialize object of type {}", type_name(obj)),
    ))
}

/// Makes Python objects straight from the wire (`weft_wire::decode_into`),
/// without an intermediate `Value` tree. Channel references are made by
/// `factory` as they come, as the Python twin does.
struct PyBuilder<'a, 'py> {
    py: Python<'py>,
    factory: Option<&'a Bound<'py, PyAny>>,
    /// A Python error that stopped the decoding (it wins over the LoadError).
    err: Option<PyErr>,
}

impl<'a, 'py> PyBuilder<'a, 'py> {
    fn new(py: Python<'py>, factory: Option<&'a Bound<'py, PyAny>>) -> Self {
        PyBuilder { py, factory, err: None }
    }

    /// Keep `e` to raise as it is; stop the decoding.
    fn fail<T>(&mut self, e: PyErr) -> Result<T, String> {
        let why = e.to_string();
        self.err = Some(e);
        Err(why)
    }

    fn made<T>(&mut self, r: PyResult<T>) -> Result<T, String> {
        r.or_else(|e| self.fail(e))
    }
}

type PyItem<'py> = Bound<'py, PyAny>;

impl<'py> weft_wire::Builder for PyBuilder<'_, 'py> {
    type Item = PyItem<'py>;
    fn none(&mut self) -> Result<PyItem<'py>, String> {
        Ok(self.py.None().into_bound(self.py))
    }
    fn bool(&mut self, b: bool) -> Result<PyItem<'py>, String> {
        Ok(PyBool::new(self.py, b).to_owned().into_any())
    }
    fn int(&mut self, i: i64) -> Result<PyItem<'py>, String> {
        let r = i.into_pyobject(self.py).map(|o| o.into_any());
        self.made(r.map_err(PyErr::from))
    }
    fn big_int(&mut self, text: &str) -> Result<PyItem<'py>, String> {
        match self.py.get_type::<PyInt>().call1((text,)) {
            Ok(v) => Ok(v),
            Err(e) => Err(format!("long int not convertible: {e}")),
        }
    }
    fn float(&mut self, f: f64) -> Result<PyItem<'py>, String> {
        Ok(PyFloat::new(self.py, f).into_any())
    }
    fn complex(&mut self, re: f64, im: f64) -> Result<PyItem<'py>, String> {
        Ok(PyComplex::from_doubles(self.py, re, im).into_any())
    }
    fn bytes(&mut self, b: &[u8]) -> Result<PyItem<'py>, String> {
        Ok(PyBytes::new(self.py, b).into_any())
    }
    fn str(&mut self, s: &str) -> Result<PyItem<'py>, String> {
        Ok(PyString::new(self.py, s).into_any())
    }
    fn channel(&mut self, id: u32) -> Result<PyItem<'py>, String> {
        match self.factory {
            Some(f) => {
                let r = f.call1((id,));
                self.made(r)
            }
            None => Err(format!("channel reference {id} but no channel_factory was given")),
        }
    }
    fn tuple(&mut self, items: Vec<PyItem<'py>>) -> Result<PyItem<'py>, String> {
        let r = PyTuple::new(self.py, items).map(|t| t.into_any());
        self.made(r)
    }
    fn list(&mut self, items: Vec<PyItem<'py>>) -> Result<PyItem<'py>, String> {
        let r = PyList::new(self.py, items).map(|l| l.into_any());
        self.made(r)
    }
    fn set(&mut self, items: Vec<PyItem<'py>>, frozen: bool) -> Result<PyItem<'py>, String> {
        let made = if frozen {
            PyFrozenSet::new(self.py, items).map(|s| s.into_any())
        } else {
            PySet::new(self.py, items).map(|s| s.into_any())
        };
        made.map_err(|_| format!("unhashable item in {}", if frozen { "frozenset" } else { "set" }))
    }
    fn new_dict(&mut self) -> Result<PyItem<'py>, String> {
        Ok(PyDict::new(self.py).into_any())
    }
    fn dict_set(&mut self, dict: &mut PyItem<'py>, key: PyItem<'py>, value: PyItem<'py>) -> Result<(), String> {
        let d = dict.cast::<PyDict>().map_err(|_| "SETITEM target is not a dict".to_string())?;
        match d.set_item(&key, value) {
            Ok(()) => Ok(()),
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyTypeError>(self.py) => {
                Err(format!("unhashable dict key of type {}", type_name(&key)))
            }
            Err(e) => self.fail(e),
        }
    }
    fn is_index(&self, key: &PyItem<'py>, index: usize) -> bool {
        key.is_exact_instance_of::<PyInt>() && key.extract::<usize>().is_ok_and(|i| i == index)
    }
    fn type_name(&self, item: &PyItem<'py>) -> String {
        type_name(item)
    }
    fn describe(&self, item: &PyItem<'py>) -> String {
        item.repr().map(|r| r.to_string()).unwrap_or_else(|_| type_name(item))
    }
}

/// Decode `raw` into Python objects: LoadError for input that does not
/// decode, or the Python error that stopped it (from the channel factory).
fn loads_raw<'py>(
    py: Python<'py>,
    raw: &[u8],
    opts: &LoadOptions,
    factory: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let mut b = PyBuilder::new(py, factory);
    weft_wire::decode_into(raw, opts, &mut b).map_err(|e| match b.err.take() {
        Some(err) => err,
        None => load_error(py, e.to_string()),
    })
}

/// The object a CHANNEL_DATA payload holds, if it decodes without help:
/// None for a payload with channel references (they need the gateway's
/// channel factory) or one that does not decode (`core` reports why).
pub(crate) fn decode_plain<'py>(py: Python<'py>, raw: &[u8]) -> Option<Bound<'py, PyAny>> {
    if let Some(payload) = lone_bytes(raw, false) {
        return Some(PyBytes::new(py, payload).into_any());
    }
    let mut b = PyBuilder::new(py, None);
    weft_wire::decode_into(raw, &LoadOptions::default(), &mut b).ok()
}

/// Serialize `obj` exactly as `weft._bootstrap.wire.dumps`.
#[pyfunction]
#[pyo3(signature = (obj, versioned = false))]
pub fn wire_dumps<'py>(obj: &Bound<'py, PyAny>, versioned: bool) -> PyResult<Bound<'py, PyBytes>> {
    let mut out = Vec::new();
    if versioned {
        out.push(weft_wire::DUMPFORMAT_VERSION);
    }
    dump_into(&mut out, obj, 0)?;
    Emitter::new(&mut out).stop();
    Ok(PyBytes::new(obj.py(), &out))
}

/// Deserialize one value exactly as `weft._bootstrap.wire.loads`.
#[pyfunction]
#[pyo3(signature = (data, channel_factory = None, versioned = false, py2str_as_py3str = true, py3str_as_py2str = false))]
pub fn wire_loads<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    channel_factory: Option<Bound<'py, PyAny>>,
    versioned: bool,
    py2str_as_py3str: bool,
    py3str_as_py2str: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let opts = LoadOptions {
        versioned,
        py2str_as_py3str,
        py3str_as_py2str,
    };
    let factory = channel_factory.filter(|f| !f.is_none());
    if let Ok(b) = data.cast::<PyBytes>() {
        // borrowed: no copy of the input
        let raw = b.as_bytes();
        if let Some(payload) = lone_bytes(raw, versioned) {
            return Ok(PyBytes::new(py, payload).into_any());
        }
        return loads_raw(py, raw, &opts, factory.as_ref());
    }
    let raw: Vec<u8> = if data.is_instance_of::<pyo3::types::PyByteArray>()
        || data.is_instance_of::<pyo3::types::PyMemoryView>()
    {
        py.get_type::<PyBytes>()
            .call1((data,))?
            .cast_into::<PyBytes>()?
            .as_bytes()
            .to_vec()
    } else {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "loads() needs bytes, not {}",
            type_name(data)
        )));
    };
    loads_raw(py, &raw, &opts, factory.as_ref())
}

/// The payload of an encoding that is exactly one bytes value (`A n raw Q`,
/// after the version byte if `versioned`), which is then made into a Python
/// bytes object with one copy instead of three.
fn lone_bytes(raw: &[u8], versioned: bool) -> Option<&[u8]> {
    let raw = if versioned {
        raw.strip_prefix(&[weft_wire::DUMPFORMAT_VERSION])?
    } else {
        raw
    };
    if raw.len() < 6 || raw[0] != weft_wire::opcode::BYTES || raw[raw.len() - 1] != weft_wire::opcode::STOP {
        return None;
    }
    let n = i32::from_be_bytes([raw[1], raw[2], raw[3], raw[4]]);
    if n < 0 || n as usize != raw.len() - 6 {
        return None;
    }
    Some(&raw[5..raw.len() - 1])
}

/// Register the wire functions on the compiled module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(wire_dumps, m)?)?;
    m.add_function(wrap_pyfunction!(wire_loads, m)?)?;
    Ok(())
}
