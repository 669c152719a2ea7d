/* estale_shim.c - an LD_PRELOAD test helper (not a dependency of the library)
 * that makes file-system calls on chosen paths fail with ESTALE, the error an
 * NFS client gets when another client removed the file or directory that a
 * handle refers to (or with another errno: EIO, ENOSPC, for a sick or full disk).
 *
 * The test binary configures it at run time through exported functions, found
 * with dlsym(RTLD_DEFAULT, ...) (absent when the shim is not preloaded):
 *
 *   void estale_shim_configure(const char* match, const char* ops, int count);
 *
 *   match  a substring of the full path; NULL or "" disarms the shim. A path
 *          opened relative to a directory descriptor is matched as the
 *          directory's path + "/" + name, so a path walked one component at
 *          a time matches the same string as one opened in one call
 *   ops    which calls fail, comma-separated:
 *            open    open/openat/openat2 of a matching path
 *            fstat   fstatat of a matching path, fstat of a descriptor opened
 *                    from a matching path
 *            pread   pread of a descriptor opened from a matching path
 *            unlink  unlinkat of a matching path
 *            write   write to a descriptor opened from a matching path
 *   count  how many calls fail before the shim disarms itself (< 0: no limit)
 *
 *   int estale_shim_hits(void);  calls failed since the last configure
 *   void estale_shim_set_errno(int e);
 *          the errno failed calls set from now on (ESTALE until called):
 *          EIO or ENOSPC make the same paths a sick or full local disk
 *
 * With ESTALE_SHIM_NO_OPENAT2=1 in the environment, openat2 fails with ENOSYS
 * (as on kernels before 5.6), so the store's fallback path runs.
 *
 * Everything else is passed to the next definition (libc, or a sanitizer's
 * interceptor). syscall() is wrapped for SYS_openat2 only. */

/* Both the plain and the 64-bit names are defined below, so the headers must
 * not alias one to the other. */
#undef _FILE_OFFSET_BITS
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#define SHIM_EXPORT __attribute__((visibility("default")))
#define MAX_FDS 4096

enum { OP_OPEN = 1, OP_FSTAT = 2, OP_PREAD = 4, OP_UNLINK = 8, OP_WRITE = 16 };

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char match_buf[1024];
static int armed_ops;          /* OP_* bits; 0: disarmed */
static int budget;             /* failures left; < 0: unlimited */
static int hits;
static char* fd_path[MAX_FDS]; /* the path each open descriptor was opened by, when known */
static int no_openat2;
static int fail_errno = ESTALE;

__attribute__((constructor)) static void read_env(void) {
    const char* v = getenv("ESTALE_SHIM_NO_OPENAT2");
    no_openat2 = v != NULL && strcmp(v, "1") == 0;
}

SHIM_EXPORT void estale_shim_configure(const char* match, const char* ops, int count) {
    pthread_mutex_lock(&lock);
    armed_ops = 0;
    match_buf[0] = '\0';
    if (match != NULL && match[0] != '\0' && ops != NULL) {
        strncpy(match_buf, match, sizeof match_buf - 1);
        match_buf[sizeof match_buf - 1] = '\0';
        if (strstr(ops, "open") != NULL) armed_ops |= OP_OPEN;
        if (strstr(ops, "fstat") != NULL) armed_ops |= OP_FSTAT;
        if (strstr(ops, "pread") != NULL) armed_ops |= OP_PREAD;
        if (strstr(ops, "unlink") != NULL) armed_ops |= OP_UNLINK;
        if (strstr(ops, "write") != NULL) armed_ops |= OP_WRITE;
    }
    budget = count;
    hits = 0;
    pthread_mutex_unlock(&lock);
}

SHIM_EXPORT void estale_shim_set_errno(int e) {
    pthread_mutex_lock(&lock);
    fail_errno = e;
    pthread_mutex_unlock(&lock);
}

SHIM_EXPORT int estale_shim_hits(void) {
    pthread_mutex_lock(&lock);
    const int h = hits;
    pthread_mutex_unlock(&lock);
    return h;
}

/* The full path of `name` opened relative to `dirfd`, as far as the shim knows
 * it (from the descriptors it saw opened), into out[size]. */
static void compose(int dirfd, const char* name, char* out, size_t size) {
    out[0] = '\0';
    if (name == NULL) return;
    pthread_mutex_lock(&lock);
    const char* base = name[0] != '/' && dirfd >= 0 && dirfd < MAX_FDS ? fd_path[dirfd] : NULL;
    if (base != NULL) snprintf(out, size, "%s/%s", base, name);
    else snprintf(out, size, "%s", name);
    pthread_mutex_unlock(&lock);
}

/* Whether the shim is armed and `path` contains the match. */
static int path_matches(const char* path) {
    pthread_mutex_lock(&lock);
    const int m = armed_ops != 0 && strstr(path, match_buf) != NULL;
    pthread_mutex_unlock(&lock);
    return m;
}

/* Whether the shim is armed and the descriptor was opened from a matching path. */
static int fd_matches(int fd) {
    if (fd < 0 || fd >= MAX_FDS) return 0;
    pthread_mutex_lock(&lock);
    const int m = armed_ops != 0 && fd_path[fd] != NULL && strstr(fd_path[fd], match_buf) != NULL;
    pthread_mutex_unlock(&lock);
    return m;
}

/* Consumes one failure for `op` when armed; 1: fail this call. */
static int take(int op) {
    int fail = 0;
    pthread_mutex_lock(&lock);
    if ((armed_ops & op) != 0 && budget != 0) {
        fail = 1;
        ++hits;
        if (budget > 0 && --budget == 0) armed_ops = 0;
    }
    pthread_mutex_unlock(&lock);
    return fail;
}

/* Records (or with NULL forgets) the path a descriptor was opened by. */
static void remember(int fd, const char* path) {
    if (fd < 0 || fd >= MAX_FDS) return;
    char* copy = path != NULL ? strdup(path) : NULL;
    pthread_mutex_lock(&lock);
    char* old = fd_path[fd];
    fd_path[fd] = copy;
    pthread_mutex_unlock(&lock);
    free(old);
}

/* The next definition of `name` (libc's, or a sanitizer's interceptor); the
 * memcpy converts dlsym's object pointer to a function pointer without a cast
 * ISO C leaves undefined. */
#define NEXT(name)                                                                                                     \
    __extension__({                                                                                                    \
        __typeof__(&name) next_fn_;                                                                                    \
        void* next_sym_ = dlsym(RTLD_NEXT, #name);                                                                     \
        memcpy(&next_fn_, &next_sym_, sizeof next_fn_);                                                                \
        next_fn_;                                                                                                      \
    })

static int fail_estale(void) {
    pthread_mutex_lock(&lock);
    const int e = fail_errno;
    pthread_mutex_unlock(&lock);
    errno = e;
    return -1;
}

#define MODE_ARG(flags, mode)                                                                                          \
    do {                                                                                                               \
        if (((flags) & O_CREAT) != 0 || ((flags) & O_TMPFILE) == O_TMPFILE) {                                          \
            va_list ap;                                                                                                \
            va_start(ap, flags);                                                                                       \
            (mode) = (mode_t)va_arg(ap, int);                                                                          \
            va_end(ap);                                                                                                \
        }                                                                                                              \
    } while (0)

#define OPEN_BODY(dirfd, path, next_call)                                                                              \
    char full[PATH_MAX];                                                                                               \
    compose((dirfd), (path), full, sizeof full);                                                                       \
    if (path_matches(full) && take(OP_OPEN)) return fail_estale();                                                     \
    const int fd = (next_call);                                                                                        \
    if (fd >= 0) remember(fd, full);                                                                                   \
    return fd

SHIM_EXPORT int openat(int dirfd, const char* path, int flags, ...) {
    mode_t mode = 0;
    MODE_ARG(flags, mode);
    OPEN_BODY(dirfd, path, NEXT(openat)(dirfd, path, flags, mode));
}

SHIM_EXPORT int openat64(int dirfd, const char* path, int flags, ...) {
    mode_t mode = 0;
    MODE_ARG(flags, mode);
    OPEN_BODY(dirfd, path, NEXT(openat64)(dirfd, path, flags, mode));
}

SHIM_EXPORT int open(const char* path, int flags, ...) {
    mode_t mode = 0;
    MODE_ARG(flags, mode);
    OPEN_BODY(AT_FDCWD, path, NEXT(open)(path, flags, mode));
}

SHIM_EXPORT int open64(const char* path, int flags, ...) {
    mode_t mode = 0;
    MODE_ARG(flags, mode);
    OPEN_BODY(AT_FDCWD, path, NEXT(open64)(path, flags, mode));
}

SHIM_EXPORT int close(int fd) {
    remember(fd, NULL);
    return NEXT(close)(fd);
}

#define AT_BODY(op, dirfd, path, next_call)                                                                            \
    char full[PATH_MAX];                                                                                               \
    compose((dirfd), (path), full, sizeof full);                                                                       \
    if (path_matches(full) && take(op)) return fail_estale();                                                          \
    return (next_call)

SHIM_EXPORT int fstatat(int dirfd, const char* path, struct stat* st, int flags) {
    AT_BODY(OP_FSTAT, dirfd, path, NEXT(fstatat)(dirfd, path, st, flags));
}

SHIM_EXPORT int fstatat64(int dirfd, const char* path, struct stat64* st, int flags) {
    AT_BODY(OP_FSTAT, dirfd, path, NEXT(fstatat64)(dirfd, path, st, flags));
}

SHIM_EXPORT int unlinkat(int dirfd, const char* path, int flags) {
    AT_BODY(OP_UNLINK, dirfd, path, NEXT(unlinkat)(dirfd, path, flags));
}

SHIM_EXPORT int fstat(int fd, struct stat* st) {
    if (fd_matches(fd) && take(OP_FSTAT)) return fail_estale();
    return NEXT(fstat)(fd, st);
}

SHIM_EXPORT int fstat64(int fd, struct stat64* st) {
    if (fd_matches(fd) && take(OP_FSTAT)) return fail_estale();
    return NEXT(fstat64)(fd, st);
}

SHIM_EXPORT ssize_t pread(int fd, void* buf, size_t n, off_t at) {
    if (fd_matches(fd) && take(OP_PREAD)) return fail_estale();
    return NEXT(pread)(fd, buf, n, at);
}

SHIM_EXPORT ssize_t pread64(int fd, void* buf, size_t n, off64_t at) {
    if (fd_matches(fd) && take(OP_PREAD)) return fail_estale();
    return NEXT(pread64)(fd, buf, n, at);
}

SHIM_EXPORT ssize_t write(int fd, const void* buf, size_t n) {
    if (fd_matches(fd) && take(OP_WRITE)) return fail_estale();
    return NEXT(write)(fd, buf, n);
}

/* syscall(SYS_openat2, dirfd, path, how, size): the store calls openat2
 * through syscall() (glibc 2.36 has no wrapper). Every other number is passed
 * on with six argument words, as the C ABI of syscall() does. */
SHIM_EXPORT long syscall(long number, ...) {
    va_list ap;
    long a[6];
    int i;
    va_start(ap, number);
    for (i = 0; i < 6; ++i) a[i] = va_arg(ap, long);
    va_end(ap);
#ifdef SYS_openat2
    if (number == SYS_openat2) {
        if (no_openat2) {
            errno = ENOSYS;
            return -1;
        }
        char full[PATH_MAX];
        compose((int)a[0], (const char*)a[1], full, sizeof full);
        if (path_matches(full) && take(OP_OPEN)) return fail_estale();
        const long fd = NEXT(syscall)(number, a[0], a[1], a[2], a[3], a[4], a[5]);
        if (fd >= 0) remember((int)fd, full);
        return fd;
    }
#endif
    return NEXT(syscall)(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}
