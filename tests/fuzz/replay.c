/*
 * replay.c - the main() of a fuzz target when it is not built with libFuzzer.
 *
 * Every target in tests/fuzz/ defines LLVMFuzzerTestOneInput() only. Built
 * with `--enable-fuzzing` (clang), libFuzzer supplies main() and explores;
 * otherwise this file does, and `make check` runs the target once over each
 * file of its committed corpus (tests/fuzz/corpus/NAME/: seeds and every
 * input a fuzzing run ever found to crash, leak or break a property). So a
 * bug found once stays fixed under gcc, valgrind and the sanitizer build,
 * on machines without clang.
 *
 * Each input is read into a buffer of exactly its size, so that reading one
 * byte past it is caught by AddressSanitizer or valgrind, as under libFuzzer.
 *
 * Usage: fuzz_NAME [FILE|DIR]...   (no argument: FUZZ_CORPUS_ROOT/NAME, the
 * name taken from the program's own, so that one replay library serves all)
 */
#include <dirent.h>
#include <libgen.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fileno(f), &st) != 0 || st.st_size < 0) {
		fclose(f);
		return -1;
	}
	size_t n = (size_t)st.st_size;
	/* malloc(0) may return NULL; a one-byte buffer still lets a target
	 * that reads data[0] of an empty input be caught. */
	uint8_t *buf = malloc(n ? n : 1);
	if (!buf || fread(buf, 1, n, f) != n) {
		fprintf(stderr, "replay: %s: short read\n", path);
		free(buf);
		fclose(f);
		return -1;
	}
	fclose(f);
	LLVMFuzzerTestOneInput(buf, n);
	free(buf);
	return 0;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every regular file of `dir`, in name order (reproducible logs).
 * Returns the number run, or -1. */
static long run_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d) {
		fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			char **grown = realloc(names, cap * sizeof(*names));
			if (!grown)
				break;
			names = grown;
		}
		names[n++] = strdup(e->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(*names), name_cmp);
	long ran = 0;
	for (size_t i = 0; i < n; i++) {
		char path[4096];
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			if (run_file(path) != 0)
				ran = -1;
			else if (ran >= 0)
				ran++;
		}
		free(names[i]);
	}
	free(names);
	return ran;
}

int main(int argc, char **argv)
{
	if (LLVMFuzzerInitialize)
		LLVMFuzzerInitialize(&argc, &argv);
	const char *const *paths = (const char *const *)argv + 1;
	int n = argc - 1;
	char corpus[4096];
	const char *def[1] = { corpus };
	if (n == 0) {
		char self[4096];
		snprintf(self, sizeof(self), "%s", argv[0]);
		const char *name = basename(self);
		if (strncmp(name, "lt-", 3) == 0) /* a libtool wrapper's binary */
			name += 3;
		if (strncmp(name, "fuzz_", 5) == 0)
			name += 5;
		snprintf(corpus, sizeof(corpus), "%s/%s", FUZZ_CORPUS_ROOT, name);
		paths = def;
		n = 1;
	}
	long total = 0;
	for (int i = 0; i < n; i++) {
		struct stat st;
		long ran;
		if (stat(paths[i], &st) == 0 && S_ISDIR(st.st_mode))
			ran = run_dir(paths[i]);
		else
			ran = run_file(paths[i]) == 0 ? 1 : -1;
		if (ran < 0)
			return 1;
		total += ran;
	}
	/* An empty corpus would make this test pass without testing anything. */
	if (total == 0) {
		fprintf(stderr, "replay: no input found\n");
		return 1;
	}
	printf("replay: %ld inputs, no crash\n", total);
	return 0;
}
