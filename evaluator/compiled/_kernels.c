/*
 * The compiled kernels of the evaluator's hot path: scanning an smdebug event file, and the
 * argmax and per-step counts of the common form of a chunk.
 *
 * Both are fast paths in front of a pure-Python reference that stays the authority:
 *
 * - scan_event_file(buf, step, verify_payload) walks a whole event file (TFRecord framing,
 *   length CRCs, the Event -> Summary -> Value -> TensorProto fields) and returns what
 *   evaluator.trial.parsers.scan_event_file returns, plus where each tensor's raw content lies.
 *   Anything it does not take on itself (a malformed byte anywhere, a group, a mode written
 *   with spaces, a tag that is not plain UTF-8...) makes it return None, and the caller runs
 *   the Python parser, which either reads the uncommon form or raises its typed error with
 *   its message. So the compiled path never accepts what the Python one refuses, and the
 *   error a user sees is the same whichever path ran; a differential fuzz test holds them equal.
 * - argmax_finite(arrays, out) and step_counts(labels, predicted, stops, samples, wrong) are
 *   the numeric kernels of the whole-chunk path (evaluator.core.normalise.chunk, progress).
 *
 * The bytes are hostile (anyone who can write the trial controls them): every length is
 * checked against the bytes left before it is used, in 64-bit unsigned arithmetic, nothing is
 * read before it is bounds-checked, and nesting is walked without recursion. No numpy headers:
 * arrays come in through the buffer protocol, so the module builds with a C compiler and
 * Python's headers alone.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

/* -- CRC32C (Castagnoli), as TFRecord masks it ---------------------------------------------- */

static uint32_t crc_table[8][256];

static void crc_init(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t crc = n;
        for (int k = 0; k < 8; k++) crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
        crc_table[0][n] = crc;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t crc = crc_table[0][n];
        for (int k = 1; k < 8; k++) {
            crc = crc_table[0][crc & 0xFF] ^ (crc >> 8);
            crc_table[k][n] = crc;
        }
    }
}

static uint32_t crc32c(const uint8_t *data, size_t size) {
    uint32_t crc = 0xFFFFFFFFu;
    while (size >= 8) {
        uint64_t word;
        memcpy(&word, data, 8);
        word ^= crc;
        crc = crc_table[7][word & 0xFF] ^ crc_table[6][(word >> 8) & 0xFF] ^
              crc_table[5][(word >> 16) & 0xFF] ^ crc_table[4][(word >> 24) & 0xFF] ^
              crc_table[3][(word >> 32) & 0xFF] ^ crc_table[2][(word >> 40) & 0xFF] ^
              crc_table[1][(word >> 48) & 0xFF] ^ crc_table[0][word >> 56];
        data += 8;
        size -= 8;
    }
    while (size--) crc = crc_table[0][(crc ^ *data++) & 0xFF] ^ (crc >> 8);
    return crc ^ 0xFFFFFFFFu;
}

static uint32_t masked_crc(const uint8_t *data, size_t size) {
    uint32_t crc = crc32c(data, size);
    return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u;
}

static uint32_t smdebug_footer; /* masked_crc("0x12345678"): smdebug's constant footer */

static uint64_t load_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static uint32_t load_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* -- protobuf wire format --------------------------------------------------------------------
 * A field reader over buf[pos, stop). It returns 1 with the field, 0 at the end of the message,
 * -1 for anything the Python reader would refuse or that the fast path leaves to it (groups). */

typedef struct {
    uint32_t number;
    int wire;
    uint64_t value;       /* VARINT: the value */
    size_t first, end;    /* LEN, FIXED32, FIXED64: the field's bytes */
} Field;

static int read_varint(const uint8_t *buf, size_t *pos, size_t stop, uint64_t *out) {
    uint64_t result = 0;
    size_t p = *pos;
    for (int i = 0; i < 10; i++) {
        if (p >= stop) return -1;
        uint8_t byte = buf[p++];
        result |= (uint64_t)(byte & 0x7F) << (7 * i); /* the 10th byte keeps its lowest bit */
        if (byte < 0x80) {
            *out = result;
            *pos = p;
            return 0;
        }
    }
    return -1; /* longer than 10 bytes */
}

static int next_field(const uint8_t *buf, size_t *pos, size_t stop, Field *field) {
    if (*pos >= stop) return 0;
    uint64_t tag;
    if (read_varint(buf, pos, stop, &tag) < 0) return -1;
    if (tag < 8 || (tag >> 3) > ((1u << 29) - 1)) return -1;
    field->number = (uint32_t)(tag >> 3);
    field->wire = (int)(tag & 7);
    switch (field->wire) {
    case 0:
        return read_varint(buf, pos, stop, &field->value) < 0 ? -1 : 1;
    case 2: {
        uint64_t size;
        if (read_varint(buf, pos, stop, &size) < 0) return -1;
        if (size > stop - *pos) return -1;
        field->first = *pos;
        field->end = *pos + (size_t)size;
        *pos = field->end;
        return 1;
    }
    case 1:
    case 5: {
        size_t size = field->wire == 1 ? 8 : 4;
        if (size > stop - *pos) return -1;
        field->first = *pos;
        field->end = *pos + size;
        *pos = field->end;
        return 1;
    }
    default:
        return -1; /* groups (3, 4) are left to the Python reader; 6 and 7 are invalid */
    }
}

/* Whether buf[first, end) is valid UTF-8 as Python's strict decoder sees it. ASCII is checked
 * inline (smdebug's tags and plugin data are ASCII); anything else is asked of Python. */
static int valid_utf8(const uint8_t *buf, size_t first, size_t end) {
    for (size_t i = first; i < end; i++) {
        if (buf[i] >= 0x80) {
            PyObject *text = PyUnicode_DecodeUTF8((const char *)buf + first,
                                                  (Py_ssize_t)(end - first), "strict");
            if (text == NULL) {
                PyErr_Clear();
                return 0;
            }
            Py_DECREF(text);
            return 1;
        }
    }
    return 1;
}

/* -- one Summary.Value ---------------------------------------------------------------------- */

typedef struct {
    size_t tag_first, tag_end;
    int has_tensor;
    size_t tensor_first, tensor_end;
    int has_mode, has_mode_step;
    size_t mode_first, mode_end, step_first, step_end;
} Value;

static int same_text(const uint8_t *buf, size_t first, size_t end, const char *text) {
    size_t size = strlen(text);
    return end - first == size && memcmp(buf + first, text, size) == 0;
}

/* SummaryMetadata: every plugin_data (1) sets plugins[name] = content, the last one winning. */
static int read_metadata(const uint8_t *buf, size_t pos, size_t stop, Value *value) {
    Field field;
    int got;
    while ((got = next_field(buf, &pos, stop, &field)) > 0) {
        if (field.number != 1) continue;
        if (field.wire != 2) return -1;
        size_t name_first = 0, name_end = 0, content_first = 0, content_end = 0;
        size_t inner = field.first;
        Field part;
        int more;
        while ((more = next_field(buf, &inner, field.end, &part)) > 0) {
            if (part.number == 1 || part.number == 2) {
                if (part.wire != 2 || !valid_utf8(buf, part.first, part.end)) return -1;
                if (part.number == 1) {
                    name_first = part.first;
                    name_end = part.end;
                } else {
                    content_first = part.first;
                    content_end = part.end;
                }
            }
        }
        if (more < 0) return -1;
        if (same_text(buf, name_first, name_end, "mode")) {
            value->has_mode = 1;
            value->mode_first = content_first;
            value->mode_end = content_end;
        } else if (same_text(buf, name_first, name_end, "mode_step")) {
            value->has_mode_step = 1;
            value->step_first = content_first;
            value->step_end = content_end;
        }
    }
    return got;
}

static int read_value(const uint8_t *buf, size_t pos, size_t stop, Value *value) {
    memset(value, 0, sizeof(*value));
    Field field;
    int got;
    while ((got = next_field(buf, &pos, stop, &field)) > 0) {
        if (field.number == 1) {
            if (field.wire != 2 || !valid_utf8(buf, field.first, field.end)) return -1;
            value->tag_first = field.first;
            value->tag_end = field.end;
        } else if (field.number == 8) {
            if (field.wire != 2) return -1;
            value->has_tensor = 1;
            value->tensor_first = field.first;
            value->tensor_end = field.end;
        } else if (field.number == 9) {
            if (field.wire != 2 || read_metadata(buf, field.first, field.end, value) < 0)
                return -1;
        }
    }
    return got;
}

/* -- a TensorProto's raw content ------------------------------------------------------------
 * Where its tensor_content lies, when the Python decoder would make a plain zero-copy array of
 * it (a numeric dtype stored as is, the element count matching): reading held bytes then needs
 * no second walk. Otherwise (typed fields, bool, bfloat16, strings, anything odd) there is no
 * descriptor and the Python decoder reads the tensor, or says why it cannot. */

#define MAX_DIMS 32
#define MAX_ELEMENTS ((uint64_t)1 << 48)

static int content_itemsize(int64_t dtype) {
    switch (dtype) {
    case 1: return 4;  /* DT_FLOAT */
    case 2: return 8;  /* DT_DOUBLE */
    case 3: return 4;  /* DT_INT32 */
    case 4: return 1;  /* DT_UINT8 */
    case 5: return 2;  /* DT_INT16 */
    case 6: return 1;  /* DT_INT8 */
    case 8: return 8;  /* DT_COMPLEX64 */
    case 9: return 8;  /* DT_INT64 */
    case 17: return 2; /* DT_UINT16 */
    case 18: return 16; /* DT_COMPLEX128 */
    case 19: return 2; /* DT_HALF */
    case 22: return 4; /* DT_UINT32 */
    case 23: return 8; /* DT_UINT64 */
    default: return 0; /* bool and bfloat16 are converted, strings have no content: Python */
    }
}

typedef struct {
    int64_t dtype;
    int ndim;
    uint64_t dims[MAX_DIMS];
    size_t content_first, content_end;
} Content;

static int read_dim(const uint8_t *buf, size_t pos, size_t stop, uint64_t *size) {
    Field field;
    int got;
    *size = 0;
    while ((got = next_field(buf, &pos, stop, &field)) > 0) {
        if (field.number == 1) {
            if (field.wire != 0) return -1;
            *size = field.value;
        }
    }
    return got < 0 || *size >= MAX_ELEMENTS ? -1 : 0;
}

static int read_shape(const uint8_t *buf, size_t pos, size_t stop, Content *content) {
    Field field;
    int got;
    content->ndim = 0;
    while ((got = next_field(buf, &pos, stop, &field)) > 0) {
        if (field.number == 2) {
            if (field.wire != 2 || content->ndim >= MAX_DIMS) return -1;
            if (read_dim(buf, field.first, field.end, &content->dims[content->ndim]) < 0)
                return -1;
            content->ndim++;
        } else if (field.number == 3) {
            if (field.wire != 0 || field.value) return -1; /* unknown rank: Python says why */
        }
    }
    return got;
}

/* 1 with a descriptor, 0 without one (the Python decoder reads the tensor). */
static int read_content(const uint8_t *buf, size_t pos, size_t stop, Content *content) {
    Field field;
    int got, has_content = 0;
    content->dtype = 0;
    content->ndim = 0;
    content->content_first = content->content_end = 0;
    while ((got = next_field(buf, &pos, stop, &field)) > 0) {
        if (field.number == 4) {
            if (field.wire != 2) return 0;
            has_content = 1;
            content->content_first = field.first;
            content->content_end = field.end;
        } else if (field.number == 1) {
            if (field.wire != 0) return 0;
            content->dtype = (int32_t)(uint32_t)(field.value & 0xFFFFFFFFu);
        } else if (field.number == 2) {
            if (field.wire != 2 || read_shape(buf, field.first, field.end, content) < 0) return 0;
        }
    }
    if (got < 0 || !has_content || content->content_end <= content->content_first) return 0;
    int itemsize = content_itemsize(content->dtype);
    if (!itemsize) return 0;
    uint64_t count = 1;
    for (int i = 0; i < content->ndim; i++) {
        uint64_t dim = content->dims[i];
        if (dim && count > (UINT64_MAX / 16) / dim) return 0;
        count *= dim;
    }
    return (uint64_t)(content->content_end - content->content_first) == count * (uint64_t)itemsize;
}

/* -- the whole file ------------------------------------------------------------------------- */

static PyObject *MODE_NAMES[5]; /* "GLOBAL" for no mode plugin, then TRAIN EVAL PREDICT GLOBAL */

/* A mode plugin's content as smdebug writes it: exactly "1" to "4". 0: leave it to Python. */
static int mode_number(const uint8_t *buf, const Value *value) {
    if (!value->has_mode) return 4;
    if (value->mode_end - value->mode_first != 1) return 0;
    uint8_t digit = buf[value->mode_first];
    return digit >= '1' && digit <= '4' ? digit - '0' : 0;
}

/* A mode_step plugin's content as plain decimal digits (an optional minus); 0: leave it. */
static int mode_step_of(const uint8_t *buf, const Value *value, int64_t step, int64_t *out) {
    if (!value->has_mode_step) {
        *out = step;
        return 1;
    }
    size_t first = value->step_first, end = value->step_end;
    int negative = 0;
    if (first < end && buf[first] == '-') {
        negative = 1;
        first++;
    }
    if (end <= first || end - first > 18) return 0;
    int64_t result = 0;
    for (size_t i = first; i < end; i++) {
        if (buf[i] < '0' || buf[i] > '9') return 0;
        result = result * 10 + (buf[i] - '0');
    }
    *out = negative ? -result : result;
    return 1;
}

static const char REDUCTIONS_PREFIX[] = "smdebug/reductions/";

static PyObject *span_tuple(const uint8_t *buf, const Value *value, size_t offset,
                            uint64_t payload_len, size_t base) {
    const uint8_t *payload = buf + base; /* the value's offsets are the payload's */
    Content content;
    PyObject *descriptor;
    if (read_content(payload, value->tensor_first, value->tensor_end, &content)) {
        PyObject *shape = PyTuple_New(content.ndim);
        if (shape == NULL) return NULL;
        for (int i = 0; i < content.ndim; i++) {
            PyObject *dim = PyLong_FromUnsignedLongLong(content.dims[i]);
            if (dim == NULL) {
                Py_DECREF(shape);
                return NULL;
            }
            PyTuple_SET_ITEM(shape, i, dim);
        }
        descriptor = Py_BuildValue("(LNn)", (long long)content.dtype, shape,
                                   (Py_ssize_t)(base + content.content_first));
        if (descriptor == NULL) return NULL;
    } else {
        descriptor = Py_NewRef(Py_None);
    }
    PyObject *tag = PyUnicode_DecodeUTF8((const char *)payload + value->tag_first,
                                         (Py_ssize_t)(value->tag_end - value->tag_first),
                                         "strict");
    if (tag == NULL) {
        Py_DECREF(descriptor);
        return NULL;
    }
    return Py_BuildValue("(NnKnnN)", tag, (Py_ssize_t)offset,
                         (unsigned long long)(payload_len + 16),
                         (Py_ssize_t)(base + value->tensor_first),
                         (Py_ssize_t)(base + value->tensor_end), descriptor);
}

/* Walk one Event payload buf[base, base + size): its step and every tensor value. Values are
 * appended to `spans` (reductions left out); -1 declines, -2 is a Python error (memory). */
static int scan_event(const uint8_t *buf, size_t offset, size_t base, uint64_t size,
                      int64_t step, int *described, int64_t *described_step,
                      PyObject *spans) {
    const uint8_t *payload = buf + base;
    size_t stop = (size_t)size, pos = 0;
    int64_t event_step = 0;
    Field field;
    int got;
    /* First pass: the step, wherever it is (the Python reader reads it with the values). */
    while ((got = next_field(payload, &pos, stop, &field)) > 0) {
        if (field.number == 2) {
            if (field.wire != 0) return -1;
            event_step = (int64_t)field.value;
        } else if (field.number == 5 && field.wire != 2) {
            return -1;
        }
    }
    if (got < 0) return -1;
    pos = 0;
    while ((got = next_field(payload, &pos, stop, &field)) > 0) {
        if (field.number != 5) continue;
        size_t inner = field.first;
        Field item;
        int more;
        while ((more = next_field(payload, &inner, field.end, &item)) > 0) {
            if (item.number != 1) continue;
            if (item.wire != 2) return -1;
            Value value;
            if (read_value(payload, item.first, item.end, &value) < 0) return -1;
            if (!value.has_tensor) continue;
            if (event_step != step) return -1;
            int mode = mode_number(payload, &value);
            int64_t mode_step;
            if (!mode || !mode_step_of(payload, &value, step, &mode_step)) return -1;
            if (*described && (mode != *described || mode_step != *described_step)) return -1;
            *described = mode;
            *described_step = mode_step;
            size_t tag_size = value.tag_end - value.tag_first;
            size_t prefix = sizeof(REDUCTIONS_PREFIX) - 1;
            if (tag_size >= prefix &&
                memcmp(payload + value.tag_first, REDUCTIONS_PREFIX, prefix) == 0)
                continue;
            PyObject *span = span_tuple(buf, &value, offset, size, base);
            if (span == NULL) return -2;
            int appended = PyList_Append(spans, span);
            Py_DECREF(span);
            if (appended < 0) return -2;
        }
        if (more < 0) return -1;
    }
    return got < 0 ? -1 : 0;
}

static PyObject *scan_event_file(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer view;
    PyObject *step_object;
    int verify_payload, overflow;
    if (!PyArg_ParseTuple(args, "y*Op", &view, &step_object, &verify_payload)) return NULL;
    long long step = PyLong_AsLongLongAndOverflow(step_object, &overflow);
    if (overflow || (step == -1 && PyErr_Occurred())) {
        /* A step beyond int64 (an index key may name one) matches no Event's step: declined,
         * so the Python scan says so; anything but an int is the caller's TypeError. */
        PyBuffer_Release(&view);
        if (overflow) Py_RETURN_NONE;
        return NULL;
    }
    const uint8_t *buf = view.buf;
    size_t end = (size_t)view.len, offset = 0;
    int described = 0;
    int64_t described_step = 0;
    PyObject *spans = PyList_New(0);
    PyObject *result = NULL;
    if (spans == NULL) goto done;
    while (offset < end) {
        if (end - offset < 12) goto decline;
        uint64_t payload_len = load_u64(buf + offset);
        if (load_u32(buf + offset + 8) != masked_crc(buf + offset, 8)) goto decline;
        if (payload_len > end - offset - 12 || end - offset - 12 - payload_len < 4) goto decline;
        size_t first = offset + 12;
        if (verify_payload) {
            uint32_t footer = load_u32(buf + first + payload_len);
            if (footer != smdebug_footer && footer != masked_crc(buf + first, payload_len))
                goto decline;
        }
        int walked = scan_event(buf, offset, first, payload_len, step, &described,
                                &described_step, spans);
        if (walked == -2) goto done;
        if (walked < 0) goto decline;
        offset = first + payload_len + 4;
    }
    if (!described) {
        result = Py_BuildValue("(OLO)", Py_None, 0LL, Py_None);
    } else {
        PyObject *tuple = PyList_AsTuple(spans);
        if (tuple == NULL) goto done;
        result = Py_BuildValue("(OLN)", MODE_NAMES[described], (long long)described_step, tuple);
    }
    goto done;
decline:
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(spans);
    PyBuffer_Release(&view);
    return result;
}

/* -- argmax of score rows ------------------------------------------------------------------- */

/* The scores' element kind from a buffer format: 'f', 'd' or 'e', or 0. */
static char float_kind(const char *format) {
    if (format == NULL) return 0;
    if (format[0] == '<' || format[0] == '=' || format[0] == '@') format++;
    if ((format[0] == 'f' || format[0] == 'd' || format[0] == 'e') && format[1] == '\0')
        return format[0];
    return 0;
}

/* The argmax of one row of scores in one pass, the first maximum winning (numpy's rule: -0.0
 * and 0.0 are equal, so the first of them stays). A NaN or an infinity is told by its exponent
 * bits, all ones; 0 then. float16 scores are compared by an integer key that orders as their
 * values do (sign-magnitude made two's complement, -0.0 made +0.0), which saves converting
 * each one. */
#define ROW_ARGMAX_FLOAT(NAME, FLOAT, UINT, EXPONENT)                                   \
    static int NAME(const char *row, Py_ssize_t columns, int64_t *where) {              \
        UINT bits;                                                                      \
        FLOAT best, score;                                                              \
        memcpy(&bits, row, sizeof bits);                                                \
        UINT bad = (UINT)((bits & EXPONENT) == EXPONENT);                               \
        memcpy(&best, row, sizeof best);                                                \
        int64_t found = 0;                                                              \
        for (Py_ssize_t column = 1; column < columns; column++) {                       \
            memcpy(&bits, row + column * (Py_ssize_t)sizeof(FLOAT), sizeof bits);       \
            bad |= (UINT)((bits & EXPONENT) == EXPONENT);                               \
            memcpy(&score, &bits, sizeof score);                                        \
            if (score > best) {                                                         \
                best = score;                                                           \
                found = column;                                                         \
            }                                                                           \
        }                                                                               \
        *where = found;                                                                 \
        return !bad;                                                                    \
    }

ROW_ARGMAX_FLOAT(argmax_row_f32, float, uint32_t, 0x7F800000u)
ROW_ARGMAX_FLOAT(argmax_row_f64, double, uint64_t, 0x7FF0000000000000ull)

static int16_t half_key(uint16_t bits) {
    if (bits == 0x8000u) bits = 0; /* -0.0 equals 0.0 */
    return (int16_t)(bits & 0x8000u ? (uint16_t)(bits ^ 0x7FFFu) : bits);
}

static int argmax_row_f16(const char *row, Py_ssize_t columns, int64_t *where) {
    uint16_t bits;
    memcpy(&bits, row, 2);
    unsigned bad = (bits & 0x7C00u) == 0x7C00u;
    int16_t best = half_key(bits);
    int64_t found = 0;
    for (Py_ssize_t column = 1; column < columns; column++) {
        memcpy(&bits, row + 2 * column, 2);
        bad |= (bits & 0x7C00u) == 0x7C00u;
        int16_t key = half_key(bits);
        if (key > best) {
            best = key;
            found = column;
        }
    }
    *where = found;
    return !bad;
}

/* argmax_finite(arrays, out) -> bool: the argmax of every row of each C-contiguous 2-D float
 * array (float16, 32 or 64, any alignment), in order, into the int64 array `out`; the first
 * maximum wins, as numpy's. False as soon as a row holds a NaN or an infinity (those rows take
 * the batch-by-batch path); ValueError for arrays of another form. */
static int int64_view(PyObject *object, Py_buffer *view, int writable, const char *what);

static PyObject *argmax_finite(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *arrays, *target_object;
    Py_buffer target;
    if (!PyArg_ParseTuple(args, "OO", &arrays, &target_object)) return NULL;
    if (int64_view(target_object, &target, 1, "out") < 0) return NULL;
    PyObject *sequence = PySequence_Fast(arrays, "arrays must be a sequence");
    if (sequence == NULL) {
        PyBuffer_Release(&target);
        return NULL;
    }
    int all_finite = 1;
    PyObject *result = NULL;
    Py_ssize_t filled = 0, capacity = target.len / 8;
    int64_t *out = target.buf;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(sequence);
    for (Py_ssize_t index = 0; index < count && all_finite; index++) {
        Py_buffer view;
        PyObject *array = PySequence_Fast_GET_ITEM(sequence, index);
        if (PyObject_GetBuffer(array, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) goto done;
        char kind = float_kind(view.format);
        Py_ssize_t rows = view.ndim == 2 ? view.shape[0] : -1;
        Py_ssize_t columns = view.ndim == 2 ? view.shape[1] : 0;
        if (!kind || rows < 0 || columns < 1 || capacity - filled < rows) {
            PyBuffer_Release(&view);
            PyErr_SetString(PyExc_ValueError,
                            "expected 2-D float arrays with at least one column, and room in out");
            goto done;
        }
        int (*row_argmax)(const char *, Py_ssize_t, int64_t *) =
            kind == 'f' ? argmax_row_f32 : kind == 'd' ? argmax_row_f64 : argmax_row_f16;
        Py_ssize_t row_bytes = columns * view.itemsize;
        for (Py_ssize_t row = 0; row < rows && all_finite; row++)
            all_finite = row_argmax((const char *)view.buf + row * row_bytes, columns,
                                    &out[filled + row]);
        filled += rows;
        PyBuffer_Release(&view);
    }
    result = PyBool_FromLong(all_finite);
done:
    Py_DECREF(sequence);
    PyBuffer_Release(&target);
    return result;
}

/* -- per-step per-class counts -------------------------------------------------------------- */

static int int64_view(PyObject *object, Py_buffer *view, int writable, const char *what) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(object, view, flags) < 0) return -1;
    const char *format = view->format;
    if (format && (format[0] == '<' || format[0] == '=' || format[0] == '@')) format++;
    if (view->itemsize != 8 || format == NULL ||
        !(strcmp(format, "l") == 0 || strcmp(format, "q") == 0)) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_ValueError, "%s must be a contiguous int64 array", what);
        return -1;
    }
    return 0;
}

/* step_counts(labels, predicted, stops, samples, wrong): for step i, the rows stops[i-1] to
 * stops[i] of labels (class indices below the width) add one to samples[i, label] and, where
 * the prediction differs, to wrong[i, label]; samples and wrong are (steps x width), zeroed by
 * the caller. ValueError for a label outside the width or stops that do not fit. */
static PyObject *step_counts(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *objects[5];
    if (!PyArg_ParseTuple(args, "OOOOO", &objects[0], &objects[1], &objects[2], &objects[3],
                          &objects[4]))
        return NULL;
    static const char *names[5] = {"labels", "predicted", "stops", "samples", "wrong"};
    Py_buffer views[5];
    int held = 0;
    PyObject *result = NULL;
    for (; held < 5; held++)
        if (int64_view(objects[held], &views[held], held >= 3, names[held]) < 0) goto done;
    const int64_t *labels = views[0].buf, *predicted = views[1].buf, *stops = views[2].buf;
    int64_t *samples = views[3].buf, *wrong = views[4].buf;
    Py_ssize_t rows = views[0].len / 8, steps = views[2].len / 8;
    if (views[1].len != views[0].len || views[3].len != views[4].len || steps == 0 ||
        views[3].len / 8 % steps) {
        PyErr_SetString(PyExc_ValueError, "labels, predicted and the count matrices disagree");
        goto done;
    }
    if (stops[steps - 1] != rows) {
        PyErr_SetString(PyExc_ValueError, "the last stop must be the number of labels");
        goto done;
    }
    int64_t width = views[3].len / 8 / steps;
    int64_t row = 0;
    for (Py_ssize_t step = 0; step < steps; step++) {
        int64_t stop = stops[step];
        if (stop < row || stop > rows) {
            PyErr_SetString(PyExc_ValueError, "stops must rise and end within the labels");
            goto done;
        }
        int64_t *step_samples = samples + step * width, *step_wrong = wrong + step * width;
        for (; row < stop; row++) {
            int64_t label = labels[row];
            if (label < 0 || label >= width) {
                PyErr_Format(PyExc_ValueError, "label %lld is outside the width %lld",
                             (long long)label, (long long)width);
                goto done;
            }
            step_samples[label]++;
            step_wrong[label] += predicted[row] != label;
        }
    }
    result = Py_NewRef(Py_None);
done:
    for (int i = 0; i < held; i++) PyBuffer_Release(&views[i]);
    return result;
}

/* -- the module ----------------------------------------------------------------------------- */

static PyMethodDef methods[] = {
    {"scan_event_file", scan_event_file, METH_VARARGS,
     "scan_event_file(buf, step, verify_payload) -> (mode, mode_step, spans) or None.\n\n"
     "mode None: no tensor record. None: not taken on here; the Python parser decides."},
    {"argmax_finite", argmax_finite, METH_VARARGS,
     "argmax_finite(arrays, out) -> bool: row argmax into out; False on a non-finite score."},
    {"step_counts", step_counts, METH_VARARGS,
     "step_counts(labels, predicted, stops, samples, wrong): per-step per-class counts."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "evaluator.compiled._kernels",
    "The compiled kernels of the hot path (see evaluator/compiled/__init__.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__kernels(void) {
    crc_init();
    smdebug_footer = masked_crc((const uint8_t *)"0x12345678", 10);
    static const char *modes[5] = {"GLOBAL", "TRAIN", "EVAL", "PREDICT", "GLOBAL"};
    for (int i = 0; i < 5; i++) {
        MODE_NAMES[i] = PyUnicode_InternFromString(modes[i]);
        if (MODE_NAMES[i] == NULL) return NULL;
    }
    return PyModule_Create(&module_def);
}
