/* watch PID SECONDS [FILE...]: diagnostics for a stalled guest (attach.sh and swap.sh start it when
 * ZT_WATCH=SECONDS is given). Every SECONDS: /proc/meminfo, each FILE (e.g. /sys/block/nbd0/inflight, and
 * /proc/net/tcp, whose tx_queue:rx_queue say whether NBD bytes wait in the guest), each thread of PID with its
 * kernel stack, and memory pressure, as "W-..." lines.
 * Locked in memory and static, so it keeps printing when the guest is out of memory and nothing else runs;
 * that is how the attach test's deadlock was found (daemon threads in reclaim, in munmap behind mmap_lock). */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
static char buf[65536];
static void dump(const char *path, const char *prefix, int maxlines) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return;
    buf[n] = 0;
    char *save, *line = strtok_r(buf, "\n", &save);
    for (int i = 0; line && i < maxlines; i++, line = strtok_r(NULL, "\n", &save)) printf("%s %s\n", prefix, line);
}
int main(int argc, char **argv) {
    if (argc < 3) return 64;
    mlockall(MCL_CURRENT | MCL_FUTURE);
    int secs = atoi(argv[2]);
    char path[600], prefix[400];
    for (;;) {
        sleep(secs);
        dump("/proc/meminfo", "W-MEM", 20);
        for (int i = 3; i < argc; i++) {
            snprintf(prefix, sizeof prefix, "W-FILE %s", argv[i]);
            dump(argv[i], prefix, 20);
        }
        snprintf(path, sizeof path, "/proc/%s/task", argv[1]);
        DIR *d = opendir(path);
        if (!d) continue;
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            snprintf(path, sizeof path, "/proc/%s/task/%s/comm", argv[1], e->d_name);
            int fd = open(path, O_RDONLY); char comm[64] = {0};
            if (fd >= 0) {
                if (read(fd, comm, sizeof comm - 1) < 0) comm[0] = 0;
                close(fd);
                comm[strcspn(comm, "\n")] = 0;
            }
            snprintf(prefix, sizeof prefix, "W-STK %s/%s", e->d_name, comm);
            snprintf(path, sizeof path, "/proc/%s/task/%s/stack", argv[1], e->d_name);
            dump(path, prefix, 12);
        }
        closedir(d);
        dump("/proc/pressure/memory", "W-PSI", 2);
        fflush(stdout);
    }
}
