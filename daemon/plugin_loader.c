/*
 * plugin_loader.c - RTLD_NOW | RTLD_LOCAL: a plugin with an unresolved
 * symbol fails here, at load, not in the middle of a message; and plugins
 * cannot see each other's or the daemon's symbols.
 */
#include "config.h"

#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "plugin_loader.h"

static int valid_name(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > 64)
		return 0;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
			return 0;
	return 1;
}

/* Last member a plugin built against ABI 1 must provide, per ops struct. */
#define CHANNEL_OPS_MIN (offsetof(struct smis_channel_ops, resume) + sizeof(void *))
#define STRATEGY_OPS_MIN (offsetof(struct smis_strategy_ops, decide) + sizeof(void *))
#define DESC_MIN (offsetof(struct smis_plugin_descriptor, strategy) + sizeof(void *))

int smisd_plugin_check_descriptor(const struct smis_plugin_descriptor *d,
				  const char *name, enum smis_plugin_kind want_kind,
				  char *err, size_t errlen)
{
	const char *missing = NULL;

	if (d->abi_version != SMIS_PLUGIN_ABI_VERSION) {
		snprintf(err, errlen, "ABI version %u, this smisd speaks %u", d->abi_version,
			 SMIS_PLUGIN_ABI_VERSION);
		return -1;
	}
	if (d->size < DESC_MIN) {
		snprintf(err, errlen, "descriptor too small (%zu bytes)", d->size);
		return -1;
	}
	if (!d->name || strcmp(d->name, name) != 0) {
		snprintf(err, errlen, "descriptor name '%s' differs from file name '%s'",
			 d->name ? d->name : "(null)", name);
		return -1;
	}
	if (d->kind != want_kind) {
		snprintf(err, errlen, "is a %s plugin, a %s plugin was expected",
			 d->kind == SMIS_PLUGIN_CHANNEL ? "channel" :
			 d->kind == SMIS_PLUGIN_STRATEGY ? "strategy" : "unknown-kind",
			 want_kind == SMIS_PLUGIN_CHANNEL ? "channel" : "strategy");
		return -1;
	}
	if (d->kind == SMIS_PLUGIN_CHANNEL) {
		const struct smis_channel_ops *o = d->channel;
		if (!o)
			missing = "channel ops";
		else if (o->size < CHANNEL_OPS_MIN)
			missing = "channel ops (struct too small)";
		else if (!o->create)
			missing = "create";
		else if (!o->destroy)
			missing = "destroy";
		else if (!o->start)
			missing = "start";
		else if (!o->resume)
			missing = "resume";
	} else {
		const struct smis_strategy_ops *o = d->strategy;
		if (!o)
			missing = "strategy ops";
		else if (o->size < STRATEGY_OPS_MIN)
			missing = "strategy ops (struct too small)";
		else if (!o->create)
			missing = "create";
		else if (!o->destroy)
			missing = "destroy";
		else if (!o->decide)
			missing = "decide";
	}
	if (missing) {
		snprintf(err, errlen, "missing mandatory op '%s'", missing);
		return -1;
	}
	return 0;
}

struct smisd_plugin *smisd_plugin_load(const char *dir, const char *name,
				       enum smis_plugin_kind want_kind,
				       char *err, size_t errlen)
{
	struct smisd_plugin *p = NULL;
	char path[4096];
	char why[512];
	struct stat st;

	if (!valid_name(name)) {
		snprintf(err, errlen, "invalid plugin name '%s' (use [a-z0-9_-])", name);
		goto out;
	}
	snprintf(path, sizeof(path), "%s/%s.so", dir, name);
	p = calloc(1, sizeof(*p));
	if (!p)
		goto out_oom;
	p->name = strdup(name);
	p->path = strdup(path);
	if (!p->name || !p->path)
		goto out_oom;
	if (stat(path, &st) == 0) {
		p->file_dev = st.st_dev;
		p->file_ino = st.st_ino;
		p->file_mtime = st.st_mtim;
	}
	p->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!p->handle) {
		snprintf(err, errlen, "%s: cannot load: %s", path, dlerror());
		goto out_free;
	}
	p->desc = dlsym(p->handle, SMIS_PLUGIN_SYMBOL);
	if (!p->desc) {
		snprintf(err, errlen, "%s: no '%s' symbol exported", path, SMIS_PLUGIN_SYMBOL);
		goto out_free;
	}
	if (smisd_plugin_check_descriptor(p->desc, name, want_kind, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "%s: refused: %s", path, why);
		goto out_free;
	}
	return p;

out_oom:
	snprintf(err, errlen, "out of memory loading plugin '%s'", name);
out_free:
	smisd_plugin_free(p);
	p = NULL;
out:
	return p;
}

int smisd_plugin_inherit(struct smisd_plugin *p, const struct smisd_plugin *running)
{
	int changed;

	if (p->handle != running->handle)
		return 0;
	changed = p->file_dev != running->file_dev || p->file_ino != running->file_ino ||
		  p->file_mtime.tv_sec != running->file_mtime.tv_sec ||
		  p->file_mtime.tv_nsec != running->file_mtime.tv_nsec;
	/* So that the next reload compares with the loaded file too. */
	p->file_dev = running->file_dev;
	p->file_ino = running->file_ino;
	p->file_mtime = running->file_mtime;
	return changed;
}

void smisd_plugin_free(struct smisd_plugin *p)
{
	if (!p)
		return;
	if (p->handle)
		dlclose(p->handle);
	free(p->name);
	free(p->path);
	free(p);
}
