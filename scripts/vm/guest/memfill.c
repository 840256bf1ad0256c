/* memfill MIB [RANDOM]: the swap test's guest program. Allocates MIB MiB, writes every 4 KiB page with content
 * derived from its index (RANDOM bytes, default 2048, pseudo-random, the rest a repeated word, so a compressor
 * can shrink it by about that much but not erase it),
 * reports how much swap is in use, then reads every page back and counts the pages that differ.
 * Output lines "ZT: memfill.KEY=VALUE" for the host test; exit status 0 only when every page matched.
 * MEMFILL_HOLD=FILE in the environment: between the fill and the read-back, wait until FILE exists (the pages
 * stay swapped out while the test does something to the swap device). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096

static uint64_t splitmix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static int random_words = PAGE / 16;

static void fill_page(uint64_t *p, uint64_t index) {
    uint64_t s = splitmix(index);
    for (int i = 0; i < random_words; i++) { /* a pseudo-random stream seeded by the index */
        s = splitmix(s);
        p[i] = s;
    }
    for (int i = random_words; i < PAGE / 8; i++) p[i] = index * 0x0101010101010101ull; /* then one word */
}

static long meminfo_kib(const char *key) {
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    long v = -1;
    size_t k = strlen(key);
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, k) == 0 && line[k] == ':') {
            v = strtol(line + k + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) return 64;
    if (argc == 3) random_words = atoi(argv[2]) / 8;
    if (random_words < 0 || random_words > PAGE / 8) return 64;
    uint64_t pages = (uint64_t)strtoull(argv[1], NULL, 10) * (1024 * 1024 / PAGE);
    uint8_t *mem = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        printf("ZT: memfill.error=mmap\n");
        return 1;
    }
    static uint64_t want[PAGE / 8];
    for (uint64_t i = 0; i < pages; i++) fill_page((uint64_t *)(mem + i * PAGE), i);
    long swap_used = meminfo_kib("SwapTotal") - meminfo_kib("SwapFree");
    printf("ZT: memfill.pages=%llu\nZT: memfill.swap_used_kib_after_fill=%ld\n", (unsigned long long)pages, swap_used);
    fflush(stdout);
    const char *hold = getenv("MEMFILL_HOLD");
    if (hold)
        while (access(hold, F_OK) != 0) sleep(1);
    uint64_t bad = 0;
    for (uint64_t i = 0; i < pages; i++) {
        fill_page(want, i);
        if (memcmp(want, mem + i * PAGE, PAGE) != 0) {
            if (bad < 5) printf("ZT: memfill.bad_page=%llu\n", (unsigned long long)i);
            bad++;
        }
    }
    printf("ZT: memfill.bad_pages=%llu\n", (unsigned long long)bad);
    fflush(stdout);
    munmap(mem, pages * PAGE);
    return bad == 0 ? 0 : 1;
}
