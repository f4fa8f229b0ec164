/* shoal._native._records: the Record type, and the one call per batch that
 * turns a native read's output into a list of Records.
 *
 * Why this is not cffi: cffi can fill buffers but cannot create Python
 * objects, and a query that answers with one Record per record spends most
 * of its time in CPython making, tracking and freeing them. Here a Record is
 * a small fixed object: a 64-bit address and a reference to its bytes. It
 * refers to nothing that can refer back to it, so it cannot be part of a
 * reference cycle and is not tracked by the cyclic garbage collector: large
 * answers are never traversed by collections, and freeing one is a decref.
 * The address is stored as a C integer and becomes a Python int on access.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    PyObject_HEAD
    PyObject *raw;          /* bytes, never NULL once constructed */
    uint64_t address;
} RecordObject;

static PyTypeObject RecordType;
static PyObject *orjson_loads;  /* orjson.loads, imported on first json() */

static RecordObject *record_make(uint64_t address, PyObject *raw /* stolen */) {
    RecordObject *r = PyObject_New(RecordObject, &RecordType);
    if (r == NULL) {
        Py_DECREF(raw);
        return NULL;
    }
    r->raw = raw;
    r->address = address;
    return r;
}

static int address_from(PyObject *obj, uint64_t *out) {
    if (!PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "a record's address is an int, not %.100s", Py_TYPE(obj)->tp_name);
        return -1;
    }
    unsigned long long v = PyLong_AsUnsignedLongLong(obj);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_SetString(PyExc_ValueError, "a record's address is a non-negative 64-bit integer");
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

static PyObject *record_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"address", "raw", NULL};
    PyObject *addr_obj, *raw;
    uint64_t address;
    (void)type;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO:Record", kwlist, &addr_obj, &raw))
        return NULL;
    if (address_from(addr_obj, &address) < 0)
        return NULL;
    if (PyBytes_CheckExact(raw)) {
        Py_INCREF(raw);
    } else if (PyObject_CheckBuffer(raw)) {
        raw = PyBytes_FromObject(raw);  /* a copy: a Record owns immutable bytes */
        if (raw == NULL)
            return NULL;
    } else {
        PyErr_Format(PyExc_TypeError, "a record's raw text is bytes, not %.100s", Py_TYPE(raw)->tp_name);
        return NULL;
    }
    return (PyObject *)record_make(address, raw);
}

static void record_dealloc(RecordObject *self) {
    Py_XDECREF(self->raw);
    PyObject_Free(self);
}

static PyObject *record_get_address(RecordObject *self, void *closure) {
    (void)closure;
    return PyLong_FromUnsignedLongLong(self->address);
}

static PyObject *record_get_raw(RecordObject *self, void *closure) {
    (void)closure;
    Py_INCREF(self->raw);
    return self->raw;
}

static PyGetSetDef record_getset[] = {
    {"address", (getter)record_get_address, NULL, "The record's log address.", NULL},
    {"raw", (getter)record_get_raw, NULL, "The record's JSON text exactly as ingested (bytes).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyObject *record_json(RecordObject *self, PyObject *unused) {
    (void)unused;
    if (orjson_loads == NULL) {
        PyObject *mod = PyImport_ImportModule("orjson");
        if (mod == NULL)
            return NULL;
        orjson_loads = PyObject_GetAttrString(mod, "loads");
        Py_DECREF(mod);
        if (orjson_loads == NULL)
            return NULL;
    }
    return PyObject_CallOneArg(orjson_loads, self->raw);
}

static PyObject *record_reduce(RecordObject *self, PyObject *unused) {
    (void)unused;
    return Py_BuildValue("O(KO)", (PyObject *)Py_TYPE(self), (unsigned long long)self->address, self->raw);
}

static PyMethodDef record_methods[] = {
    {"json", (PyCFunction)record_json, METH_NOARGS, "The record parsed with orjson."},
    {"__reduce__", (PyCFunction)record_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyObject *record_repr(RecordObject *self) {
    Py_ssize_t n = PyBytes_GET_SIZE(self->raw);
    PyObject *text = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(self->raw), n > 60 ? 60 : n, "replace");
    if (text == NULL)
        return NULL;
    PyObject *out = PyUnicode_FromFormat("Record(address=%llu, raw=%R%s)", (unsigned long long)self->address,
                                         text, n > 60 ? "..." : "");
    Py_DECREF(text);
    return out;
}

static PyObject *record_richcompare(PyObject *a, PyObject *b, int op) {
    if ((op != Py_EQ && op != Py_NE) || !PyObject_TypeCheck(b, &RecordType) || !PyObject_TypeCheck(a, &RecordType))
        Py_RETURN_NOTIMPLEMENTED;
    RecordObject *x = (RecordObject *)a, *y = (RecordObject *)b;
    int eq = x->address == y->address;
    if (eq && x->raw != y->raw) {
        eq = PyObject_RichCompareBool(x->raw, y->raw, Py_EQ);
        if (eq < 0)
            return NULL;
    }
    return PyBool_FromLong(op == Py_EQ ? eq : !eq);
}

static Py_hash_t record_hash(RecordObject *self) {
    PyObject *t = Py_BuildValue("(KO)", (unsigned long long)self->address, self->raw);
    if (t == NULL)
        return -1;
    Py_hash_t h = PyObject_Hash(t);
    Py_DECREF(t);
    return h;
}

static PyTypeObject RecordType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shoal.Record",
    .tp_basicsize = sizeof(RecordObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .tp_doc = "Record(address, raw)\n--\n\nOne stored record: its log address and its raw JSON bytes.",
    .tp_new = record_new,
    .tp_dealloc = (destructor)record_dealloc,
    .tp_repr = (reprfunc)record_repr,
    .tp_richcompare = record_richcompare,
    .tp_hash = (hashfunc)record_hash,
    .tp_getset = record_getset,
    .tp_methods = record_methods,
};

/* records(data, addresses, lengths, offsets=None) -> list[Record]
 * Record i is data[offsets[i]:offsets[i] + lengths[i]] stored at addresses[i];
 * addresses are native uint64, lengths uint32, offsets uint64. Without
 * offsets the records lie back to back from data's start. */
static PyObject *make_records(PyObject *module, PyObject *args) {
    Py_buffer data, addrs, lens, offs = {0};
    PyObject *offs_obj = Py_None, *out = NULL;
    (void)module;
    if (!PyArg_ParseTuple(args, "y*y*y*|O:records", &data, &addrs, &lens, &offs_obj))
        return NULL;
    int have_offs = offs_obj != Py_None;
    if (have_offs && PyObject_GetBuffer(offs_obj, &offs, PyBUF_SIMPLE) < 0)
        goto done;
    Py_ssize_t n = addrs.len / 8;
    if (addrs.len % 8 || lens.len != 4 * n || (have_offs && offs.len != 8 * n)) {
        PyErr_SetString(PyExc_ValueError, "records: addresses, lengths and offsets disagree on the count");
        goto done;
    }
    const char *base = data.buf;
    const char *a = addrs.buf, *l = lens.buf, *o = have_offs ? offs.buf : NULL;
    out = PyList_New(n);
    if (out == NULL)
        goto done;
    uint64_t pos = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t address, off;
        uint32_t len;
        memcpy(&address, a + 8 * i, 8);
        memcpy(&len, l + 4 * i, 4);
        if (o)
            memcpy(&off, o + 8 * i, 8);
        else
            off = pos;
        pos = off + len;
        if (off > (uint64_t)data.len || len > (uint64_t)data.len - off) {
            PyErr_SetString(PyExc_ValueError, "records: a record lies beyond the data");
            Py_CLEAR(out);
            goto done;
        }
        PyObject *raw = PyBytes_FromStringAndSize(base + off, len);
        RecordObject *r = raw ? record_make(address, raw) : NULL;
        if (r == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, i, (PyObject *)r);
    }
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&addrs);
    PyBuffer_Release(&lens);
    if (have_offs && offs.obj)
        PyBuffer_Release(&offs);
    return out;
}

static PyMethodDef module_methods[] = {
    {"records", make_records, METH_VARARGS,
     "records(data, addresses, lengths, offsets=None) -> list of Records, one call per batch."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef records_module = {
    PyModuleDef_HEAD_INIT, "shoal._native._records",
    "shoal's Record type and its batch constructor.", -1, module_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__records(void) {
    if (PyType_Ready(&RecordType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&records_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&RecordType);
    if (PyModule_AddObject(m, "Record", (PyObject *)&RecordType) < 0) {
        Py_DECREF(&RecordType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
