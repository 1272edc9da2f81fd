# ringring-sim: loopback simulator of RingRing's Message API (tests, demos,
# benchmarks). Not installed: it is a test tool, run from the build tree.
noinst_PROGRAMS += tools/ringring-sim/ringring-sim
tools_ringring_sim_ringring_sim_SOURCES = \
	tools/ringring-sim/sim.h \
	tools/ringring-sim/main.c \
	tools/ringring-sim/server.c \
	tools/ringring-sim/api.c \
	tools/ringring-sim/control.c \
	tools/ringring-sim/store.c \
	tools/ringring-sim/delay.c \
	tools/ringring-sim/dlr.c \
	tools/ringring-sim/shape.c \
	tools/ringring-sim/util.c \
	tools/common/simbuf.c tools/common/simbuf.h
tools_ringring_sim_ringring_sim_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/tools/common
tools_ringring_sim_ringring_sim_CFLAGS = $(AM_CFLAGS) $(MHD_CFLAGS) $(CURL_CFLAGS) $(JSONC_CFLAGS) \
	$(OPENSSL_CFLAGS)
tools_ringring_sim_ringring_sim_LDFLAGS = $(AM_LDFLAGS) $(AX_PTHREAD_CFLAGS)
# mimalloc first, as for smisd (see configure.ac): at the bench's load glibc's
# malloc and free were about a tenth of the simulator's CPU, and every µs it
# spends there is taken from smisd on the same two CPUs.
tools_ringring_sim_ringring_sim_LDADD = $(MIMALLOC_LIBS) lib/libsmisgsm7.la lib/libsmisjsonreuse.la $(MHD_LIBS) $(CURL_LIBS) $(JSONC_LIBS) \
	$(OPENSSL_LIBS)
