/* The C floor: the evaluator's counts with the least work a real reader of a trial must do.
 *
 * For a finished smdebug trial folder: list index/ (every index file names one (step, worker);
 * the JSON is not parsed, the event file's key follows from the file's name), then per (step,
 * worker) in step order open the event file, read its fstat size in one read into a reused
 * (page-aligned) buffer, frame its TFRecord records (u64 length, u32 masked CRC32C of the length: checked; the
 * footer is not, as the evaluator does by default), walk Event(5: summary) -> Summary(1: value)
 * -> Value(1: tag, 8: tensor) -> TensorProto(1: dtype, 2: shape, 4: tensor_content) with bounds
 * checks, take the tensors whose tag contains "labels" and "predictions" (the evaluator's
 * default regexes .*labels and .*predictions, search semantics), argmax each row of the
 * predictions (the first maximum, the first NaN, as numpy) and count per class the samples and
 * the mispredicted ones.
 *
 * It prints one line "BENCH-RESULT {json}" with the fields of bench/floor.py (system "cfloor").
 * busy_s is measured inside, with CLOCK_MONOTONIC, from opening the trial to the counts.
 * Built and run by bench/cfloor.py (gcc -O2); errors go to stderr with exit status 2.
 *
 *     cfloor --trial bench/out/trials/s1000-w1-c10-b256 --classes 10
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define MAX_CLASSES 1000000
#define MAX_DIMS 8
#define STEP_DIGITS 12
#define FOLDER_DIGITS 9
#define STEPS_PER_FOLDER 1000
#define BUFFER_ALIGNMENT 4096

enum { DT_FLOAT = 1, DT_DOUBLE = 2, DT_INT32 = 3, DT_INT64 = 9, DT_HALF = 19 };

static void fail(const char *format, ...) {
    va_list args;
    va_start(args, format);
    fputs("cfloor: ", stderr);
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
    va_end(args);
    exit(2);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* -- CRC32C (Castagnoli), bytewise table, as TFRecord masks it ------------------------------ */

static uint32_t crc_table[256];

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t crc = i;
        for (int bit = 0; bit < 8; bit++) {
            crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
        }
        crc_table[i] = crc;
    }
}

static uint32_t masked_crc32c(const uint8_t *data, size_t length) {
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < length; i++) {
        crc = crc_table[(crc ^ data[i]) & 0xFFu] ^ (crc >> 8);
    }
    crc ^= 0xFFFFFFFFu;
    return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u;
}

/* -- the listing --------------------------------------------------------------------------- */

typedef struct {
    uint64_t step;
    char *name; /* the index file's name: {step:012d}_{worker}.json */
} Part;

typedef struct {
    Part *items;
    size_t count;
    size_t capacity;
} Parts;

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int compare_parts(const void *a, const void *b) {
    return strcmp(((const Part *)a)->name, ((const Part *)b)->name);
}

static int all_digits(const char *text, size_t length) {
    for (size_t i = 0; i < length; i++) {
        if (text[i] < '0' || text[i] > '9') {
            return 0;
        }
    }
    return length > 0;
}

/* The names in a directory but dot files, sorted (the caller frees them and the array). */
static char **sorted_names(int dir_fd, const char *what, size_t *count) {
    DIR *dir = fdopendir(dir_fd);
    if (dir == NULL) {
        fail("cannot list %s: %s", what, strerror(errno));
    }
    size_t capacity = 64, used = 0;
    char **names = malloc(capacity * sizeof *names);
    if (names == NULL) {
        fail("out of memory");
    }
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] == '.') {
            continue;
        }
        if (used == capacity) {
            capacity *= 2;
            names = realloc(names, capacity * sizeof *names);
            if (names == NULL) {
                fail("out of memory");
            }
        }
        names[used] = strdup(entry->d_name);
        if (names[used] == NULL) {
            fail("out of memory");
        }
        used++;
    }
    closedir(dir);
    qsort(names, used, sizeof *names, compare_names);
    *count = used;
    return names;
}

/* The step of an index file name {step:012d}_{worker}.json in folder {step // 1000:09d}, as
 * evaluator/trial/layout.py parses it (the exact round trip); -1 for anything else. */
static int64_t index_step(const char *folder, const char *name) {
    size_t length = strlen(name);
    if (length <= STEP_DIGITS + 1 + 5 || !all_digits(name, STEP_DIGITS) ||
        name[STEP_DIGITS] != '_' || strcmp(name + length - 5, ".json") != 0 ||
        strchr(name, '/') != NULL) {
        return -1;
    }
    int64_t step = 0;
    for (int i = 0; i < STEP_DIGITS; i++) {
        step = step * 10 + (name[i] - '0');
    }
    char expected[32];
    snprintf(expected, sizeof expected, "%09lld", (long long)(step / STEPS_PER_FOLDER));
    return strcmp(expected, folder) == 0 ? step : -1;
}

static void list_parts(int trial_fd, Parts *parts) {
    int index_fd = openat(trial_fd, "index", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (index_fd < 0) {
        fail("no index/ in the trial: %s", strerror(errno));
    }
    size_t folders_count;
    char **folders = sorted_names(index_fd, "index/", &folders_count); /* closes index_fd */
    for (size_t f = 0; f < folders_count; f++) {
        const char *folder = folders[f];
        size_t digits = strlen(folder);
        if (digits < FOLDER_DIGITS || digits > 20 || !all_digits(folder, digits)) {
            free(folders[f]);
            continue;
        }
        char path[64];
        snprintf(path, sizeof path, "index/%s", folder);
        int folder_fd = openat(trial_fd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (folder_fd < 0) {
            fail("cannot open index/%s: %s", folder, strerror(errno));
        }
        size_t names_count;
        char **names = sorted_names(folder_fd, folder, &names_count);
        for (size_t n = 0; n < names_count; n++) {
            int64_t step = index_step(folder, names[n]);
            if (step < 0) {
                free(names[n]);
                continue;
            }
            if (parts->count == parts->capacity) {
                parts->capacity = parts->capacity ? 2 * parts->capacity : 1024;
                parts->items = realloc(parts->items, parts->capacity * sizeof *parts->items);
                if (parts->items == NULL) {
                    fail("out of memory");
                }
            }
            parts->items[parts->count++] = (Part){(uint64_t)step, names[n]};
        }
        free(names);
        free(folders[f]);
    }
    free(folders);
    /* Folder and file names sort in step then worker order already; a sort of sorted runs is
     * cheap and keeps the order right whatever readdir returned. */
    qsort(parts->items, parts->count, sizeof *parts->items, compare_parts);
}

/* -- protobuf wire format ------------------------------------------------------------------ */

typedef struct {
    const uint8_t *pos;
    const uint8_t *end;
} Cursor;

typedef struct {
    uint32_t number;
    uint32_t wire;
    uint64_t value;       /* wire 0 */
    const uint8_t *bytes; /* wire 2 */
    size_t length;        /* wire 2 */
} Field;

static int read_varint(Cursor *cursor, uint64_t *out) {
    uint64_t result = 0;
    for (int shift = 0; shift < 64 && cursor->pos < cursor->end; shift += 7) {
        uint8_t byte = *cursor->pos++;
        result |= (uint64_t)(byte & 0x7Fu) << shift;
        if (byte < 0x80u) {
            *out = result;
            return 1;
        }
    }
    return 0;
}

/* The next field of a message: 1, 0 at its end; a malformed message fails. */
static int next_field(Cursor *cursor, Field *field, const char *where) {
    if (cursor->pos >= cursor->end) {
        return 0;
    }
    uint64_t key;
    if (!read_varint(cursor, &key)) {
        fail("%s: a field key runs past the message", where);
    }
    field->number = (uint32_t)(key >> 3);
    field->wire = (uint32_t)(key & 7u);
    size_t left;
    switch (field->wire) {
    case 0:
        if (!read_varint(cursor, &field->value)) {
            fail("%s: a varint runs past the message", where);
        }
        return 1;
    case 1:
    case 5:
        left = (size_t)(cursor->end - cursor->pos);
        if (left < (field->wire == 1 ? 8u : 4u)) {
            fail("%s: a fixed-size field runs past the message", where);
        }
        cursor->pos += field->wire == 1 ? 8 : 4;
        return 1;
    case 2:
        if (!read_varint(cursor, &field->value)) {
            fail("%s: a length runs past the message", where);
        }
        left = (size_t)(cursor->end - cursor->pos);
        if (field->value > left) {
            fail("%s: a %llu-byte field with %zu bytes left", where,
                 (unsigned long long)field->value, left);
        }
        field->bytes = cursor->pos;
        field->length = (size_t)field->value;
        cursor->pos += field->length;
        return 1;
    default:
        fail("%s: wire type %u", where, field->wire);
    }
    return 0;
}

typedef struct {
    int found;
    uint64_t dtype;
    int dims_count;
    int64_t dims[MAX_DIMS];
    const uint8_t *content;
    size_t length;
} Tensor;

static void parse_shape(const uint8_t *bytes, size_t length, Tensor *tensor, const char *where) {
    Cursor shape = {bytes, bytes + length};
    Field field;
    while (next_field(&shape, &field, where)) {
        if (field.number != 2 || field.wire != 2) {
            continue;
        }
        if (tensor->dims_count == MAX_DIMS) {
            fail("%s: more than %d dimensions", where, MAX_DIMS);
        }
        int64_t size = 0;
        Cursor dim = {field.bytes, field.bytes + field.length};
        Field inner;
        while (next_field(&dim, &inner, where)) {
            if (inner.number == 1 && inner.wire == 0) {
                size = (int64_t)inner.value;
            }
        }
        tensor->dims[tensor->dims_count++] = size;
    }
}

static void parse_tensor(const uint8_t *bytes, size_t length, Tensor *tensor, const char *where) {
    Cursor cursor = {bytes, bytes + length};
    Field field;
    memset(tensor, 0, sizeof *tensor);
    tensor->found = 1;
    while (next_field(&cursor, &field, where)) {
        if (field.number == 1 && field.wire == 0) {
            tensor->dtype = field.value;
        } else if (field.number == 2 && field.wire == 2) {
            parse_shape(field.bytes, field.length, tensor, where);
        } else if (field.number == 4 && field.wire == 2) {
            tensor->content = field.bytes;
            tensor->length = field.length;
        }
    }
}

static int contains(const uint8_t *text, size_t length, const char *word) {
    size_t size = strlen(word);
    for (size_t i = 0; i + size <= length; i++) {
        if (memcmp(text + i, word, size) == 0) {
            return 1;
        }
    }
    return 0;
}

static void take_value(const uint8_t *bytes, size_t length, Tensor *labels, Tensor *predictions,
                       const char *where) {
    static const char reductions[] = "smdebug/reductions/";
    Cursor cursor = {bytes, bytes + length};
    Field field;
    const uint8_t *tag = NULL, *tensor = NULL;
    size_t tag_length = 0, tensor_length = 0;
    while (next_field(&cursor, &field, where)) {
        if (field.number == 1 && field.wire == 2) {
            tag = field.bytes;
            tag_length = field.length;
        } else if (field.number == 8 && field.wire == 2) {
            tensor = field.bytes;
            tensor_length = field.length;
        }
    }
    if (tag == NULL || tensor == NULL ||
        (tag_length >= sizeof reductions - 1 &&
         memcmp(tag, reductions, sizeof reductions - 1) == 0)) {
        return;
    }
    Tensor *into = contains(tag, tag_length, "labels")        ? labels
                   : contains(tag, tag_length, "predictions") ? predictions
                                                              : NULL;
    if (into == NULL) {
        return;
    }
    if (into->found) {
        fail("%s: two tensors named like %.*s", where, (int)tag_length, (const char *)tag);
    }
    parse_tensor(tensor, tensor_length, into, where);
}

static void take_event(const uint8_t *bytes, size_t length, Tensor *labels, Tensor *predictions,
                       const char *where) {
    Cursor event = {bytes, bytes + length};
    Field field;
    while (next_field(&event, &field, where)) {
        if (field.number != 5 || field.wire != 2) {
            continue;
        }
        Cursor summary = {field.bytes, field.bytes + field.length};
        Field value;
        while (next_field(&summary, &value, where)) {
            if (value.number == 1 && value.wire == 2) {
                take_value(value.bytes, value.length, labels, predictions, where);
            }
        }
    }
}

/* -- counting ------------------------------------------------------------------------------ */

static float half_to_float(uint16_t half) {
    uint32_t sign = (uint32_t)(half >> 15) << 31, exponent = (half >> 10) & 0x1Fu,
             mantissa = half & 0x3FFu, bits;
    if (exponent == 0x1F) {
        bits = sign | 0x7F800000u | (mantissa << 13);
    } else if (exponent != 0) {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    } else if (mantissa == 0) {
        bits = sign;
    } else {
        float value = ldexpf((float)mantissa, -24);
        return sign ? -value : value;
    }
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

/* numpy's argmax of one row: the first maximum, or the first NaN if there is one. */
static size_t argmax_f32(const uint8_t *row, size_t count) {
    size_t i;
#if defined(__SSE2__)
    if (count >= 8) {
        /* The row's maximum and whether it holds a NaN, eight lanes at a time (two chains, so
         * that they overlap), then the first element equal to that maximum, four at a time. */
        const float *values = (const float *)(const void *)row;
        __m128 top0 = _mm_loadu_ps(values), top1 = _mm_loadu_ps(values + 4);
        __m128 nan = _mm_or_ps(_mm_cmpunord_ps(top0, top0), _mm_cmpunord_ps(top1, top1));
        for (i = 8; i + 8 <= count; i += 8) {
            __m128 v0 = _mm_loadu_ps(values + i), v1 = _mm_loadu_ps(values + i + 4);
            nan = _mm_or_ps(nan, _mm_or_ps(_mm_cmpunord_ps(v0, v0), _mm_cmpunord_ps(v1, v1)));
            top0 = _mm_max_ps(v0, top0);
            top1 = _mm_max_ps(v1, top1);
        }
        float lanes[4], best;
        _mm_storeu_ps(lanes, _mm_max_ps(top0, top1));
        int has_nan = _mm_movemask_ps(nan) != 0;
        best = lanes[0];
        for (int lane = 1; lane < 4; lane++) {
            best = lanes[lane] > best ? lanes[lane] : best;
        }
        for (; i < count; i++) {
            float v;
            memcpy(&v, row + 4 * i, sizeof v);
            has_nan |= v != v;
            best = v > best ? v : best;
        }
        if (!has_nan) {
            __m128 wanted = _mm_set1_ps(best);
            for (i = 0; i + 4 <= count; i += 4) {
                int equal = _mm_movemask_ps(_mm_cmpeq_ps(_mm_loadu_ps(values + i), wanted));
                if (equal) {
                    return i + (size_t)__builtin_ctz((unsigned)equal);
                }
            }
        }
        for (i = 0; i < count; i++) {
            float v;
            memcpy(&v, row + 4 * i, sizeof v);
            if (has_nan ? v != v : v == best) {
                return i;
            }
        }
        return 0;
    }
#endif
    float best;
    size_t at = 0;
    memcpy(&best, row, sizeof best);
    if (best != best) {
        return 0;
    }
    for (i = 1; i < count; i++) {
        float v;
        memcpy(&v, row + 4 * i, sizeof v);
        if (v != v) {
            return i;
        }
        if (v > best) {
            best = v;
            at = i;
        }
    }
    return at;
}

static size_t argmax_other(const uint8_t *row, size_t count, uint64_t dtype) {
    double best = 0;
    size_t at = 0;
    for (size_t i = 0; i < count; i++) {
        double v;
        if (dtype == DT_DOUBLE) {
            memcpy(&v, row + 8 * i, sizeof v);
        } else {
            uint16_t half;
            memcpy(&half, row + 2 * i, sizeof half);
            v = half_to_float(half);
        }
        if (v != v) {
            return i;
        }
        if (i == 0 || v > best) {
            best = v;
            at = i;
        }
    }
    return at;
}

static size_t elements(const Tensor *tensor, int from, int to, const char *where) {
    size_t count = 1;
    for (int d = from; d < to; d++) {
        if (tensor->dims[d] < 0) {
            fail("%s: a dimension of unknown size", where);
        }
        size_t size = (size_t)tensor->dims[d];
        if (size != 0 && count > SIZE_MAX / size) {
            fail("%s: a shape of more than SIZE_MAX elements", where);
        }
        count *= size;
    }
    return count;
}

typedef struct {
    int64_t classes;
    int64_t *samples;
    int64_t *wrong;
    int64_t rejected; /* labels outside [0, classes) */
} Counts;

static void count_part(const Tensor *labels, const Tensor *predictions, Counts *counts,
                       const char *where) {
    if (!labels->found || !predictions->found) {
        fail("%s: no %s tensor", where, labels->found ? "predictions" : "labels");
    }
    size_t label_size = labels->dtype == DT_INT64   ? 8
                        : labels->dtype == DT_INT32 ? 4
                                                    : 0;
    size_t score_size = predictions->dtype == DT_FLOAT    ? 4
                        : predictions->dtype == DT_DOUBLE ? 8
                        : predictions->dtype == DT_HALF   ? 2
                                                          : 0;
    if (label_size == 0 || score_size == 0) {
        fail("%s: labels of dtype %llu, predictions of dtype %llu", where,
             (unsigned long long)labels->dtype, (unsigned long long)predictions->dtype);
    }
    if (predictions->dims_count < 2) {
        fail("%s: predictions of %d dimensions, (B, C) expected", where,
             predictions->dims_count);
    }
    size_t rows = elements(labels, 0, labels->dims_count, where);
    size_t columns = elements(predictions, predictions->dims_count - 1,
                              predictions->dims_count, where);
    /* Divisions, not products: a shape from the file cannot overflow its way past the checks. */
    size_t scores = predictions->length / score_size;
    if (labels->length % label_size != 0 || labels->length / label_size != rows ||
        elements(predictions, 0, predictions->dims_count - 1, where) != rows || columns == 0 ||
        predictions->length % score_size != 0 || scores % columns != 0 ||
        scores / columns != rows) {
        fail("%s: %zu labels, predictions of %zu bytes: shapes and contents disagree", where,
             rows, predictions->length);
    }
    for (size_t r = 0; r < rows; r++) {
        int64_t label;
        if (label_size == 8) {
            memcpy(&label, labels->content + 8 * r, sizeof label);
        } else {
            int32_t narrow;
            memcpy(&narrow, labels->content + 4 * r, sizeof narrow);
            label = narrow;
        }
        const uint8_t *row = predictions->content + r * columns * score_size;
        size_t predicted = score_size == 4 ? argmax_f32(row, columns)
                                           : argmax_other(row, columns, predictions->dtype);
        if (label < 0 || label >= counts->classes) {
            counts->rejected++;
            continue;
        }
        counts->samples[label]++;
        counts->wrong[label] += (int64_t)predicted != label;
    }
}

/* -- one (step, worker) -------------------------------------------------------------------- */

typedef struct {
    uint8_t *data;
    size_t capacity;
} Buffer;

static void read_part(int trial_fd, const Part *part, Buffer *buffer, Counts *counts) {
    char path[4096];
    size_t stem = strlen(part->name) - 5; /* without ".json" */
    int written = snprintf(path, sizeof path, "events/%.12s/%.*s.tfevents", part->name,
                           (int)stem, part->name);
    if (written < 0 || (size_t)written >= sizeof path) {
        fail("the event file name of %s is too long", part->name);
    }
    int fd = openat(trial_fd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fail("%s: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        fail("%s: %s", path, strerror(errno));
    }
    size_t size = (size_t)st.st_size;
    if (size > buffer->capacity) {
        /* Page-aligned: the kernel copies into a buffer 16 bytes off a cache line (malloc's
         * alignment) about three times slower here, which at 1 MB per file is most of it. */
        size_t grown = size > 2 * buffer->capacity ? size : 2 * buffer->capacity;
        buffer->capacity = (grown + BUFFER_ALIGNMENT - 1) / BUFFER_ALIGNMENT * BUFFER_ALIGNMENT;
        free(buffer->data);
        void *data;
        if (posix_memalign(&data, BUFFER_ALIGNMENT, buffer->capacity) != 0) {
            fail("out of memory");
        }
        buffer->data = data;
    }
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, buffer->data + got, size - got);
        if (n <= 0) {
            fail("%s: %s", path, n < 0 ? strerror(errno) : "shorter than its size");
        }
        got += (size_t)n;
    }
    close(fd);
    Tensor labels = {0}, predictions = {0};
    size_t offset = 0;
    while (offset < size) {
        if (size - offset < 12) {
            fail("%s: a %zu-byte tail, no record header", path, size - offset);
        }
        uint64_t length;
        uint32_t crc;
        memcpy(&length, buffer->data + offset, sizeof length);
        memcpy(&crc, buffer->data + offset + 8, sizeof crc);
        if (masked_crc32c(buffer->data + offset, 8) != crc) {
            fail("%s: the length CRC of the record at %zu is wrong", path, offset);
        }
        if (length > size - offset - 12 || size - offset - 12 - length < 4) {
            fail("%s: the record at %zu is truncated", path, offset);
        }
        take_event(buffer->data + offset + 12, (size_t)length, &labels, &predictions, path);
        offset += 16 + (size_t)length;
    }
    count_part(&labels, &predictions, counts, path);
}

/* -- the result ---------------------------------------------------------------------------- */

/* This program's peak resident set size in MB: VmHWM of /proc/self/status, which exec resets
 * (getrusage's ru_maxrss keeps the forking parent's peak across exec). */
static double peak_rss_mb(void) {
    FILE *status = fopen("/proc/self/status", "r");
    char line[256];
    double kib = -1;
    while (status != NULL && fgets(line, sizeof line, status) != NULL) {
        if (strncmp(line, "VmHWM:", 6) == 0) {
            kib = strtod(line + 6, NULL);
            break;
        }
    }
    if (status != NULL) {
        fclose(status);
    }
    return kib < 0 ? 0 : kib / 1024;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double mean(const double *values, size_t count) {
    double sum = 0;
    for (size_t i = 0; i < count; i++) {
        sum += values[i];
    }
    return sum / (double)count;
}

static void print_json_string(const char *text) {
    putchar('"');
    for (const unsigned char *c = (const unsigned char *)text; *c; c++) {
        if (*c == '"' || *c == '\\') {
            printf("\\%c", *c);
        } else if (*c < 0x20) {
            printf("\\u%04x", *c);
        } else {
            putchar(*c);
        }
    }
    putchar('"');
}

static void print_list(const char *name, const int64_t *values, int64_t count) {
    printf(", \"%s\": [", name);
    for (int64_t c = 0; c < count; c++) {
        printf(c ? ", %lld" : "%lld", (long long)values[c]);
    }
    putchar(']');
}

/* bench.common.per_step_stats: mean, median, p95, first and last 10%, in microseconds. */
static void print_step_stats(const double *durations, size_t count) {
    if (count == 0) {
        return;
    }
    double *sorted = malloc(count * sizeof *sorted);
    if (sorted == NULL) {
        fail("out of memory");
    }
    memcpy(sorted, durations, count * sizeof *sorted);
    qsort(sorted, count, sizeof *sorted, compare_doubles);
    size_t window = count / 10 ? count / 10 : 1;
    double median = count % 2 ? sorted[count / 2]
                              : (sorted[count / 2 - 1] + sorted[count / 2]) / 2;
    size_t p95 = (size_t)ceil(0.95 * (double)count) - 1;
    double first = mean(durations, window), last = mean(durations + count - window, window);
    printf(", \"step_mean_us\": %.1f, \"step_median_us\": %.1f, \"step_p95_us\": %.1f",
           mean(durations, count) * 1e6, median * 1e6,
           sorted[p95 < count - 1 ? p95 : count - 1] * 1e6);
    printf(", \"first10_us\": %.1f, \"last10_us\": %.1f", first * 1e6, last * 1e6);
    if (first > 0) {
        printf(", \"last_over_first\": %.3f", last / first);
    } else {
        printf(", \"last_over_first\": null");
    }
    free(sorted);
}

int main(int argc, char **argv) {
    const char *trial = NULL;
    long long classes = 10;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--trial") == 0) {
            trial = argv[i + 1];
        } else if (strcmp(argv[i], "--classes") == 0) {
            classes = strtoll(argv[i + 1], NULL, 10);
        } else {
            fail("unknown option %s", argv[i]);
        }
    }
    if (trial == NULL || argc % 2 == 0 || classes < 1 || classes > MAX_CLASSES) {
        fail("usage: cfloor --trial FOLDER [--classes N (1 to %d, 10 by default)]", MAX_CLASSES);
    }
    crc_init();
    Counts counts = {classes, calloc((size_t)classes, sizeof(int64_t)),
                     calloc((size_t)classes, sizeof(int64_t)), 0};
    if (counts.samples == NULL || counts.wrong == NULL) {
        fail("out of memory");
    }

    double started = now_s();
    int trial_fd = open(trial, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (trial_fd < 0) {
        fail("%s: %s", trial, strerror(errno));
    }
    Parts parts = {0};
    list_parts(trial_fd, &parts);
    double *per_step = malloc((parts.count ? parts.count : 1) * sizeof *per_step);
    if (per_step == NULL) {
        fail("out of memory");
    }
    size_t steps = 0;
    double step_started = started;
    Buffer buffer = {0};
    for (size_t p = 0; p < parts.count; p++) {
        if (p == 0 || parts.items[p].step != parts.items[p - 1].step) {
            double now = now_s();
            if (p > 0) {
                per_step[steps++] = now - step_started;
                step_started = now;
            }
        }
        read_part(trial_fd, &parts.items[p], &buffer, &counts);
    }
    double total = now_s() - started;
    if (parts.count > 0) {
        per_step[steps++] = started + total - step_started;
    }
    close(trial_fd);

    double rss_mb = peak_rss_mb();
    printf("BENCH-RESULT {\"system\": \"cfloor\", \"mode\": \"replay\", \"trial\": ");
    print_json_string(trial);
    printf(", \"steps\": %zu, \"busy_s\": %.4f", steps, total);
    if (steps) {
        printf(", \"us_per_step\": %.1f", total / (double)steps * 1e6);
    } else {
        printf(", \"us_per_step\": null");
    }
    if (total > 0) {
        printf(", \"steps_per_s\": %.1f", (double)steps / total);
    } else {
        printf(", \"steps_per_s\": null");
    }
    print_list("samples", counts.samples, counts.classes);
    print_list("mispredicted", counts.wrong, counts.classes);
    printf(", \"rejected\": %lld, \"rss_mb\": %.1f", (long long)counts.rejected,
           rss_mb);
    print_step_stats(per_step, steps);
    printf("}\n");
    return fflush(stdout) == 0 ? 0 : 2;
}
