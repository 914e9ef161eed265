/* The one place in weft that knows CPython's private thread-state layout.
 *
 * A coroutine's interpreter state is a `weft_pystate` blob: what must leave the
 * thread state when the coroutine is switched away from, and come back when it
 * resumes. Every field appears in the struct, save, restore, traverse and clear,
 * in that order. Version differences are named once, in the WEFT_PY3xx macros.
 *
 * Compiled by build.rs against the headers of the interpreter weft is built for.
 */
#define Py_BUILD_CORE 1
#include <Python.h>
#include <frameobject.h>
#include <internal/pycore_frame.h>
#include <stddef.h>
#include <string.h>

#if PY_VERSION_HEX < 0x030B0000 || PY_VERSION_HEX >= 0x030E0000
#  error "weft supports CPython 3.11 to 3.13 in this build; see docs/architecture.md"
#endif
#define WEFT_PY312 (PY_VERSION_HEX >= 0x030C0000)
#define WEFT_PY313 (PY_VERSION_HEX >= 0x030D0000)
/* 3.11 and 3.12 thread a _PyCFrame through the C stack; 3.13 removed it. */
#define WEFT_CFRAME (!WEFT_PY313)

typedef struct {
    PyObject *context;                       /* strong */
#if WEFT_CFRAME
    _PyCFrame *cframe;                       /* points into the coroutine's C stack */
#endif
#if !WEFT_PY312
    int use_tracing;                         /* 3.11: lives in the cframe */
#endif
    struct _PyInterpreterFrame *current_frame;
    int py_recursion_depth;
#if WEFT_PY312
    int c_recursion_remaining;
#endif
    _PyStackChunk *datastack_chunk;
    PyObject **datastack_top;
    PyObject **datastack_limit;
    _PyErr_StackItem *exc_info;
    _PyErr_StackItem exc_state;              /* exc_value strong */
#if WEFT_PY313
    PyObject *delete_later;
#else
    int trash_delete_nesting;
#endif
    /* 3.12+: complete frames relinked past the C-stack entry frames so that
       gr_frame.f_back can be walked while suspended; see weft_pystate_top_frame. */
    struct _PyInterpreterFrame *exposed_top;
} weft_pystate;

/* Rust reserves this many bytes per blob; the assert keeps both sides honest. */
#define WEFT_PYSTATE_BYTES 256
_Static_assert(sizeof(weft_pystate) <= WEFT_PYSTATE_BYTES, "weft_pystate grew: raise PYSTATE_BYTES in lib.rs");
_Static_assert(_Alignof(weft_pystate) <= 8, "weft_pystate alignment");

size_t weft_pystate_bytes(void) { return WEFT_PYSTATE_BYTES; }
unsigned long weft_pystate_built_for(void) { return PY_VERSION_HEX; }

static int recursion_depth(PyThreadState *ts)
{
#if WEFT_PY312
    return ts->py_recursion_limit - ts->py_recursion_remaining;
#else
    return ts->recursion_limit - ts->recursion_remaining;
#endif
}

static void unexpose_frames(weft_pystate *s);

/* Moves the running coroutine's state out of the thread state into `s`. */
void weft_pystate_save(PyThreadState *ts, weft_pystate *s)
{
    s->context = ts->context;                /* moved: ts->context is refilled on restore */
    ts->context = NULL;
#if WEFT_CFRAME
    s->cframe = ts->cframe;
#endif
#if !WEFT_PY312
    s->use_tracing = ts->cframe->use_tracing;
#endif
#if WEFT_PY313
    s->current_frame = ts->current_frame;
#else
    s->current_frame = ts->cframe->current_frame;
#endif
    s->py_recursion_depth = recursion_depth(ts);
#if WEFT_PY312
    s->c_recursion_remaining = ts->c_recursion_remaining;
#endif
    s->datastack_chunk = ts->datastack_chunk;
    s->datastack_top = ts->datastack_top;
    s->datastack_limit = ts->datastack_limit;
    s->exc_info = ts->exc_info;
    s->exc_state = ts->exc_state;            /* moved */
    ts->exc_state.exc_value = NULL;
    ts->exc_state.previous_item = NULL;
#if WEFT_PY313
    s->delete_later = ts->delete_later;
#elif WEFT_PY312
    s->trash_delete_nesting = ts->trash.delete_nesting;
#else
    s->trash_delete_nesting = ts->trash_delete_nesting;
#endif
    s->exposed_top = NULL;
}

/* Moves `s` back into the thread state; `s` owns nothing afterwards. */
void weft_pystate_restore(PyThreadState *ts, weft_pystate *s)
{
    unexpose_frames(s);
    Py_XSETREF(ts->context, s->context);
    s->context = NULL;
    ts->context_ver++;                       /* invalidates the contextvars cache */
#if WEFT_CFRAME
    ts->cframe = s->cframe;
#endif
#if !WEFT_PY312
    ts->cframe->use_tracing = (uint8_t)s->use_tracing;
#endif
#if WEFT_PY313
    ts->current_frame = s->current_frame;
#else
    ts->cframe->current_frame = s->current_frame;
#endif
#if WEFT_PY312
    ts->py_recursion_remaining = ts->py_recursion_limit - s->py_recursion_depth;
    ts->c_recursion_remaining = s->c_recursion_remaining;
#else
    ts->recursion_remaining = ts->recursion_limit - s->py_recursion_depth;
#endif
    ts->datastack_chunk = s->datastack_chunk;
    ts->datastack_top = s->datastack_top;
    ts->datastack_limit = s->datastack_limit;
    Py_XSETREF(ts->exc_state.exc_value, s->exc_state.exc_value);
    ts->exc_state.previous_item = s->exc_state.previous_item;
    ts->exc_info = s->exc_info ? s->exc_info : &ts->exc_state;
    s->exc_state.exc_value = NULL;
    s->exc_state.previous_item = NULL;
#if WEFT_PY313
    ts->delete_later = s->delete_later;
#elif WEFT_PY312
    ts->trash.delete_nesting = s->trash_delete_nesting;
#else
    ts->trash_delete_nesting = s->trash_delete_nesting;
#endif
}

int weft_pystate_traverse(weft_pystate *s, visitproc visit, void *arg)
{
    Py_VISIT(s->context);
    Py_VISIT(s->exc_state.exc_value);
    return 0;
}

void weft_pystate_clear(weft_pystate *s)
{
    Py_CLEAR(s->context);
    Py_CLEAR(s->exc_state.exc_value);
}

PyObject *weft_pystate_context(weft_pystate *s) { return s->context; }
void weft_pystate_set_context(weft_pystate *s, PyObject *ctx)
{
    Py_XINCREF(ctx);
    Py_XSETREF(s->context, ctx);
}
PyObject *weft_thread_context(PyThreadState *ts) { return ts->context; }
void weft_thread_set_context(PyThreadState *ts, PyObject *ctx)
{
    Py_XINCREF(ctx);
    Py_XSETREF(ts->context, ctx);
    ts->context_ver++;
}
int weft_pystate_is_suspended_in_frames(weft_pystate *s) { return s->current_frame != NULL; }

/* ---- Python data stack for new coroutines ------------------------------
 * CPython gives a thread state with no data-stack chunk a fresh one from the
 * arena allocator (an mmap) on the first call, and frees it when the coroutine
 * ends: that is most of the cost of starting a greenlet. weft hands each new
 * coroutine a root chunk from a small pool instead. A root chunk is never popped
 * by CPython: frames start at data[1], as push_chunk does for its own root. */

#define WEFT_CHUNK_POOL_MAX 256
static _PyStackChunk *chunk_pool[WEFT_CHUNK_POOL_MAX];   /* guarded by the GIL */
static int chunk_pool_len;
static size_t root_chunk_bytes = 16 * 1024;

void weft_set_root_chunk_bytes(size_t n) { root_chunk_bytes = n < 1024 ? 1024 : n; }

static _PyStackChunk *take_chunk(void)
{
    while (chunk_pool_len > 0) {
        _PyStackChunk *c = chunk_pool[--chunk_pool_len];
        if (c->size == root_chunk_bytes) return c;
        PyMem_RawFree(c);
    }
    _PyStackChunk *c = PyMem_RawMalloc(root_chunk_bytes);
    if (c) c->size = root_chunk_bytes;
    return c;
}

static void give_chunk(_PyStackChunk *c)
{
    if (chunk_pool_len < WEFT_CHUNK_POOL_MAX) chunk_pool[chunk_pool_len++] = c;
    else PyMem_RawFree(c);
}

/* Runs `body(arg)` as a new coroutine: fresh frame chain, exception state, data
 * stack and trashcan; the context is `s`'s (empty unless gr_context was set).
 * The recursion depth carries on from the thread's, as the C stack does.
 * `body` never returns: it ends by switching to another coroutine. */
int weft_pystate_run_new(PyThreadState *ts, weft_pystate *s, void (*body)(void *), void *arg)
{
    _PyStackChunk *chunk = take_chunk();
    if (!chunk) return -1;
    chunk->previous = NULL;
    chunk->top = 0;
#if WEFT_CFRAME
    _PyCFrame cframe = *ts->cframe;          /* keeps use_tracing (3.11) */
    cframe.current_frame = NULL;
    cframe.previous = &ts->root_cframe;
    ts->cframe = &cframe;
#else
    ts->current_frame = NULL;
#endif
    ts->context = s->context;                /* ts->context was moved out by save */
    s->context = NULL;
    ts->context_ver++;
    ts->exc_state.exc_value = NULL;
    ts->exc_state.previous_item = NULL;
    ts->exc_info = &ts->exc_state;
    ts->datastack_chunk = chunk;
    ts->datastack_top = &chunk->data[1];
    ts->datastack_limit = (PyObject **)((char *)chunk + chunk->size);
#if WEFT_PY313
    ts->delete_later = NULL;
#elif WEFT_PY312
    ts->trash.delete_nesting = 0;
#else
    ts->trash_delete_nesting = 0;
#endif
    body(arg);
    Py_FatalError("weft: a coroutine body returned instead of switching away");
    return -1;
}

/* Called by a coroutine whose body has finished, just before it switches away
 * for the last time: gives back its data stack and drops what it still owns. */
void weft_pystate_finish(PyThreadState *ts)
{
    _PyStackChunk *c = ts->datastack_chunk;
    /* Every frame has been popped, so the chain is just our root chunk. */
    if (c && c->previous == NULL) give_chunk(c);
    ts->datastack_chunk = NULL;
    ts->datastack_top = NULL;
    ts->datastack_limit = NULL;
    Py_CLEAR(ts->context);
    Py_CLEAR(ts->exc_state.exc_value);
}

/* ---- Frames of a suspended coroutine ----------------------------------- */

typedef void (*weft_reader)(void *ctx, void *dst, const void *src, size_t n);

/* A frame object for `iframe`, which runs in this thread but is not current:
 * borrow the thread state's current-frame slot for the one public call that
 * makes frame objects. GC is off so nothing can run meanwhile. */
static PyFrameObject *frame_object_of(PyThreadState *ts, struct _PyInterpreterFrame *iframe)
{
    int gc_was_enabled = PyGC_Disable();
#if WEFT_PY313
    struct _PyInterpreterFrame *saved = ts->current_frame;
    ts->current_frame = iframe;
#else
    struct _PyInterpreterFrame *saved = ts->cframe->current_frame;
    ts->cframe->current_frame = iframe;
#endif
    PyFrameObject *f = PyThreadState_GetFrame(ts);
#if WEFT_PY313
    ts->current_frame = saved;
#else
    ts->cframe->current_frame = saved;
#endif
    if (gc_was_enabled) PyGC_Enable();
    return f;
}

#if WEFT_PY312
/* While suspended, the entry frames that 3.12+ keeps on the C stack are
 * overwritten by other coroutines, so a walk of `previous` would read garbage.
 * Exposing relinks each complete frame straight to the next complete one and
 * keeps the original link in its frame object's unused inline storage (unused
 * while the thread owns the frame); resuming undoes it. */
static void stash_previous(struct _PyInterpreterFrame *f)
{
    memcpy(&f->frame_obj->_f_frame_data[0], &f->previous, sizeof(void *));
}

static void unexpose_frames(weft_pystate *s)
{
    struct _PyInterpreterFrame *f = s->exposed_top;
    while (f) {
        struct _PyInterpreterFrame *next = f->previous;
        memcpy(&f->previous, &f->frame_obj->_f_frame_data[0], sizeof(void *));
        f = next;
    }
    s->exposed_top = NULL;
}

static int expose_frames(PyThreadState *ts, weft_pystate *s, weft_reader rd, void *rctx)
{
    struct _PyInterpreterFrame *last = NULL, *top = NULL;
    struct _PyInterpreterFrame *f = s->current_frame;
    while (f) {
        struct _PyInterpreterFrame copy;
        rd(rctx, &copy, f, sizeof copy);
        struct _PyInterpreterFrame *next = copy.previous;
        if (!_PyFrame_IsIncomplete(&copy)) {
            /* Complete frames live in the data stack, not on the C stack. */
            if (!f->frame_obj) {
                PyFrameObject *fo = frame_object_of(ts, f);
                if (!fo) { if (last) { stash_previous(last); last->previous = NULL; s->exposed_top = top; } return -1; }
                Py_DECREF(fo);               /* the frame keeps its own reference */
            }
            if (last) {
                stash_previous(last);
                last->previous = f;
            } else {
                top = f;
            }
            last = f;
        }
        f = next;
    }
    if (last) {
        stash_previous(last);
        last->previous = NULL;
    }
    s->exposed_top = top;
    return 0;
}
#else
/* 3.11 keeps every interpreter frame in the data stack: links stay valid. */
static void unexpose_frames(weft_pystate *s) { s->exposed_top = NULL; }
static int expose_frames(PyThreadState *ts, weft_pystate *s, weft_reader rd, void *rctx)
{
    (void)ts; (void)rd; (void)rctx;
    s->exposed_top = s->current_frame;
    return 0;
}
#endif

/* gr_frame of a suspended coroutine: a new reference, or NULL with no error
 * when it has no Python frame. `rd` reads memory as the coroutine sees it. */
PyObject *weft_pystate_top_frame(PyThreadState *ts, weft_pystate *s, weft_reader rd, void *rctx)
{
    if (!s->current_frame) return NULL;
    if (!s->exposed_top && expose_frames(ts, s, rd, rctx) < 0) return NULL;
    if (!s->exposed_top) return NULL;
#if WEFT_PY312
    return Py_NewRef((PyObject *)s->exposed_top->frame_obj);
#else
    return (PyObject *)frame_object_of(ts, s->exposed_top);
#endif
}
