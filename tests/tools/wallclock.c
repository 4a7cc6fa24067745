/* A wrong wall clock for the tests' subprocesses, and nothing else (LD_PRELOAD).
 *
 * CLOCK_REALTIME (clock_gettime, gettimeofday, time) reads the real time plus the number
 * of seconds in the file $WALLCLOCK_OFFSET_FILE, read again on every call so that a test
 * moves the clock of a running daemon as `date -s` would. Monotonic and boot clocks and
 * sleeps are untouched: they are what really elapsed. (libfaketime 0.9.10, Debian 12's,
 * breaks Python 3.11's time.sleep when it leaves the monotonic clock alone.)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static long offset_seconds(void)
{
    const char *path = getenv("WALLCLOCK_OFFSET_FILE");
    char text[32];
    ssize_t got;
    int fd;

    if (path == NULL || (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return 0;
    got = read(fd, text, sizeof text - 1);
    close(fd);
    if (got <= 0)
        return 0;
    text[got] = '\0';
    return strtol(text, NULL, 10);
}

static int is_wall(clockid_t clock)
{
    return clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE;
}

int clock_gettime(clockid_t clock, struct timespec *now)
{
    static int (*real)(clockid_t, struct timespec *);
    int result;

    if (real == NULL)
        real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    result = real(clock, now);
    if (result == 0 && is_wall(clock))
        now->tv_sec += offset_seconds();
    return result;
}

int gettimeofday(struct timeval *restrict now, void *restrict zone)
{
    struct timespec spec;

    (void)zone;
    if (clock_gettime(CLOCK_REALTIME, &spec) != 0)
        return -1;
    now->tv_sec = spec.tv_sec;
    now->tv_usec = spec.tv_nsec / 1000;
    return 0;
}

time_t time(time_t *out)
{
    struct timespec spec;

    clock_gettime(CLOCK_REALTIME, &spec);
    if (out != NULL)
        *out = spec.tv_sec;
    return spec.tv_sec;
}
