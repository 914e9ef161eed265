/* A C extension written the way extensions built against greenlet.h are:
 * it imports the `greenlet._C_API` capsule, calls its 12 entries, and
 * subclasses the greenlet type at the C level with a struct that starts
 * with greenlet.h's PyGreenlet. The ABI is declared here (not greenlet.h
 * itself): the struct layout and the capsule's slot order are the contract
 * tests/greenlet/test_greenlet_capi.py checks weft against.
 *
 * Every entry is exposed as a module function; the module attribute `NULL`
 * stands for a NULL pointer argument.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>

typedef struct {
    PyObject_HEAD
    PyObject *weakreflist;
    PyObject *dict;
    void *pimpl;
} PyGreenlet;

static void **api;
static PyObject *null_sentinel;

#define API_TYPE ((PyTypeObject *)api[0])
#define API_ERROR ((PyObject *)api[1])
#define API_EXIT ((PyObject *)api[2])
#define API_NEW (*(PyGreenlet * (*)(PyObject *, PyGreenlet *)) api[3])
#define API_GETCURRENT (*(PyGreenlet * (*)(void)) api[4])
#define API_THROW (*(PyObject * (*)(PyGreenlet *, PyObject *, PyObject *, PyObject *)) api[5])
#define API_SWITCH (*(PyObject * (*)(PyGreenlet *, PyObject *, PyObject *)) api[6])
#define API_SETPARENT (*(int (*)(PyGreenlet *, PyGreenlet *)) api[7])
#define API_MAIN (*(int (*)(PyGreenlet *)) api[8])
#define API_STARTED (*(int (*)(PyGreenlet *)) api[9])
#define API_ACTIVE (*(int (*)(PyGreenlet *)) api[10])
#define API_GET_PARENT (*(PyGreenlet * (*)(PyGreenlet *)) api[11])

static PyObject *arg(PyObject *o) { return o == null_sentinel ? NULL : o; }

/* An int result of -1 with an exception set stays an error; other values
 * come back as ints. */
static PyObject *int_result(int r) {
    if (r == -1 && PyErr_Occurred())
        return NULL;
    return PyLong_FromLong(r);
}

/* A pointer result: NULL with no exception set is reported as None. */
static PyObject *obj_result(PyObject *r) {
    if (r == NULL && !PyErr_Occurred())
        Py_RETURN_NONE;
    return r;
}

static PyObject *c_new(PyObject *m, PyObject *args) {
    PyObject *run, *parent;
    if (!PyArg_ParseTuple(args, "OO", &run, &parent)) return NULL;
    return obj_result((PyObject *)API_NEW(arg(run), (PyGreenlet *)arg(parent)));
}
static PyObject *c_getcurrent(PyObject *m, PyObject *noargs) {
    return obj_result((PyObject *)API_GETCURRENT());
}
static PyObject *c_throw(PyObject *m, PyObject *args) {
    PyObject *g, *t, *v, *tb;
    if (!PyArg_ParseTuple(args, "OOOO", &g, &t, &v, &tb)) return NULL;
    return obj_result(API_THROW((PyGreenlet *)arg(g), arg(t), arg(v), arg(tb)));
}
static PyObject *c_switch(PyObject *m, PyObject *args) {
    PyObject *g, *a, *k;
    if (!PyArg_ParseTuple(args, "OOO", &g, &a, &k)) return NULL;
    return obj_result(API_SWITCH((PyGreenlet *)arg(g), arg(a), arg(k)));
}
static PyObject *c_setparent(PyObject *m, PyObject *args) {
    PyObject *g, *p;
    if (!PyArg_ParseTuple(args, "OO", &g, &p)) return NULL;
    return int_result(API_SETPARENT((PyGreenlet *)arg(g), (PyGreenlet *)arg(p)));
}
#define PRED(name, slot)                                           \
    static PyObject *name(PyObject *m, PyObject *g) {              \
        return int_result(slot((PyGreenlet *)arg(g)));             \
    }
PRED(c_main, API_MAIN)
PRED(c_started, API_STARTED)
PRED(c_active, API_ACTIVE)
static PyObject *c_get_parent(PyObject *m, PyObject *g) {
    return obj_result((PyObject *)API_GET_PARENT((PyGreenlet *)arg(g)));
}
static PyObject *c_api_objects(PyObject *m, PyObject *noargs) {
    return Py_BuildValue("(OOO)", (PyObject *)API_TYPE, API_ERROR, API_EXIT);
}
/* What the type says about its layout, as a C subclass sees it. */
static PyObject *c_layout(PyObject *m, PyObject *noargs) {
    return Py_BuildValue("(nnnn)", API_TYPE->tp_basicsize, API_TYPE->tp_weaklistoffset,
                         API_TYPE->tp_dictoffset, (Py_ssize_t)sizeof(PyGreenlet));
}

/* ---- a C subclass with its own fields after PyGreenlet (like Cython's) ---- */
typedef struct {
    PyGreenlet base;
    PyObject *payload; /* an owned reference, visited and cleared */
    long marker;
} SubObject;

static PyObject *sub_new(PyTypeObject *t, PyObject *a, PyObject *k) {
    SubObject *o = (SubObject *)API_TYPE->tp_new(t, a, k);
    if (o) {
        o->payload = PyList_New(0);
        o->marker = 0x5eed;
    }
    return (PyObject *)o;
}
static int sub_traverse(SubObject *o, visitproc visit, void *arg) {
    Py_VISIT(o->payload);
    return API_TYPE->tp_traverse((PyObject *)o, visit, arg);
}
static int sub_clear(SubObject *o) {
    Py_CLEAR(o->payload);
    return API_TYPE->tp_clear ? API_TYPE->tp_clear((PyObject *)o) : 0;
}
static void sub_dealloc(SubObject *o) {
    PyObject_GC_UnTrack(o);
    Py_CLEAR(o->payload);
    o->marker = 0;
    PyObject_GC_Track(o);
    API_TYPE->tp_dealloc((PyObject *)o);
}
static PyObject *sub_get_marker(SubObject *o, void *c) { return PyLong_FromLong(o->marker); }
static PyObject *sub_get_payload(SubObject *o, void *c) {
    if (!o->payload) Py_RETURN_NONE;
    Py_INCREF(o->payload);
    return o->payload;
}
static PyGetSetDef sub_getset[] = {
    {"marker", (getter)sub_get_marker, NULL, NULL, NULL},
    {"payload", (getter)sub_get_payload, NULL, NULL, NULL},
    {NULL},
};
static PyTypeObject SubType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "weft_capi_test.Sub",
    .tp_basicsize = sizeof(SubObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = sub_new,
    .tp_traverse = (traverseproc)sub_traverse,
    .tp_clear = (inquiry)sub_clear,
    .tp_dealloc = (destructor)sub_dealloc,
    .tp_getset = sub_getset,
};

/* ---- a C subclass whose instances are smaller than PyGreenlet ---------------
 * (as if built against a greenlet.h with a smaller struct): weft must refuse
 * to make instances of it, with an exception. */
static PyTypeObject SmallType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "weft_capi_test.Small",
    .tp_basicsize = sizeof(PyObject) + sizeof(void *),
    .tp_flags = Py_TPFLAGS_DEFAULT, /* GC slots inherited */
};

/* ---- readying a static subtype -----------------------------------------
 * weft's greenlet type is a heap type (greenlet's is static), and CPython's
 * PyType_Ready refuses a static type with a heap-type base: a plain C
 * subclass gets that TypeError at import. Cython (how gevent builds its
 * subclasses) readies its static types with Py_TPFLAGS_HEAPTYPE set for the
 * call, the collector off, which PyType_Ready accepts; ready_like_cython
 * does the same. */
static int ready_like_cython(PyTypeObject *t) {
    int gc_was_enabled = PyGC_Disable();
    t->tp_flags |= Py_TPFLAGS_HEAPTYPE;
    int r = PyType_Ready(t);
    t->tp_flags &= ~Py_TPFLAGS_HEAPTYPE;
    if (gc_was_enabled) PyGC_Enable();
    return r;
}

static PyTypeObject PlainType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "weft_capi_test.Plain",
    .tp_basicsize = sizeof(SubObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
};

static PyObject *c_ready_plain(PyObject *m, PyObject *noargs) {
    PlainType.tp_base = API_TYPE;
    if (PyType_Ready(&PlainType) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"ready_plain", c_ready_plain, METH_NOARGS, NULL},
    {"new", c_new, METH_VARARGS, NULL},
    {"getcurrent", c_getcurrent, METH_NOARGS, NULL},
    {"throw", c_throw, METH_VARARGS, NULL},
    {"switch", c_switch, METH_VARARGS, NULL},
    {"setparent", c_setparent, METH_VARARGS, NULL},
    {"main", c_main, METH_O, NULL},
    {"started", c_started, METH_O, NULL},
    {"active", c_active, METH_O, NULL},
    {"get_parent", c_get_parent, METH_O, NULL},
    {"api_objects", c_api_objects, METH_NOARGS, NULL},
    {"layout", c_layout, METH_NOARGS, NULL},
    {NULL},
};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "weft_capi_test", NULL, -1, methods};

PyMODINIT_FUNC PyInit_weft_capi_test(void) {
    api = (void **)PyCapsule_Import("greenlet._C_API", 0);
    if (!api) return NULL;
    SubType.tp_base = API_TYPE;
    SmallType.tp_base = API_TYPE;
    if (ready_like_cython(&SubType) < 0 || ready_like_cython(&SmallType) < 0) return NULL;
    PyObject *m = PyModule_Create(&moddef);
    if (!m) return NULL;
    null_sentinel = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type);
    if (!null_sentinel || PyModule_AddObject(m, "NULL", null_sentinel) < 0) return NULL;
    Py_INCREF(null_sentinel);
    Py_INCREF(&SubType);
    Py_INCREF(&SmallType);
    if (PyModule_AddObject(m, "Sub", (PyObject *)&SubType) < 0) return NULL;
    if (PyModule_AddObject(m, "Small", (PyObject *)&SmallType) < 0) return NULL;
    return m;
}
