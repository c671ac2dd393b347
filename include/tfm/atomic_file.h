/* tfm/atomic_file.h: crash-safe file replacement, shared by every writer in
 * src/io (safetensors, JSON configs, checkpoints).
 *
 * The data goes to a temporary file in the destination's directory, which is
 * flushed and fsync'ed, then renamed over the destination, and the directory
 * is fsync'ed so the rename itself is durable. A crash at any point leaves
 * either the old file or the complete new one under the final name, never a
 * partial file.
 *
 *     tfm_atomic_file af;
 *     if (tfm_atomic_open(&af, path)) return -1;
 *     if (tfm_atomic_write(&af, buf, n) || tfm_atomic_commit(&af)) return -1;
 *
 * Only regular files are replaced that way. The path is resolved first: a
 * symlink is followed (its target is replaced, the link stays), and a path
 * that exists and is not a regular file (a character or block device, a
 * FIFO, a socket) is written in place, as a shell redirection would, so
 * `-o /dev/null` or `-o >(gzip > x.gz)` work and never turn the node into a
 * regular file. A directory is refused ("<path>: is a directory"). A file
 * replaced keeps its permission bits.
 *
 * tfm_atomic_write and tfm_atomic_commit clean up (close and unlink the
 * temporary file) themselves on failure; call tfm_atomic_abort only to give
 * up on a file for a reason of your own. */
#ifndef TFM_ATOMIC_FILE_H
#define TFM_ATOMIC_FILE_H

#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    FILE *f;        /* buffered stream on the temporary file (NULL when closed) */
    char *path;     /* the destination */
    char *tmp_path; /* "<target>.tmp.<pid>.<n>"; NULL when writing in place */
    char *target;   /* path with its symlinks resolved: what is replaced */
} tfm_atomic_file;

/* Creates the temporary file; error "<path>: cannot create temporary file
 * <tmp>: <reason>" naming the destination. */
int tfm_atomic_open(tfm_atomic_file *af, const char *path);
int tfm_atomic_write(tfm_atomic_file *af, const void *data, size_t n);
/* fflush + fsync + close + rename + fsync(directory). */
int tfm_atomic_commit(tfm_atomic_file *af);
/* Closes and removes the temporary file; the destination is untouched. */
void tfm_atomic_abort(tfm_atomic_file *af);

/* The file a write to path replaces or creates: path with every symlink in
 * its last component followed (a dangling link resolves to where it
 * points); malloc'd, or NULL with errno set (ELOOP after 40 links). */
char *tfm_atomic_target(const char *path);

/* Whole-file convenience: the same steps for one buffer. */
int tfm_write_file_atomic(const char *path, const void *data, size_t n);

#ifdef __cplusplus
}
#endif

#endif
