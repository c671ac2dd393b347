/* Crash-safe file replacement: temp file in the same directory, fsync, rename,
 * fsync the directory. See include/tfm/atomic_file.h. */
#include "tfm/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util/buf.h" /* tfm_strdup */
#include "tfm/base.h"

static void release(tfm_atomic_file *af) {
    free(af->path);
    free(af->tmp_path);
    free(af->target);
    af->path = af->tmp_path = af->target = NULL;
    af->f = NULL;
}

char *tfm_atomic_target(const char *path) {
    char *cur = tfm_strdup(path);
    for (int depth = 0; cur; depth++) {
        struct stat st;
        if (lstat(cur, &st) != 0 || !S_ISLNK(st.st_mode)) return cur;
        if (depth == 40) {
            free(cur);
            errno = ELOOP;
            return NULL;
        }
        size_t cap = (size_t)st.st_size + 1 > 256 ? (size_t)st.st_size + 1 : 256;
        char *link = malloc(cap + 1);
        ssize_t n = link ? readlink(cur, link, cap) : -1;
        if (n < 0 || (size_t)n >= cap) {
            free(link);
            free(cur);
            errno = n < 0 ? errno : ENAMETOOLONG;
            return NULL;
        }
        link[n] = 0;
        const char *slash = strrchr(cur, '/');
        if (link[0] == '/' || !slash) {
            free(cur);
            cur = link;
        } else {
            size_t dir = (size_t)(slash - cur) + 1;
            char *next = malloc(dir + (size_t)n + 1);
            if (next) {
                memcpy(next, cur, dir);
                memcpy(next + dir, link, (size_t)n + 1);
            }
            free(link);
            free(cur);
            cur = next;
        }
    }
    errno = ENOMEM;
    return NULL;
}

int tfm_atomic_open(tfm_atomic_file *af, const char *path) {
    static _Atomic unsigned counter;
    memset(af, 0, sizeof *af);
    if (!path || !path[0]) {
        tfm_set_error("cannot write a file with an empty path");
        return -1;
    }
    af->path = tfm_strdup(path);
    if (!af->path) {
        tfm_set_error("%s: out of memory", path);
        return -1;
    }
    af->target = tfm_atomic_target(path);
    if (!af->target) {
        tfm_set_error("%s: cannot follow the symbolic link: %s", path, strerror(errno));
        release(af);
        return -1;
    }
    struct stat st;
    int exists = stat(af->target, &st) == 0;
    if (exists && S_ISDIR(st.st_mode)) {
        tfm_set_error("%s: is a directory", path);
        release(af);
        return -1;
    }
    if (exists && !S_ISREG(st.st_mode)) {
        /* a device, FIFO or socket: write into it, never replace the node */
        int fd = open(af->target, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || !(af->f = fdopen(fd, "wb"))) {
            int err = errno;
            if (fd >= 0) close(fd);
            tfm_set_error("%s: cannot open for writing: %s", path, strerror(err));
            release(af);
            return -1;
        }
        return 0;
    }
    size_t cap = strlen(af->target) + 64;
    af->tmp_path = malloc(cap);
    if (!af->tmp_path) {
        release(af);
        tfm_set_error("%s: out of memory", path);
        return -1;
    }
    /* O_EXCL with a fresh name per attempt: never reuse or clobber another
     * writer's temporary file. Mode 0666 lets the umask decide, as for any
     * file created by fopen. */
    int fd = -1, err = 0;
    for (int attempt = 0; attempt < 16 && fd < 0; attempt++) {
        snprintf(af->tmp_path, cap, "%s.tmp.%ld.%u", af->target, (long)getpid(), counter++);
        fd = open(af->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        err = errno;
        if (fd < 0 && err != EEXIST) break;
    }
    if (fd < 0) {
        tfm_set_error("%s: cannot create temporary file %s: %s", path, af->tmp_path, strerror(err));
        release(af);
        return -1;
    }
    /* a replaced file keeps its permissions (the umask applies to new ones) */
    if (exists) (void)fchmod(fd, st.st_mode & 07777);
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
/* The directory part of path (malloc'd; NULL when out of memory). */
static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return tfm_format(".");
    if (slash == path) return tfm_format("/");
    return tfm_format("%.*s", (int)(slash - path), path);
}

int tfm_atomic_commit(tfm_atomic_file *af) {
    if (!af->f) {
        tfm_set_error("%s: commit after the file was closed", af->path ? af->path : "?");
        return -1;
    }
    const char *what = NULL;
    int err = 0;
    if (!af->tmp_path) { /* in place: a device or FIFO has nothing to sync or rename */
        if (fflush(af->f) != 0) what = "write failed", err = errno;
        if (fclose(af->f) != 0 && !what) what = "close failed", err = errno;
        af->f = NULL;
        if (what) tfm_set_error("%s: %s: %s", af->path, what, strerror(err));
        release(af);
        return what ? -1 : 0;
    }
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
    if (!what && rename(af->tmp_path, af->target) != 0) what = "rename failed", err = errno;
    if (what) {
        tfm_set_error("%s: %s: %s", af->path, what, strerror(err));
        unlink(af->tmp_path);
        release(af);
        return -1;
    }
    /* The rename is only durable once the directory entry is on disk. Some
     * filesystems refuse fsync on a directory (EINVAL): the data itself is
     * safe by then, so that is not an error. */
    char *dir = dir_of(af->target);
    int dfd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (dfd >= 0) {
        if (fsync(dfd) != 0 && errno != EINVAL && errno != EROFS) {
            err = errno;
            close(dfd);
            tfm_set_error("%s: fsync of directory %s failed: %s", af->path, dir, strerror(err));
            free(dir);
            release(af);
            return -1;
        }
        close(dfd);
    }
    free(dir);
    release(af);
    return 0;
}

int tfm_write_file_atomic(const char *path, const void *data, size_t n) {
    tfm_atomic_file af;
    if (tfm_atomic_open(&af, path)) return -1;
    if (tfm_atomic_write(&af, data, n)) return -1;
    return tfm_atomic_commit(&af);
}
