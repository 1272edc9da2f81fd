/*
 * plugin_loader.h - dlopen a plugin file and check its descriptor.
 */
#ifndef SMISD_PLUGIN_LOADER_H
#define SMISD_PLUGIN_LOADER_H

#include <sys/types.h>
#include <time.h>

#include <smis/smis-plugin.h>

struct smisd_plugin {
	char *name;   /* "ringring" */
	char *path;   /* "/usr/lib/.../plugins/ringring.so" */
	void *handle; /* dlopen handle */
	const struct smis_plugin_descriptor *desc;
	/* The file its code was read from, as stat() found it then (zero if
	 * it could not): see smisd_plugin_inherit(). */
	dev_t file_dev;
	ino_t file_ino;
	struct timespec file_mtime;
};

/*
 * Load `<dir>/<name>.so` and validate its descriptor: ABI version, size,
 * kind (must equal `want_kind`), name, mandatory ops. On failure returns
 * NULL and writes a message naming the file into err.
 */
struct smisd_plugin *smisd_plugin_load(const char *dir, const char *name,
				       enum smis_plugin_kind want_kind,
				       char *err, size_t errlen);
/* Validate a descriptor already in memory (also used by the unit tests). */
int smisd_plugin_check_descriptor(const struct smis_plugin_descriptor *d,
				  const char *name, enum smis_plugin_kind want_kind,
				  char *err, size_t errlen);
void smisd_plugin_free(struct smisd_plugin *p);

/*
 * dlopen() of a path already loaded returns the copy in memory, whatever
 * the file there is now: a reload cannot load a rebuilt plugin. When `p`
 * (of a new generation) is the very copy `running` had loaded, `p` takes
 * the identity of the file that copy was read from, and 1 is returned if
 * the file at its path is no longer that one (rebuilt, replaced, removed).
 */
int smisd_plugin_inherit(struct smisd_plugin *p, const struct smisd_plugin *running);

#endif
