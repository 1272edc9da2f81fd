/*
 * config_includes.h - @include targets checked before libconfig reads a
 * configuration (config_includes.c says why).
 */
#ifndef SMISD_CONFIG_INCLUDES_H
#define SMISD_CONFIG_INCLUDES_H

/* Report, as "file:line: ...", every @include in `path` (and in the files
 * it includes) whose target is not a regular file; names are relative to
 * include_dir. Returns the number reported: 0 means libconfig may read it. */
int smisd_config_check_includes(const char *path, const char *include_dir);

#endif
