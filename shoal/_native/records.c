/* shoal._native._records: the Record type, and the one call per batch that
 * turns a native read's output into a list of Records. The module also
 * carries the HTTP wire form of records with their addresses (wire.c).
 *
 * Why this is not cffi: cffi can fill buffers but cannot create Python
 * objects, and a query that answers with one Record per record spends most
 * of its time in CPython making, tracking and freeing them. Here a Record is
 * a small fixed object: a 64-bit address and its text. It refers to nothing
 * that can refer back to it, so it cannot be part of a reference cycle and is
 * not tracked by the cyclic garbage collector: large answers are never
 * traversed by collections, and freeing one is a decref. The address is
 * stored as a C integer and becomes a Python int on access.
 *
 * Shared batches. A large answer's Records are made over the buffer the
 * native read filled (records(..., share=True)): each Record points at its
 * text there, and a Batch object holds the buffer while any of them does.
 * Making 1,000 Records then costs 1,000 small objects and no copy, where a
 * bytes object per record costs a malloc and a copy of ~1 KB into memory
 * that is not in any cache, which on a machine with modest memory bandwidth
 * is most of a query's time. A Record's text becomes its own bytes object
 * the first time `raw` is asked for, which then lets go of the batch, so
 * what is kept is only what is used. The bound on what idle Records pin:
 * once no more than 1/RELEASE_SHARE of a batch's Records still point into
 * it (the others died or were given their own bytes), the rest are given
 * their own bytes and the buffer is freed. So Records kept from a large
 * answer pin at most RELEASE_SHARE times their own size (for records of
 * similar sizes), and an answer iterated and dropped record by record costs
 * one copy for each of the last 1/RELEASE_SHARE of a batch.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "wire.h"

#define RELEASE_SHARE 8

typedef struct BatchObject BatchObject;

typedef struct {
    PyObject_HEAD
    PyObject *raw;          /* bytes; NULL while the text is read from `batch` */
    BatchObject *batch;     /* the shared buffer holding the text, or NULL */
    const char *text;       /* the text in batch's buffer (batch != NULL) */
    uint64_t address;
    uint32_t len;           /* the text's length (batch != NULL) */
    uint32_t slot;          /* this Record's place in batch->members */
} RecordObject;

/* A buffer shared by the Records made over it. members[i] is Record i while
 * it points into the buffer (a borrowed reference: the Record holds the
 * Batch, not the reverse), NULL after. Not tracked by the GC: it refers only
 * to the buffer's owner. */
struct BatchObject {
    PyObject_HEAD
    Py_buffer view;
    RecordObject **members;
    Py_ssize_t n;
    Py_ssize_t pointing;    /* members not NULL */
};

static PyTypeObject BatchType;
static PyTypeObject RecordType;
static PyObject *orjson_loads;  /* orjson.loads, imported on first json() */

static RecordObject *record_make(uint64_t address, PyObject *raw /* stolen */) {
    RecordObject *r = PyObject_New(RecordObject, &RecordType);
    if (r == NULL) {
        Py_DECREF(raw);
        return NULL;
    }
    r->raw = raw;
    r->batch = NULL;
    r->text = NULL;
    r->len = 0;
    r->slot = 0;
    r->address = address;
    return r;
}

/* The record's text, wherever it is. */
static inline void record_text(const RecordObject *r, const char **p, Py_ssize_t *n) {
    if (r->raw) {
        *p = PyBytes_AS_STRING(r->raw);
        *n = PyBytes_GET_SIZE(r->raw);
    } else {
        *p = r->text;
        *n = (Py_ssize_t)r->len;
    }
}

/* Give every Record still pointing into `b` its own bytes and let go of b,
 * which may free it. On a failed allocation the rest keep pointing into b
 * (correct, only less frugal) and no error is left set. */
static void batch_release(BatchObject *b) {
    Py_INCREF(b);  /* members' decrefs must not free b during the loop */
    for (Py_ssize_t i = 0; i < b->n && b->pointing > 0; i++) {
        RecordObject *r = b->members[i];
        if (r == NULL)
            continue;
        PyObject *raw = PyBytes_FromStringAndSize(r->text, (Py_ssize_t)r->len);
        if (raw == NULL) {
            PyErr_Clear();
            break;
        }
        r->raw = raw;
        r->batch = NULL;
        r->text = NULL;
        b->members[i] = NULL;
        b->pointing--;
        Py_DECREF(b);
    }
    Py_DECREF(b);
}

/* Record r stops pointing into its batch (it died, or has its own bytes). */
static void record_detach(RecordObject *r) {
    BatchObject *b = r->batch;
    b->members[r->slot] = NULL;
    b->pointing--;
    r->batch = NULL;
    r->text = NULL;
    if (b->pointing > 0 && b->pointing * RELEASE_SHARE <= b->n) {
        /* May run inside a dealloc while an exception propagates: keep it. */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        batch_release(b);
        PyErr_Restore(type, value, tb);
    }
    Py_DECREF(b);
}

static void batch_dealloc(BatchObject *self) {
    PyBuffer_Release(&self->view);
    PyMem_Free(self->members);
    PyObject_Free(self);
}

static PyTypeObject BatchType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shoal._native._records.Batch",
    .tp_basicsize = sizeof(BatchObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The buffer shared by a batch of Records (internal).",
    .tp_dealloc = (destructor)batch_dealloc,
};

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
    if (self->batch)
        record_detach(self);
    Py_XDECREF(self->raw);
    PyObject_Free(self);
}

static PyObject *record_get_address(RecordObject *self, void *closure) {
    (void)closure;
    return PyLong_FromUnsignedLongLong(self->address);
}

/* The record's own bytes, made from the shared buffer on first need. */
static PyObject *record_raw(RecordObject *self) {
    if (self->raw == NULL) {
        PyObject *raw = PyBytes_FromStringAndSize(self->text, (Py_ssize_t)self->len);
        if (raw == NULL)
            return NULL;
        self->raw = raw;
        record_detach(self);
    }
    return self->raw;
}

static PyObject *record_get_raw(RecordObject *self, void *closure) {
    (void)closure;
    PyObject *raw = record_raw(self);
    Py_XINCREF(raw);
    return raw;
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
    if (self->raw)
        return PyObject_CallOneArg(orjson_loads, self->raw);
    /* Parsed where it lies: a read-only view of the shared buffer, which this
     * Record keeps alive for the call (orjson keeps no reference to it). */
    PyObject *view = PyMemoryView_FromMemory((char *)self->text, (Py_ssize_t)self->len, PyBUF_READ);
    if (view == NULL)
        return NULL;
    PyObject *out = PyObject_CallOneArg(orjson_loads, view);
    Py_DECREF(view);
    return out;
}

static PyObject *record_reduce(RecordObject *self, PyObject *unused) {
    (void)unused;
    PyObject *raw = record_raw(self);
    if (raw == NULL)
        return NULL;
    return Py_BuildValue("O(KO)", (PyObject *)Py_TYPE(self), (unsigned long long)self->address, raw);
}

static PyMethodDef record_methods[] = {
    {"json", (PyCFunction)record_json, METH_NOARGS, "The record parsed with orjson."},
    {"__reduce__", (PyCFunction)record_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyObject *record_repr(RecordObject *self) {
    const char *p;
    Py_ssize_t n;
    record_text(self, &p, &n);
    PyObject *text = PyUnicode_DecodeUTF8(p, n > 60 ? 60 : n, "replace");
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
    if (eq) {
        const char *p, *q;
        Py_ssize_t n, m;
        record_text(x, &p, &n);
        record_text(y, &q, &m);
        eq = n == m && (p == q || memcmp(p, q, (size_t)n) == 0);
    }
    return PyBool_FromLong(op == Py_EQ ? eq : !eq);
}

static Py_hash_t record_hash(RecordObject *self) {
    const char *p;
    Py_ssize_t n;
    record_text(self, &p, &n);
    PyObject *t = Py_BuildValue("(Ky#)", (unsigned long long)self->address, p, n);
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

/* records(data, addresses, lengths, offsets=None, share=False) -> list[Record]
 * Record i is data[offsets[i]:offsets[i] + lengths[i]] stored at addresses[i];
 * addresses are native uint64, lengths uint32, offsets uint64. Without
 * offsets the records lie back to back from data's start. With share, the
 * Records point into data (which must then never change) instead of each
 * having a copy; see "Shared batches" above. */
static PyObject *make_records(PyObject *module, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"data", "addresses", "lengths", "offsets", "share", NULL};
    Py_buffer addrs, lens, offs = {0};
    PyObject *data_obj, *offs_obj = Py_None, *out = NULL;
    int share = 0;
    BatchObject *batch = NULL;
    (void)module;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "Oy*y*|Op:records", kwlist, &data_obj, &addrs, &lens, &offs_obj,
                                     &share))
        return NULL;
    int have_offs = offs_obj != Py_None;
    batch = PyObject_New(BatchObject, &BatchType);
    if (batch == NULL)
        goto done;
    batch->members = NULL;
    batch->n = batch->pointing = 0;
    if (PyObject_GetBuffer(data_obj, &batch->view, PyBUF_SIMPLE) < 0) {
        batch->view.obj = NULL;
        goto done;
    }
    if (have_offs && PyObject_GetBuffer(offs_obj, &offs, PyBUF_SIMPLE) < 0)
        goto done;
    Py_ssize_t n = addrs.len / 8;
    if (addrs.len % 8 || lens.len != 4 * n || (have_offs && offs.len != 8 * n)) {
        PyErr_SetString(PyExc_ValueError, "records: addresses, lengths and offsets disagree on the count");
        goto done;
    }
    if (share && n > 0) {
        if (n > (Py_ssize_t)UINT32_MAX) {
            PyErr_SetString(PyExc_ValueError, "records: too many records for one shared batch");
            goto done;
        }
        batch->members = PyMem_Calloc((size_t)n, sizeof(RecordObject *));  /* NULL: not made (yet) */
        if (batch->members == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        batch->n = n;
    }
    const char *base = batch->view.buf;
    uint64_t data_len = (uint64_t)batch->view.len;
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
        if (off > data_len || len > data_len - off) {
            PyErr_SetString(PyExc_ValueError, "records: a record lies beyond the data");
            Py_CLEAR(out);
            goto done;
        }
        RecordObject *r;
        if (batch->members) {
            r = PyObject_New(RecordObject, &RecordType);
            if (r != NULL) {
                r->raw = NULL;
                r->batch = batch;
                r->text = base + off;
                r->len = len;
                r->slot = (uint32_t)i;
                r->address = address;
                batch->members[i] = r;
                batch->pointing++;
                Py_INCREF(batch);
            }
        } else {
            PyObject *raw = PyBytes_FromStringAndSize(base + off, len);
            r = raw ? record_make(address, raw) : NULL;
        }
        if (r == NULL) {
            Py_CLEAR(out);  /* frees the Records made so far, which let go of the batch */
            goto done;
        }
        PyList_SET_ITEM(out, i, (PyObject *)r);
    }
done:
    Py_XDECREF(batch);
    PyBuffer_Release(&addrs);
    PyBuffer_Release(&lens);
    if (have_offs && offs.obj)
        PyBuffer_Release(&offs);
    return out;
}

static PyMethodDef module_methods[] = {
    {"records", (PyCFunction)(void (*)(void))make_records, METH_VARARGS | METH_KEYWORDS,
     "records(data, addresses, lengths, offsets=None, share=False) -> list of Records, one call per batch."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef records_module = {
    PyModuleDef_HEAD_INIT, "shoal._native._records",
    "shoal's Record type, its batch constructor and the wire form of records with addresses.", -1,
    module_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__records(void) {
    if (PyType_Ready(&BatchType) < 0 || PyType_Ready(&RecordType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&records_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddFunctions(m, shoal_wire_methods) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&RecordType);
    if (PyModule_AddObject(m, "Record", (PyObject *)&RecordType) < 0) {
        Py_DECREF(&RecordType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
