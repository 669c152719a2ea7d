/* estale_shim.c - an LD_PRELOAD test helper (not a dependency of the library)
 * that makes file-system calls on chosen paths fail with ESTALE, the error an
 * NFS client gets when another client removed the file or directory that a
 * handle refers to.
 *
 * The test binary configures it at run time through one exported function,
 * found with dlsym(RTLD_DEFAULT, "estale_shim_configure") (absent when the
 * shim is not preloaded):
 *
 *   void estale_shim_configure(const char* match, const char* ops, int count);
 *
 *   match  a substring of the path argument; NULL or "" disarms the shim
 *   ops    which calls fail, comma-separated:
 *            open    openat/openat2/open of a matching path
 *            fstat   fstatat of a matching path, fstat of a descriptor opened
 *                    from a matching path
 *            pread   pread of a descriptor opened from a matching path
 *            unlink  unlinkat of a matching path
 *   count  how many calls fail before the shim disarms itself (< 0: no limit)
 *
 *   int estale_shim_hits(void);  calls failed since the last configure
 *
 * With ESTALE_SHIM_NO_OPENAT2=1 in the environment, openat2 fails with ENOSYS
 * (as on kernels before 5.6), so the store's fallback path runs.
 *
 * Everything else is passed to the next definition (libc, or a sanitizer's
 * interceptor). syscall() is wrapped for SYS_openat2 only. */
/* Both the plain and the 64-bit names are defined below, so the header must not
 * alias one to the other. */
#undef _FILE_OFFSET_BITS
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#define SHIM_EXPORT __attribute__((visibility("default")))
#define MAX_FDS 4096

enum { OP_OPEN = 1, OP_FSTAT = 2, OP_PREAD = 4, OP_UNLINK = 8 };

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char match_buf[1024];
static int armed_ops;     /* OP_* bits; 0: disarmed */
static int budget;        /* failures left; < 0: unlimited */
static int hits;
static unsigned char tainted[MAX_FDS]; /* descriptors opened from a matching path */
static int no_openat2;

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
    }
    budget = count;
    hits = 0;
    memset(tainted, 0, sizeof tainted);
    pthread_mutex_unlock(&lock);
}

SHIM_EXPORT int estale_shim_hits(void) {
    pthread_mutex_lock(&lock);
    const int h = hits;
    pthread_mutex_unlock(&lock);
    return h;
}

/* Whether the path matches (for taint tracking, regardless of op). */
static int path_matches(const char* path) {
    int m;
    pthread_mutex_lock(&lock);
    m = armed_ops != 0 && path != NULL && strstr(path, match_buf) != NULL;
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

static int fd_tainted(int fd) {
    int t;
    if (fd < 0 || fd >= MAX_FDS) return 0;
    pthread_mutex_lock(&lock);
    t = tainted[fd];
    pthread_mutex_unlock(&lock);
    return t;
}

static void set_taint(int fd, int on) {
    if (fd < 0 || fd >= MAX_FDS) return;
    pthread_mutex_lock(&lock);
    tainted[fd] = (unsigned char)on;
    pthread_mutex_unlock(&lock);
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

static int after_open(int fd, const char* path) {
    if (fd >= 0) set_taint(fd, path_matches(path));
    return fd;
}

static int fail_estale(void) {
    errno = ESTALE;
    return -1;
}

SHIM_EXPORT int openat(int dirfd, const char* path, int flags, ...) {
    mode_t mode = 0;
    if ((flags & O_CREAT) != 0 || (flags & O_TMPFILE) == O_TMPFILE) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    if (path_matches(path) && take(OP_OPEN)) return fail_estale();
    return after_open(NEXT(openat)(dirfd, path, flags, mode), path);
}

SHIM_EXPORT int openat64(int dirfd, const char* path, int flags, ...) {
    mode_t mode = 0;
    if ((flags & O_CREAT) != 0 || (flags & O_TMPFILE) == O_TMPFILE) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    if (path_matches(path) && take(OP_OPEN)) return fail_estale();
    return after_open(NEXT(openat64)(dirfd, path, flags, mode), path);
}

SHIM_EXPORT int close(int fd) {
    set_taint(fd, 0);
    return NEXT(close)(fd);
}

SHIM_EXPORT int fstatat(int dirfd, const char* path, struct stat* st, int flags) {
    if (path_matches(path) && take(OP_FSTAT)) return fail_estale();
    return NEXT(fstatat)(dirfd, path, st, flags);
}

SHIM_EXPORT int fstatat64(int dirfd, const char* path, struct stat64* st, int flags) {
    if (path_matches(path) && take(OP_FSTAT)) return fail_estale();
    return NEXT(fstatat64)(dirfd, path, st, flags);
}

SHIM_EXPORT int fstat(int fd, struct stat* st) {
    if (fd_tainted(fd) && take(OP_FSTAT)) return fail_estale();
    return NEXT(fstat)(fd, st);
}

SHIM_EXPORT int fstat64(int fd, struct stat64* st) {
    if (fd_tainted(fd) && take(OP_FSTAT)) return fail_estale();
    return NEXT(fstat64)(fd, st);
}

SHIM_EXPORT ssize_t pread(int fd, void* buf, size_t n, off_t at) {
    if (fd_tainted(fd) && take(OP_PREAD)) return fail_estale();
    return NEXT(pread)(fd, buf, n, at);
}

SHIM_EXPORT ssize_t pread64(int fd, void* buf, size_t n, off64_t at) {
    if (fd_tainted(fd) && take(OP_PREAD)) return fail_estale();
    return NEXT(pread64)(fd, buf, n, at);
}

SHIM_EXPORT int unlinkat(int dirfd, const char* path, int flags) {
    if (path_matches(path) && take(OP_UNLINK)) return fail_estale();
    return NEXT(unlinkat)(dirfd, path, flags);
}

/* syscall(SYS_openat2, dirfd, path, how, size): the store calls openat2
 * through syscall() (glibc 2.36 has no wrapper). Every other number is passed
 * through with six argument registers, as the C ABI of syscall() does. */
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
        const char* path = (const char*)a[1];
        if (path_matches(path) && take(OP_OPEN)) return fail_estale();
        long fd = NEXT(syscall)(number, a[0], a[1], a[2], a[3], a[4], a[5]);
        if (fd >= 0) set_taint((int)fd, path_matches(path));
        return fd;
    }
#endif
    return NEXT(syscall)(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}
