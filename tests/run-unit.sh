#!/bin/sh
# Runs one unit test program, under valgrind when available: any memory
# error or definite leak fails the test.
if [ -n "$VALGRIND" ] && [ -z "$SMIS_NO_VALGRIND" ]; then
	exec "$VALGRIND" --quiet --error-exitcode=99 --leak-check=full \
		--errors-for-leak-kinds=definite --show-leak-kinds=definite "$@"
fi
exec "$@"
