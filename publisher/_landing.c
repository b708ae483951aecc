/* The landing zone's two per-event loops in C: receive into the ring, and
 * gather the ring into a spool record.
 *
 * publisher/intake/landing.py has the same two functions in Python (ctypes); this
 * module is an optional accelerator and the tests run both. The ring layout
 * is documented there: from offset 0, records of an 8-byte little-endian word
 * (the event's length with the top bit set) and the event, each record
 * starting at a multiple of 8.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <mqueue.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define FULL_BIT ((uint64_t)1 << 63)
#define ALIGN8(n) (((n) + 7) & ~(Py_ssize_t)7)

static void put_word(char *at, uint64_t word)
{
    int i;
    for (i = 0; i < 8; i++) {
        at[i] = (char)(word >> (8 * i));
    }
}

static uint64_t get_word(const char *at)
{
    uint64_t word = 0;
    int i;
    for (i = 7; i >= 0; i--) {
        word = (word << 8) | (unsigned char)at[i];
    }
    return word;
}

static double monotonic_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

/* receive_into(mqd, ring, offset, msgsize, limit, wake_fd, timeout, linger, until)
 *     -> (offset, count, woken)
 *
 * Takes waiting messages into the ring from `offset` on, as long as a whole
 * message (`msgsize`) still fits, and waits (poll) for more, until one of:
 * `limit` messages taken, the ring full, the ring filled to `until` bytes,
 * `timeout` seconds passed, `linger` seconds passed since the first message if
 * the ring was empty on entry, `wake_fd` readable (`woken`: a signal arrived),
 * or a signal interrupted the wait. With `timeout` 0 it never waits. The GIL
 * is released throughout: the sender thread works meanwhile.
 */
static PyObject *landing_receive_into(PyObject *self, PyObject *args)
{
    int mqd, wake_fd;
    Py_buffer ring;
    Py_ssize_t offset, msgsize, limit, until, count = 0;
    double timeout, linger, deadline;
    int failed = 0, stop = 0, woken = 0, was_empty;
    struct timespec past = {0, 0};

    if (!PyArg_ParseTuple(args, "iw*nnniddn", &mqd, &ring, &offset, &msgsize, &limit, &wake_fd,
                          &timeout, &linger, &until)) {
        return NULL;
    }
    /* Every bound below is checked by subtraction of values known to be in
     * range, never by an addition that could overflow. */
    if (offset < 0 || offset % 8 || offset > ring.len || msgsize <= 0 || ring.len < 8
        || msgsize > ring.len - 8 || limit < 0 || !(timeout >= 0.0) || !(linger >= 0.0)) {
        PyBuffer_Release(&ring);
        PyErr_SetString(PyExc_ValueError, "bad offset, msgsize, limit, timeout or linger");
        return NULL;
    }
    was_empty = offset == 0;
    Py_BEGIN_ALLOW_THREADS
    deadline = monotonic_seconds() + timeout;
    for (;;) {
        double left;
        struct pollfd fds[2];
        int ready;

        while (count < limit && offset < until && offset <= ring.len - 8 - msgsize) {
            char *slot = (char *)ring.buf + offset;
            ssize_t got = mq_timedreceive(mqd, slot + 8, (size_t)msgsize, NULL, &past);
            if (got < 0) {
                if (errno == EINTR) {
                    stop = 1;
                } else if (errno != EAGAIN && errno != ETIMEDOUT) {
                    failed = errno;
                }
                break;
            }
            put_word(slot, (uint64_t)got | FULL_BIT);
            offset = ALIGN8(offset + 8 + got);
            if (count++ == 0 && was_empty && monotonic_seconds() + linger < deadline) {
                deadline = monotonic_seconds() + linger;
            }
        }
        if (failed || stop || count >= limit || offset >= until
            || offset > ring.len - 8 - msgsize) {
            break;
        }
        left = deadline - monotonic_seconds();
        if (left <= 0) {
            break;
        }
        fds[0].fd = mqd;
        fds[0].events = POLLIN;
        fds[1].fd = wake_fd;
        fds[1].events = POLLIN;
        ready = poll(fds, wake_fd >= 0 ? 2 : 1, left > 3600.0 ? 3600000 : (int)(left * 1000.0) + 1);
        if (ready < 0) {
            if (errno != EINTR) {
                failed = errno;
            }
            break;
        }
        if (wake_fd >= 0 && fds[1].revents) {
            woken = 1;
            break;
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&ring);
    if (failed && count == 0) {
        errno = failed;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    /* Messages taken before an error are reported; the error recurs on the next call. */
    return Py_BuildValue("nni", offset, count, woken);
}

/* gather(ring, end) -> (joined, lengths, stop)
 *
 * The events of the records in ring[:end], joined with commas, and their
 * lengths as native unsigned 32-bit integers: a spool record's two parts,
 * byte for byte what publisher/spool/framing.py's join_events() makes of the same
 * events (the record tests pin the two together).
 * `stop` is the offset where gathering stopped: `end`, or the first word that
 * is not a record's (the ring was damaged: another process wrote to the file).
 *
 * The ring is shared memory that another process may write at any moment, so
 * each length word is read exactly once, into `lens`, and the copy uses those
 * checked values only: a word changed between the two passes cannot make
 * memcpy read past the ring.
 */
static PyObject *landing_gather(PyObject *self, PyObject *args)
{
    Py_buffer ring;
    Py_ssize_t end, offset = 0, total = 0, count = 0, index;
    PyObject *joined = NULL, *lengths = NULL, *result = NULL;
    const char *base;
    char *out;
    uint32_t *lens = NULL;

    if (!PyArg_ParseTuple(args, "y*n", &ring, &end)) {
        return NULL;
    }
    if (end < 0 || end > ring.len) {
        PyErr_SetString(PyExc_ValueError, "end is outside the ring");
        PyBuffer_Release(&ring);
        return NULL;
    }
    base = (const char *)ring.buf;
    /* At most one record per 8 bytes. */
    lens = PyMem_Malloc((size_t)(end / 8 + 1) * sizeof(uint32_t));
    if (lens == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    while (end - offset >= 8) {
        uint64_t word = get_word(base + offset);
        uint64_t length = word & ~FULL_BIT;
        if (!(word & FULL_BIT) || length > (uint64_t)(end - offset - 8) || length > UINT32_MAX) {
            break;
        }
        lens[count++] = (uint32_t)length;
        total += (Py_ssize_t)length + 1;
        offset = ALIGN8(offset + 8 + (Py_ssize_t)length);
    }
    if (offset > end) {
        offset = end;  /* the last record's padding ran past `end` */
    }
    lengths = PyBytes_FromStringAndSize((const char *)lens, count * (Py_ssize_t)sizeof(uint32_t));
    joined = PyBytes_FromStringAndSize(NULL, count ? total - 1 : 0);
    if (lengths == NULL || joined == NULL) {
        goto done;
    }
    out = PyBytes_AS_STRING(joined);
    {
        Py_ssize_t at = 0;
        for (index = 0; index < count; index++) {
            if (index) {
                *out++ = ',';
            }
            memcpy(out, base + at + 8, lens[index]);
            out += lens[index];
            at = ALIGN8(at + 8 + (Py_ssize_t)lens[index]);
        }
    }
    result = Py_BuildValue("OOn", joined, lengths, offset);
done:
    PyMem_Free(lens);
    Py_XDECREF(joined);
    Py_XDECREF(lengths);
    PyBuffer_Release(&ring);
    return result;
}

static PyMethodDef landing_methods[] = {
    {"receive_into", landing_receive_into, METH_VARARGS,
     "receive_into(mqd, ring, offset, msgsize, limit, wake_fd, timeout, linger, until)"
     " -> (offset, count, woken)"},
    {"gather", landing_gather, METH_VARARGS, "gather(ring, end) -> (joined, lengths, stop)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef landing_module = {
    PyModuleDef_HEAD_INIT, "_landing",
    "C loops of the landing zone (see publisher/intake/landing.py).", -1, landing_methods,
};

PyMODINIT_FUNC PyInit__landing(void)
{
    return PyModule_Create(&landing_module);
}
