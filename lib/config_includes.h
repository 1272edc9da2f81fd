/*
 * config_includes.h - @include targets checked before libconfig reads a
 * configuration (config_includes.c says why).
 */
#ifndef SMIS_CONFIG_INCLUDES_H
#define SMIS_CONFIG_INCLUDES_H

/* Called with each problem, a whole "file:line: ..." message. */
typedef void (*smis_config_report_fn)(void *arg, const char *message);

/* Report every @include in `path` (and in the files it includes) whose
 * target is not a regular file or whose name does not end on its line;
 * names are relative to include_dir. Returns the number reported: 0 means
 * libconfig may read the file. */
int smis_config_check_includes(const char *path, const char *include_dir, smis_config_report_fn report,
			       void *arg);

#endif
