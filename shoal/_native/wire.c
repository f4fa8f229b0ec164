/* wire.c -- the HTTP API's wire form of records with their addresses, in the
 * shoal._native._records module beside the Record type (records.c adds
 * these functions to it): one line per record,
 *
 *     {"address":<decimal>,"record":<text>}\n
 *
 * made for a whole batch in one call (address_lines: the server streams
 * query answers with with_address=true) and taken apart in one call
 * (split_address_lines: shoal.Client reads them back into Records that
 * share the response's bytes).
 *
 * Must stay true: the record's text is the stored JSON exactly, except that
 * its line breaks become spaces (JSON treats them alike), so each record is
 * one line; split_address_lines takes every line address_lines makes (an
 * address of at most 20 digits that fits 64 bits, then the text up to the
 * line's closing '}'), so a round trip gives back the addresses and texts.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "wire.h"

static const char LINE_HEAD[] = "{\"address\":";
static const char LINE_MID[] = ",\"record\":";
#define LINE_HEAD_LEN (sizeof LINE_HEAD - 1)
#define LINE_MID_LEN (sizeof LINE_MID - 1)

static int decimal_digits(uint64_t v) {
    int n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

/* Entry i of native arrays of addresses (uint64), offsets (uint64) and
 * lengths (uint32). */
static inline void entry_at(const Py_buffer *addrs, const Py_buffer *offs, const Py_buffer *lens, Py_ssize_t i,
                            uint64_t *address, uint64_t *off, uint32_t *len) {
    memcpy(address, (const char *)addrs->buf + 8 * i, 8);
    memcpy(off, (const char *)offs->buf + 8 * i, 8);
    memcpy(len, (const char *)lens->buf + 4 * i, 4);
}

/* address_lines(data, addresses, offsets, lengths) -> bytes: record i
 * (data[offsets[i]:offsets[i] + lengths[i]], stored at addresses[i]) as one
 * line of the wire form above, for the whole batch in one call. */
static PyObject *address_lines(PyObject *module, PyObject *args) {
    Py_buffer data, addrs, offs, lens;
    PyObject *out = NULL;
    (void)module;
    if (!PyArg_ParseTuple(args, "y*y*y*y*:address_lines", &data, &addrs, &offs, &lens))
        return NULL;
    Py_ssize_t n = addrs.len / 8;
    const char *base = data.buf;
    uint64_t data_len = (uint64_t)data.len, total = 0;
    if (addrs.len % 8 || offs.len != 8 * n || lens.len != 4 * n) {
        PyErr_SetString(PyExc_ValueError, "address_lines: addresses, offsets and lengths disagree on the count");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t address, off;
        uint32_t len;
        entry_at(&addrs, &offs, &lens, i, &address, &off, &len);
        if (off > data_len || len > data_len - off) {
            PyErr_SetString(PyExc_ValueError, "address_lines: a record lies beyond the data");
            goto done;
        }
        total += LINE_HEAD_LEN + (uint64_t)decimal_digits(address) + LINE_MID_LEN + len + 2;
    }
    if (total > (uint64_t)PY_SSIZE_T_MAX) {
        PyErr_NoMemory();
        goto done;
    }
    out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total);
    if (out == NULL)
        goto done;
    char *w = PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t address, off;
        uint32_t len;
        entry_at(&addrs, &offs, &lens, i, &address, &off, &len);
        memcpy(w, LINE_HEAD, LINE_HEAD_LEN);
        w += LINE_HEAD_LEN;
        int nd = decimal_digits(address);
        for (int k = nd - 1; k >= 0; k--) {
            w[k] = (char)('0' + address % 10);
            address /= 10;
        }
        w += nd;
        memcpy(w, LINE_MID, LINE_MID_LEN);
        w += LINE_MID_LEN;
        const char *text = base + off;
        memcpy(w, text, len);
        /* line breaks are rare (pretty-printed array elements): find them with memchr */
        for (const char *q = memchr(text, '\n', len); q; q = memchr(q + 1, '\n', len - (size_t)(q + 1 - text)))
            w[q - text] = ' ';
        for (const char *q = memchr(text, '\r', len); q; q = memchr(q + 1, '\r', len - (size_t)(q + 1 - text)))
            w[q - text] = ' ';
        w += len;
        *w++ = '}';
        *w++ = '\n';
    }
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&addrs);
    PyBuffer_Release(&offs);
    PyBuffer_Release(&lens);
    return out;
}

/* split_address_lines(data) -> (addresses, offsets, lengths, used, bad):
 * the complete lines of the wire form above at the start of data (bytes), as
 * native uint64 addresses, uint64 offsets and uint32 lengths of the records'
 * text (for records(..., share=True)); used is where the first line not
 * taken starts (an incomplete last line, or a bad one); bad is the offset of
 * a line that is not of the form, or -1. */
static PyObject *split_address_lines(PyObject *module, PyObject *arg) {
    (void)module;
    if (!PyBytes_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "split_address_lines takes bytes, not %.100s", Py_TYPE(arg)->tp_name);
        return NULL;
    }
    const char *base = PyBytes_AS_STRING(arg);
    Py_ssize_t size = PyBytes_GET_SIZE(arg), n = 0;
    for (const char *q = memchr(base, '\n', (size_t)size); q; q = memchr(q + 1, '\n', (size_t)(base + size - q - 1)))
        n++;
    PyObject *a = PyBytes_FromStringAndSize(NULL, 8 * n), *o = PyBytes_FromStringAndSize(NULL, 8 * n);
    PyObject *l = PyBytes_FromStringAndSize(NULL, 4 * n);
    if (a == NULL || o == NULL || l == NULL) {
        Py_XDECREF(a);
        Py_XDECREF(o);
        Py_XDECREF(l);
        return NULL;
    }
    char *wa = PyBytes_AS_STRING(a), *wo = PyBytes_AS_STRING(o), *wl = PyBytes_AS_STRING(l);
    Py_ssize_t pos = 0, k = 0, bad = -1;
    while (k < n) {
        const char *line = base + pos;
        const char *nl = memchr(line, '\n', (size_t)(size - pos));
        size_t len = (size_t)(nl - line);
        /* {"address":<digits>,"record":<text>} */
        size_t i = LINE_HEAD_LEN;
        uint64_t address = 0;
        int ok = len > LINE_HEAD_LEN + LINE_MID_LEN + 1 && memcmp(line, LINE_HEAD, LINE_HEAD_LEN) == 0;
        while (ok && i < len && line[i] >= '0' && line[i] <= '9' && i - LINE_HEAD_LEN < 20) {
            uint64_t d = (uint64_t)(line[i] - '0');
            if (address > (UINT64_MAX - d) / 10) {
                ok = 0;
                break;
            }
            address = address * 10 + d;
            i++;
        }
        ok = ok && i > LINE_HEAD_LEN && len >= i + LINE_MID_LEN + 1 && memcmp(line + i, LINE_MID, LINE_MID_LEN) == 0
             && line[len - 1] == '}';
        uint64_t text_len = ok ? len - 1 - (i + LINE_MID_LEN) : 0;
        if (!ok || text_len > UINT32_MAX) {
            bad = pos;
            break;
        }
        uint64_t off = (uint64_t)pos + i + LINE_MID_LEN;
        uint32_t len32 = (uint32_t)text_len;
        memcpy(wa + 8 * k, &address, 8);
        memcpy(wo + 8 * k, &off, 8);
        memcpy(wl + 4 * k, &len32, 4);
        k++;
        pos += (Py_ssize_t)len + 1;
    }
    if (k < n) {
        if (_PyBytes_Resize(&a, 8 * k) < 0 || _PyBytes_Resize(&o, 8 * k) < 0 || _PyBytes_Resize(&l, 4 * k) < 0) {
            Py_XDECREF(a);
            Py_XDECREF(o);
            Py_XDECREF(l);
            return NULL;
        }
    }
    return Py_BuildValue("(NNNnn)", a, o, l, pos, bad);
}

PyMethodDef shoal_wire_methods[] = {
    {"address_lines", address_lines, METH_VARARGS,
     "address_lines(data, addresses, offsets, lengths) -> bytes: lines {\"address\":a,\"record\":text}."},
    {"split_address_lines", split_address_lines, METH_O,
     "split_address_lines(data) -> (addresses, offsets, lengths, used, bad): the complete lines of data."},
    {NULL, NULL, 0, NULL},
};
