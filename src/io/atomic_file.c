/* Crash-safe file replacement: temp file in the same directory, fsync, rename,
 * fsync the directory. See include/tfm/atomic_file.h. */
#include "tfm/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tfm/base.h"

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static void release(tfm_atomic_file *af) {
    free(af->path);
    free(af->tmp_path);
    af->path = af->tmp_path = NULL;
    af->f = NULL;
}

int tfm_atomic_open(tfm_atomic_file *af, const char *path) {
    static _Atomic unsigned counter;
    memset(af, 0, sizeof *af);
    if (!path || !path[0]) {
        tfm_set_error("cannot write a file with an empty path");
        return -1;
    }
    size_t cap = strlen(path) + 64;
    af->path = dup_str(path);
    af->tmp_path = malloc(cap);
    if (!af->path || !af->tmp_path) {
        release(af);
        tfm_set_error("%s: out of memory", path);
        return -1;
    }
    /* O_EXCL with a fresh name per attempt: never reuse or clobber another
     * writer's temporary file. Mode 0666 lets the umask decide, as for any
     * file created by fopen. */
    int fd = -1, err = 0;
    for (int attempt = 0; attempt < 16 && fd < 0; attempt++) {
        snprintf(af->tmp_path, cap, "%s.tmp.%ld.%u", path, (long)getpid(), counter++);
        fd = open(af->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        err = errno;
        if (fd < 0 && err != EEXIST) break;
    }
    if (fd < 0) {
        tfm_set_error("%s: cannot create temporary file %s: %s", path, af->tmp_path, strerror(err));
        release(af);
        return -1;
    }
    af->f = fdopen(fd, "wb");
    if (!af->f) {
        err = errno;
        close(fd);
        unlink(af->tmp_path);
        tfm_set_error("%s: cannot open temporary file: %s", path, strerror(err));
        release(af);
        return -1;
    }
    return 0;
}

void tfm_atomic_abort(tfm_atomic_file *af) {
    if (af->f) fclose(af->f);
    if (af->tmp_path) unlink(af->tmp_path);
    release(af);
}

int tfm_atomic_write(tfm_atomic_file *af, const void *data, size_t n) {
    if (!af->f) {
        tfm_set_error("%s: write after the file was closed", af->path ? af->path : "?");
        return -1;
    }
    if (n && fwrite(data, 1, n, af->f) != n) {
        int err = errno;
        tfm_set_error("%s: write failed: %s", af->path, strerror(err));
        tfm_atomic_abort(af);
        return -1;
    }
    return 0;
}

/* The directory part of path ("." when there is none). */
static void dir_of(const char *path, char *dir, size_t cap) {
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(dir, cap, ".");
    } else if (slash == path) {
        snprintf(dir, cap, "/");
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= cap) n = cap - 1;
        memcpy(dir, path, n);
        dir[n] = 0;
    }
}

int tfm_atomic_commit(tfm_atomic_file *af) {
    if (!af->f) {
        tfm_set_error("%s: commit after the file was closed", af->path ? af->path : "?");
        return -1;
    }
    const char *what = NULL;
    int err = 0;
    if (fflush(af->f) != 0)
        what = "write failed", err = errno;
    else if (fsync(fileno(af->f)) != 0)
        what = "fsync failed", err = errno;
    int close_rc = fclose(af->f);
    af->f = NULL;
    if (!what && close_rc != 0) what = "close failed", err = errno;
    /* Test hook: TFM_TEST_SLOW_CHECKPOINT=<ms> waits between the complete
     * temporary file of a checkpoint (*.tfm) and the rename, so tests can
     * SIGKILL a run mid-write (tests/test_resume.c, tests/kill_resume.sh). */
    const char *slow = getenv("TFM_TEST_SLOW_CHECKPOINT");
    size_t plen = strlen(af->path);
    if (!what && slow && atoi(slow) > 0 && plen > 4 && !strcmp(af->path + plen - 4, ".tfm"))
        usleep((useconds_t)atoi(slow) * 1000u);
    if (!what && rename(af->tmp_path, af->path) != 0) what = "rename failed", err = errno;
    if (what) {
        tfm_set_error("%s: %s: %s", af->path, what, strerror(err));
        unlink(af->tmp_path);
        release(af);
        return -1;
    }
    /* The rename is only durable once the directory entry is on disk. Some
     * filesystems refuse fsync on a directory (EINVAL): the data itself is
     * safe by then, so that is not an error. */
    char dir[4096];
    dir_of(af->path, dir, sizeof dir);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        if (fsync(dfd) != 0 && errno != EINVAL && errno != EROFS) {
            err = errno;
            close(dfd);
            tfm_set_error("%s: fsync of directory %s failed: %s", af->path, dir, strerror(err));
            release(af);
            return -1;
        }
        close(dfd);
    }
    release(af);
    return 0;
}

int tfm_write_file_atomic(const char *path, const void *data, size_t n) {
    tfm_atomic_file af;
    if (tfm_atomic_open(&af, path)) return -1;
    if (tfm_atomic_write(&af, data, n)) return -1;
    return tfm_atomic_commit(&af);
}
