#!/bin/sh
# check_install.sh BUILD_DIR SOURCE_DIR [MPIEXEC] - install into a scratch
# prefix and link a small program three ways: pkg-config (shared),
# pkg-config --static, and CMake's find_package. Each program must run and
# print the version. With MPIEXEC (the MPI the build found), the MPI example
# is linked with futureproof-mpi's pkg-config file and run with 3 ranks.
set -eu
build=$1
src=$2
mpiexec=${3:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
libdir=$(ls -d "$tmp/prefix"/lib* | head -n 1)
export PKG_CONFIG_PATH="$libdir/pkgconfig"
cc=${CC:-cc}

# shellcheck disable=SC2046
$cc -std=c11 -o "$tmp/shared" "$src/tests/install/consumer.c" $(pkg-config --cflags --libs futureproof)
LD_LIBRARY_PATH="$libdir" "$tmp/shared" | grep -q "^futureproof $(pkg-config --modversion futureproof)$"
readelf -d "$tmp/shared" | grep -q 'libfutureproof.so.0'

# shellcheck disable=SC2046
$cc -std=c11 -o "$tmp/static" "$src/tests/install/consumer.c" -static-pie 2>/dev/null \
  $(pkg-config --cflags --libs --static futureproof) ||
  $cc -std=c11 -o "$tmp/static" "$src/tests/install/consumer.c" \
    "$libdir/libfutureproof.a" $(pkg-config --cflags --libs-only-other --static futureproof) -lm
"$tmp/static" | grep -q "^futureproof "

# fprun and its man page.
"$tmp/prefix/bin/fprun" --version | grep -q "^fprun "
test -f "$tmp/prefix/share/man/man1/fprun.1"

# An executor built outside the library, against the installed headers only.
# shellcheck disable=SC2046
$cc -std=c11 -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L -o "$tmp/serial" \
  "$src/examples/serial/example_serial.c" "$src/examples/serial/serial_executor.c" \
  $(pkg-config --cflags --libs futureproof)
LD_LIBRARY_PATH="$libdir" "$tmp/serial" | grep -q "^task manager: EDOM"

# futureproof-mpi, where it was built: linked with its pkg-config file and
# run under mpirun with 3 ranks.
if [ -n "$mpiexec" ] && pkg-config --exists futureproof-mpi; then
  # shellcheck disable=SC2046
  $cc -std=c11 -o "$tmp/mpi" "$src/examples/example_mpi.c" $(pkg-config --cflags --libs futureproof-mpi)
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 \
    LD_LIBRARY_PATH="$libdir" "$mpiexec" -n 3 "$tmp/mpi" | grep -q "^  2 worker ranks .* 37 primes"
  mpi="; futureproof-mpi links with pkg-config and runs under mpirun -n 3"
fi

cmake -S "$src/tests/install/cmake_consumer" -B "$tmp/cm" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/cm" >/dev/null
LD_LIBRARY_PATH="$libdir" "$tmp/cm/consumer_shared" | grep -q "^futureproof "
"$tmp/cm/consumer_static" | grep -q "^futureproof "
echo "install: headers, shared and static library, pkg-config and CMake package all work; the serial executor builds on the installed interface${mpi:-}"
