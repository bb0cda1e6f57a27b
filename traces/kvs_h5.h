/* kvs_h5.h — internal helpers shared by the trace reader, writer and
 * validator (traces/ only; other modules use kvs_trace.h).
 *
 * Contract: every function is safe on malformed files (it checks the class,
 * size and shape of what it reads before reading) and reports problems as a
 * short phrase in a caller-owned buffer; the callers prefix file and object
 * names.  kvs_h5_init() silences HDF5's automatic error-stack printing for
 * the whole process (idempotent); afterwards kvs_h5_last_error() returns the
 * innermost description of the current HDF5 error stack. */
#ifndef KVS_H5_H
#define KVS_H5_H
#include <hdf5.h>
#include <stddef.h>

void kvs_h5_init(void);
/* Innermost message of HDF5's current error stack ("" when none). */
void kvs_h5_last_error(char *buf, size_t n);

/* Attribute readers: 0 ok, 1 absent, -1 present but wrong class / shape /
 * unreadable (a phrase in why).  Ints must have the integer class, floats
 * the float class, strings the string class; all must hold one element. */
int kvs_h5_attr_int(hid_t loc, const char *name, long long *out, char *why, size_t whyn);
int kvs_h5_attr_double(hid_t loc, const char *name, double *out, char *why, size_t whyn);
int kvs_h5_attr_str(hid_t loc, const char *name, char *out, size_t outn, char *why, size_t whyn);

/* Element kinds of the float datasets. */
typedef enum { KVS_H5_BAD = 0, KVS_H5_F16LE, KVS_H5_F16BE, KVS_H5_F32 } kvs_h5_kind;
/* Classifies a dataset type; on KVS_H5_BAD writes a description in why. */
kvs_h5_kind kvs_h5_classify(hid_t type, char *why, size_t whyn);
/* A new IEEE binary16 little-endian file type (caller closes). */
hid_t kvs_h5_f16_type(void);
/* Opens loc/name as a dataset if it is one: returns the id, or -1 with a
 * phrase in why ("missing", "not a dataset", HDF5's message). */
hid_t kvs_h5_open_dset(hid_t loc, const char *name, hid_t dapl, char *why, size_t whyn);
/* Rank and dims (up to 8) of a dataset; -1 on failure. */
int kvs_h5_dims(hid_t dset, hsize_t *dims, int maxrank);
/* "a x b x c" */
void kvs_h5_fmt_dims(char *buf, size_t n, const hsize_t *dims, int rank);
/* Non-finite values found by a read: count, flat index of the first in the
 * selection (row-major), whether that one is a NaN (else +-Inf). */
typedef struct {
    long long count, first;
    int first_nan;
} kvs_h5_nf;
/* Reads a hyperslab (start/count, rank r) of a float dataset into float32,
 * converting float16 with kvs_f16 (file type as memory type, then our own
 * conversion).  With nf non-NULL, NaN/Inf are detected in the same loop
 * as the float16 conversion (float32: one exponent test over the buffer
 * HDF5 just filled) and described in *nf (count 0 when all finite).
 * scratch/scratch_n is a growable buffer owned by the caller (free() it).
 * Returns 0 or -1 with HDF5's message in why. */
int kvs_h5_read_f32(hid_t dset, kvs_h5_kind kind, int r, const hsize_t *start,
                    const hsize_t *count, float *out, void **scratch, size_t *scratch_n,
                    kvs_h5_nf *nf, char *why, size_t whyn);
/* Storage check of a float or integer dataset of element size esize and
 * shape dims (already checked): its data must really be in the file, so
 * that reading it cannot return invented (fill) values or cost more than
 * the file can hold.  Fails (-1, a phrase in why) when no storage was ever
 * allocated (never written: every read would return the fill value), when
 * a chunked dataset has fewer chunks stored than its shape needs
 * (partially written), when its stored bytes exceed what is left of the
 * file (*budget, decremented: pass the file size for the first dataset),
 * when a contiguous block lies past the end of the file, or when the
 * claimed size is more than 1100 times the stored bytes (deflate cannot
 * exceed 1032:1; uncompressed data must be stored in full).  O(number of
 * chunks).  *stored gets the storage size. */
int kvs_h5_check_storage(hid_t dset, const hsize_t *dims, int rank, size_t esize, long long file_bytes,
                         long long *budget, long long *stored, char *why, size_t whyn);
#endif
