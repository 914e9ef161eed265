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
#if PY_VERSION_HEX >= 0x030E0000
#  include <internal/pycore_interpframe.h>  /* 3.14 moved the frame struct here */
#endif
#if PY_VERSION_HEX >= 0x030F0000
#  include <internal/pycore_tstate.h>       /* 3.15: _PyThreadStateImpl */
#  include <internal/pycore_gc.h>           /* 3.15: _PyGC_VisitFrameStack */
#  include <internal/pycore_stackref.h>     /* 3.15: _Py_VISIT_STACKREF */
#endif
#if PY_VERSION_HEX < 0x030C0000
#  include <internal/pycore_pystate.h>      /* 3.11: _PyThreadState_GET, inline */
#endif
#include <stddef.h>
#include <string.h>

#if PY_VERSION_HEX < 0x030B0000 || PY_VERSION_HEX >= 0x03100000
#  error "weft supports CPython 3.11 to 3.15 in this build; see docs/architecture.md"
#endif
#define WEFT_PY312 (PY_VERSION_HEX >= 0x030C0000)
#define WEFT_PY313 (PY_VERSION_HEX >= 0x030D0000)
/* 3.14: the C recursion check compares stack addresses (which stack copying
 * keeps valid) instead of a counter; a JIT executor pointer joins the state;
 * frames not owned by Python code are OWNED_BY_INTERPRETER or above. */
#define WEFT_PY314 (PY_VERSION_HEX >= 0x030E0000)
/* 3.15: a thread's frame chain ends at a sentinel base frame embedded in the
 * thread state, out-of-process profilers cache the stack below
 * last_profiled_frame, and generators learn "yield or return" from a thread-state
 * field that is set just before a frame suspends. */
#define WEFT_PY315 (PY_VERSION_HEX >= 0x030F0000)
#if WEFT_PY314
#  define WEFT_NOT_PYTHON_FRAME(f) ((f)->owner >= FRAME_OWNED_BY_INTERPRETER)
#elif WEFT_PY312
#  define WEFT_NOT_PYTHON_FRAME(f) ((f)->owner == FRAME_OWNED_BY_CSTACK)
#endif
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
#if WEFT_PY312 && !WEFT_PY314
    int c_recursion_remaining;
#endif
#if WEFT_PY314
    PyObject *current_executor;              /* borrowed, as in the thread state */
#endif
#if WEFT_PY315
    int generator_return_kind;
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
    /* 3.12+: frames relinked past the C-stack entry frames while suspended,
       with their original links; see expose_frames. */
    struct weft_link *links;
    int nlinks, links_cap;
    /* The root chunk run_new gave this coroutine from weft's pool, or NULL:
       a coroutine started without one gets CPython's own root chunk from
       push_chunk if it ever runs Python code, which goes back to CPython's
       arena allocator, not to the pool (see drop_root). */
    _PyStackChunk *own_root;
} weft_pystate;

struct weft_link {
    struct _PyInterpreterFrame *frame;
    struct _PyInterpreterFrame *previous;
};

/* Rust reserves this many bytes per blob; the assert keeps both sides honest. */
#define WEFT_PYSTATE_BYTES 160
_Static_assert(sizeof(weft_pystate) <= WEFT_PYSTATE_BYTES,
               "weft_pystate grew past WEFT_PYSTATE_BYTES: raise WEFT_PYSTATE_BYTES here and BLOB_BYTES "
               "in crates/weft-pystate/src/lib.rs to the same new size (a multiple of 8)");
_Static_assert(_Alignof(weft_pystate) <= 8,
               "weft_pystate needs more than 8-byte alignment: raise align(8) on Blob in "
               "crates/weft-pystate/src/lib.rs to match");

size_t weft_pystate_bytes(void) { return WEFT_PYSTATE_BYTES; }
unsigned long weft_pystate_built_for(void) { return PY_VERSION_HEX; }

/* Py_SET_REFCNT is a static inline whose layout changed in 3.12 (immortal
 * objects): the greenlet dealloc's second kill attempt goes through here. */
void weft_set_refcnt(PyObject *o, Py_ssize_t n) { Py_SET_REFCNT(o, n); }

int weft_is_finalizing(void)
{
#if WEFT_PY313
    return Py_IsFinalizing();
#else
    return _Py_IsFinalizing();
#endif
}

static int recursion_depth(PyThreadState *ts)
{
#if WEFT_PY312
    return ts->py_recursion_limit - ts->py_recursion_remaining;
#else
    return ts->recursion_limit - ts->recursion_remaining;
#endif
}

/* 3.11 keeps the "is anyone tracing" flag in the cframe. Like greenlet, weft
 * carries the switching-away coroutine's flag over to the one that resumes, so
 * a profiler set in one greenlet keeps seeing events after a switch. The value
 * crosses the switch in the target's blob (its use_tracing field, which holds
 * the flag that coroutine is to resume with), because the old cframe's stack
 * may be overwritten: save writes it there, or, from a finished coroutine,
 * weft_pystate_hand_over; restore reads it. No thread-local: that cost a
 * __tls_get_addr call in both save and restore. */

static void expose_frames(weft_pystate *s);
static void unexpose_frames(weft_pystate *s);

#if WEFT_PY315
/* A sampling profiler (`python -m profiling.sampling`) reuses the frames it read
 * below last_profiled_frame until the interpreter pops that frame. A switch
 * replaces the whole chain without popping anything, so the cache is dropped
 * and its sequence bumped, as if every frame had been popped. */
static void forget_profiled_frames(PyThreadState *ts)
{
    ts->last_profiled_frame = NULL;
    ts->last_profiled_frame_seq++;
}
#endif

/* The current thread state (the GIL is held, so there is one). 3.11 keeps it
 * in _PyRuntime: an inline load instead of a call of PyThreadState_Get. From
 * 3.12 it is a thread-local of libpython, which only its own code reads
 * cheaply. */
static inline PyThreadState *current_ts(void)
{
#if !WEFT_PY312
    return _PyThreadState_GET();
#else
    return PyThreadState_Get();
#endif
}

/* Moves the running coroutine's state out of the thread state into `s`.
 * `to` is the blob of the coroutine that resumes next (3.11: it is handed the
 * tracing flag), or NULL when none does. */
void weft_pystate_save(weft_pystate *s, weft_pystate *to)
{
    PyThreadState *ts = current_ts();
    s->context = ts->context;                /* moved: ts->context is refilled on restore */
    ts->context = NULL;
#if WEFT_CFRAME
    s->cframe = ts->cframe;
#endif
#if !WEFT_PY312
    if (to) to->use_tracing = ts->cframe->use_tracing;
#else
    (void)to;
#endif
#if WEFT_PY313
    s->current_frame = ts->current_frame;
#else
    s->current_frame = ts->cframe->current_frame;
#endif
    s->py_recursion_depth = recursion_depth(ts);
#if WEFT_PY312 && !WEFT_PY314
    s->c_recursion_remaining = ts->c_recursion_remaining;
#endif
#if WEFT_PY314
    s->current_executor = ts->current_executor;
#endif
#if WEFT_PY315
    s->generator_return_kind = ((_PyThreadStateImpl *)ts)->generator_return_kind;
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
    expose_frames(s);
}

/* Moves `s` back into the thread state; `s` owns nothing afterwards. */
void weft_pystate_restore(weft_pystate *s)
{
    PyThreadState *ts = current_ts();
    unexpose_frames(s);
    Py_XSETREF(ts->context, s->context);
    s->context = NULL;
    ts->context_ver++;                       /* invalidates the contextvars cache */
#if WEFT_CFRAME
    ts->cframe = s->cframe;
#endif
#if !WEFT_PY312
    ts->cframe->use_tracing = s->use_tracing;
#endif
#if WEFT_PY313
    ts->current_frame = s->current_frame;
#else
    ts->cframe->current_frame = s->current_frame;
#endif
#if WEFT_PY312
    ts->py_recursion_remaining = ts->py_recursion_limit - s->py_recursion_depth;
#  if WEFT_PY314
    ts->current_executor = s->current_executor;
#  endif
#  if WEFT_PY315
    ((_PyThreadStateImpl *)ts)->generator_return_kind = s->generator_return_kind;
    forget_profiled_frames(ts);
#  endif
#  if !WEFT_PY314
    ts->c_recursion_remaining = s->c_recursion_remaining;
#  endif
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

/* A finished coroutine `s` (see weft_pystate_finish) switches to the
 * suspended `to`, which restores next: what save hands over from a live one. */
void weft_pystate_hand_over(weft_pystate *s, weft_pystate *to)
{
#if !WEFT_PY312
    to->use_tracing = s->use_tracing;
#else
    (void)s; (void)to;
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
    PyMem_RawFree(s->links);
    s->links = NULL;
    s->nlinks = s->links_cap = 0;
}

/* The references held by the frames of a suspended coroutine, for its
 * tp_traverse. Only 3.15 exports what a visit of a frame's value stack needs
 * (_PyGC_VisitFrameStack, for this purpose); there, as in greenlet, a suspended
 * coroutine is an ordinary GC object whose cycles the collector can break by
 * finalizing (killing) it. Earlier versions report nothing here and keep
 * suspended coroutines out of the collector's reach (tp_is_gc), so whatever
 * their frames hold counts as referenced from outside: never freed early.
 * The caller guarantees `s` holds a suspended coroutine: after expose_frames
 * its chain is the Python frames in its data stack, which stay where they are
 * while it is switched out. Generator frames are visited by their generator,
 * frames owned by frame objects by the frame object. */
int weft_pystate_traverse_frames(weft_pystate *s, visitproc visit, void *arg)
{
#if WEFT_PY315
    for (struct _PyInterpreterFrame *f = s->current_frame; f; f = f->previous) {
        if (f->owner != FRAME_OWNED_BY_THREAD) continue;
        Py_VISIT(f->frame_obj);
        Py_VISIT(f->f_locals);
        _Py_VISIT_STACKREF(f->f_funcobj);
        _Py_VISIT_STACKREF(f->f_executable);
        int r = _PyGC_VisitFrameStack(f, visit, arg);
        if (r) return r;
    }
#else
    (void)s; (void)visit; (void)arg;
#endif
    return 0;
}
int weft_pystate_frames_traversable(void) { return WEFT_PY315; }

PyObject *weft_pystate_context(weft_pystate *s) { return s->context; }
/* The strong references a blob holds, for the GC: 0 context, 1 handled exception. */
PyObject *weft_pystate_ref(weft_pystate *s, int i) { return i == 0 ? s->context : i == 1 ? s->exc_state.exc_value : NULL; }
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
/* 2 KiB holds about a dozen small frames. Chunks this size pack densely into
 * malloc's pages, so a suspended coroutine costs the memory its frames use,
 * not a page; a deeper one gets CPython's own 16 KiB chunks on top. */
static size_t root_chunk_bytes = 2 * 1024;

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

/* Frees the root chunk `c` of the coroutine whose state is `s`: weft's goes
 * back to the pool, CPython's (made by push_chunk) to its arena allocator,
 * as CPython frees a thread state's chunks. */
static void drop_root(weft_pystate *s, _PyStackChunk *c)
{
    if (c == s->own_root) {
        give_chunk(c);
    } else {
        PyObjectArenaAllocator arena;
        PyObject_GetArenaAllocator(&arena);
        if (arena.free) arena.free(arena.ctx, c, c->size);
    }
    s->own_root = NULL;
}

/* Runs `body(arg)` as a new coroutine: fresh frame chain, exception state, data
 * stack and trashcan; the context is `s`'s (empty unless gr_context was set).
 * The recursion depth carries on from the thread's, as the C stack does.
 * With `with_chunk` 0 the coroutine starts with no data stack at all, as a
 * new thread does: for a body that is a C function, which needs none unless
 * it calls Python code (CPython then makes one, of its usual 16 KiB).
 * `body` never returns: it ends by switching to another coroutine. */
int weft_pystate_run_new(PyThreadState *ts, weft_pystate *s, int with_chunk, void (*body)(void *), void *arg)
{
    _PyStackChunk *chunk = NULL;
    if (with_chunk) {
        chunk = take_chunk();
        if (!chunk) return -1;
        chunk->previous = NULL;
        chunk->top = 0;
    }
    s->own_root = chunk;
#if WEFT_CFRAME
    _PyCFrame cframe = *ts->cframe;          /* keeps use_tracing (3.11) */
    cframe.current_frame = NULL;
    cframe.previous = &ts->root_cframe;
    ts->cframe = &cframe;
#elif WEFT_PY315
    /* Like a new thread's, the chain ends at the sentinel (owned by the
     * interpreter, so frame walks skip it). */
    ts->current_frame = ts->base_frame;
    forget_profiled_frames(ts);
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
    ts->datastack_top = chunk ? &chunk->data[1] : NULL;
    ts->datastack_limit = chunk ? (PyObject **)((char *)chunk + chunk->size) : NULL;
#if WEFT_PY313
    ts->delete_later = NULL;
#elif WEFT_PY312
    ts->trash.delete_nesting = 0;
#else
    ts->trash_delete_nesting = 0;
#endif
    /* The coroutine's frames end here for an unwinder: the frames above belong
     * to whichever coroutine started this one and may since have been
     * overwritten. When CPython ends a daemon thread at shutdown with
     * pthread_exit, the forced unwind stops at this frame and glibc jumps
     * straight to the thread's exit, instead of walking into stale frames. */
#if defined(__x86_64__)
    __asm__ volatile(".cfi_undefined rip");
#elif defined(__aarch64__)
    __asm__ volatile(".cfi_undefined x30");
#endif
    body(arg);
    Py_FatalError("weft: a coroutine body returned instead of switching away");
    return -1;
}

/* Called by a coroutine whose body has finished, just before it switches away
 * for the last time: gives back its data stack; its context stays readable as
 * gr_context in `s`. */
void weft_pystate_finish(PyThreadState *ts, weft_pystate *s)
{
#if !WEFT_PY312
    s->use_tracing = ts->cframe->use_tracing;   /* for weft_pystate_hand_over */
#endif
    _PyStackChunk *c = ts->datastack_chunk;
    /* Every frame has been popped, so the chain is just our root chunk. */
    if (c && c->previous == NULL) drop_root(s, c);
    ts->datastack_chunk = NULL;
    ts->datastack_top = NULL;
    ts->datastack_limit = NULL;
    Py_XSETREF(s->context, ts->context);
    ts->context = NULL;
    Py_CLEAR(ts->exc_state.exc_value);
}

/* ---- Frames of a suspended coroutine ----------------------------------- */

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
/* From 3.12 each C-to-Python call keeps an entry frame on the C stack, linked
 * into the `previous` chain. Once the coroutine is switched away, another
 * coroutine overwrites that stack, and a walk of f_back (from gr_frame or from
 * any frame object the program kept) would read garbage. So on the way out every
 * frame whose `previous` is such a C-stack frame is relinked to the next frame
 * that is not, and the original links are put back before the coroutine runs. */
static void expose_frames(weft_pystate *s)
{
    s->nlinks = 0;
    struct _PyInterpreterFrame *f = s->current_frame;
    while (f) {
        struct _PyInterpreterFrame *p = f->previous;
        if (p && WEFT_NOT_PYTHON_FRAME(p)) {
            struct _PyInterpreterFrame *q = p;
            while (q && WEFT_NOT_PYTHON_FRAME(q)) q = q->previous;
            if (s->nlinks == s->links_cap) {
                int cap = s->links_cap ? s->links_cap * 2 : 8;
                struct weft_link *n = PyMem_RawRealloc(s->links, cap * sizeof *n);
                if (!n) Py_FatalError("weft: out of memory saving a coroutine's frame links");
                s->links = n;
                s->links_cap = cap;
            }
            s->links[s->nlinks].frame = f;
            s->links[s->nlinks].previous = p;
            s->nlinks++;
            f->previous = q;
            f = q;
        } else {
            f = p;
        }
    }
}

static void unexpose_frames(weft_pystate *s)
{
    for (int i = s->nlinks - 1; i >= 0; i--) s->links[i].frame->previous = s->links[i].previous;
    s->nlinks = 0;
}
#else
/* 3.11 keeps every interpreter frame in the data stack: links stay valid. */
static void expose_frames(weft_pystate *s) { (void)s; }
static void unexpose_frames(weft_pystate *s) { (void)s; }
#endif

/* gr_frame of a suspended coroutine: a new reference, or NULL (no error set)
 * when it has no complete Python frame. */
PyObject *weft_pystate_top_frame(PyThreadState *ts, weft_pystate *s)
{
    if (!s->current_frame) return NULL;
    return (PyObject *)frame_object_of(ts, s->current_frame);
}

/* ---- Coroutines left suspended by a thread that has exited --------------
 * Such a coroutine can never run again. As greenlet does when it deallocates
 * one (PythonState::did_finish from ~UserGreenlet), weft gives back its
 * data-stack chunks. On 3.15, as in greenlet there, the references its frames
 * hold are released too (a suspended frame's value stack ends at its saved
 * stackpointer, the same top the collector visits); before 3.15 they stay
 * taken, as in greenlet (no reliable top of the value stack).
 *
 * The chunks are freed only when nothing can reach into them afterwards:
 * - every frame of the chain is owned by the thread: a generator's or
 *   coroutine's frame lives in its object, which would later follow
 *   `previous` into the chunks (and a C-stack entry frame is not ours);
 * - every frame object of those frames is referenced by its frame alone. Each
 *   is detached and pointed at a static frame that never runs before it is
 *   released, so its deallocation (which the trashcan may defer) and any GC
 *   traversal meanwhile read that frame, not the freed chunks.
 * Otherwise nothing is freed: a leak, never a dangling pointer.
 * The caller guarantees `s` holds a suspended coroutine's saved state (it was
 * not running when its thread exited) and holds the GIL. Returns 1 if freed. */
static struct _PyInterpreterFrame released_frame;   /* owned "by a thread"; never runs */

int weft_pystate_release_orphaned(weft_pystate *s)
{
    if (!s->datastack_chunk) return 0;
    int nobjs = 0;
    for (struct _PyInterpreterFrame *f = s->current_frame; f; f = f->previous) {
        if (f->owner != FRAME_OWNED_BY_THREAD) return 0;
        if (f->frame_obj && Py_REFCNT(f->frame_obj) != 1) return 0;
        if (f->frame_obj) nobjs++;
    }
    /* Their releases can run Python code (a trace function's last reference),
     * so they come last, once `s` no longer names anything freed. */
    PyFrameObject **objs = NULL;
    if (nobjs && !(objs = PyMem_RawMalloc(nobjs * sizeof *objs))) return 0;
    released_frame.owner = FRAME_OWNED_BY_THREAD;
    int n = 0;
    for (struct _PyInterpreterFrame *f = s->current_frame; f; f = f->previous) {
        if (f->frame_obj) {
            objs[n++] = f->frame_obj;
            f->frame_obj->f_frame = &released_frame;
            f->frame_obj = NULL;
        }
    }
    /* From here on `s` names nothing: code run by the releases below (a
     * __del__) that looks at this coroutine again finds it already released. */
    struct _PyInterpreterFrame *top = s->current_frame;
    _PyStackChunk *c = s->datastack_chunk;
    s->current_frame = NULL;
    s->datastack_chunk = NULL;
    s->datastack_top = NULL;
    s->datastack_limit = NULL;
    s->nlinks = 0;                           /* they pointed into the chunks */
#if WEFT_PY315
    for (struct _PyInterpreterFrame *f = top; f; f = f->previous) {
        if (f->stackpointer) {
            while (f->stackpointer > f->localsplus) {
                f->stackpointer--;
                PyStackRef_CLEAR(*f->stackpointer);
            }
        }
        Py_CLEAR(f->f_locals);
        PyStackRef_CLEAR(f->f_funcobj);
        PyStackRef_CLEAR(f->f_executable);   /* nothing reads these frames again */
    }
#else
    (void)top;
#endif
    PyObjectArenaAllocator arena;
    PyObject_GetArenaAllocator(&arena);
    while (c) {
        _PyStackChunk *prev = c->previous;
        if (prev == NULL) drop_root(s, c);               /* the root: weft's or CPython's */
        else if (arena.free) arena.free(arena.ctx, c, c->size);   /* CPython's push_chunk */
        c = prev;
    }
    for (int i = 0; i < n; i++) Py_DECREF(objs[i]);
    PyMem_RawFree(objs);
    return 1;
}

/* 1 if this file was compiled for an interpreter built with the JIT
 * (-D_Py_JIT), whose thread state has the JIT's fields: a wheel built for
 * Debian's 3.15 must not load into a 3.15 built without them. */
int weft_pystate_built_with_jit(void)
{
#ifdef _Py_JIT
    return 1;
#else
    return 0;
#endif
}
