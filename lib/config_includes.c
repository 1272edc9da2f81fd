/*
 * config_includes.c - the files a configuration pulls in with @include,
 * checked before libconfig reads them.
 *
 * libconfig (1.5, Debian 12) reads an @include'd file through its flex
 * scanner, and when that read fails, as it does on a directory, the
 * scanner's fatal-error handler calls exit(): `@include "conf.d"` in a
 * configuration made smisd --check-config exit with "input in flex scanner
 * failed", and a SIGHUP reload of it stop a running smisd. A FIFO or a
 * device would block the reload or never end. So every @include target
 * must be a regular file; anything else is refused with the file and line
 * of the directive, like every configuration error, and the previous
 * generation keeps serving. smisctl, which reads the same files, checks
 * them the same way.
 *
 * The directive is what libconfig's scanner takes: at the start of a line
 * after blanks, `@include`, blanks, then a double-quoted file name, relative
 * to the configuration's folder (the include dir smisd sets) unless it is
 * absolute. Included files are checked in turn, as deep as libconfig
 * nests them. A directive inside a block comment is checked too (libconfig
 * skips it): refusing a commented-out directory is the safe mistake.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config_includes.h"

#define INCLUDE_DEPTH_MAX 10 /* libconfig's own limit */

/* The file name of an @include directive on `line` (len bytes, NULs
 * included), into name: 1 when it is one, -1 when its name does not end
 * on its line, 0 when the line is no directive. The name is what libconfig
 * opens: up to the closing quote, or to a NUL byte before it (libconfig's
 * C string ends there; "" names the include folder itself). */
static int directive(const char *line, size_t len, char *name, size_t size)
{
	const char *p = line, *end = line + len, *q;
	size_t n;

	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	if (end - p < 9 || memcmp(p, "@include", 8) != 0 || (p[8] != ' ' && p[8] != '\t'))
		return 0;
	p += 8;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	if (p == end || *p++ != '"')
		return 0; /* not one libconfig reads as a directive either */
	for (q = p; q < end && *q != '"' && *q != '\n'; q++)
		;
	if (q == end || *q != '"')
		return -1;
	n = strnlen(p, (size_t)(q - p));
	if (n >= size)
		n = size - 1; /* longer than any path: stat() fails, libconfig reports */
	memcpy(name, p, n);
	name[n] = '\0';
	return 1;
}

static int check_file(const char *path, const char *include_dir, int depth, smis_config_report_fn report,
		      void *arg)
{
	FILE *f = fopen(path, "r");
	char *line = NULL, name[1024], target[2048], msg[4096];
	size_t cap = 0;
	ssize_t len;
	int lineno = 0, problems = 0;

	if (!f)
		return 0; /* libconfig reports what it cannot open */
	while ((len = getline(&line, &cap, f)) >= 0) {
		struct stat st;
		int d;

		lineno++;
		d = directive(line, (size_t)len, name, sizeof(name));
		if (d == 0)
			continue;
		if (d < 0) {
			snprintf(msg, sizeof(msg), "%s:%d: @include: the file name must end on its line", path, lineno);
			report(arg, msg);
			problems++;
			continue;
		}
		if (name[0] == '/' || !include_dir)
			snprintf(target, sizeof(target), "%s", name);
		else
			snprintf(target, sizeof(target), "%s/%s", include_dir, name);
		if (stat(target, &st) != 0)
			continue; /* libconfig: "cannot open include file" */
		if (!S_ISREG(st.st_mode)) {
			snprintf(msg, sizeof(msg), "%s:%d: @include \"%s\": not a regular file%s", path, lineno, name,
				 name[0] ? "" : " (an empty name is the configuration's folder)");
			report(arg, msg);
			problems++;
		} else if (depth < INCLUDE_DEPTH_MAX) {
			problems += check_file(target, include_dir, depth + 1, report, arg);
		}
	}
	free(line);
	fclose(f);
	return problems;
}

int smis_config_check_includes(const char *path, const char *include_dir, smis_config_report_fn report, void *arg)
{
	struct stat st;

	/* Only a regular file is read twice: a pipe (--check-config -c
	 * <(...)) must reach libconfig whole. */
	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
		return 0;
	return check_file(path, include_dir, 1, report, arg);
}
