#!/bin/sh
# The licensing the repository claims (LICENSE) is the one its BPF sources declare: every
# bpf/ source says (GPL-2.0-only OR BSD-2-Clause) in its SPDX line, every program tells
# the kernel "Dual BSD/GPL", and both license texts ship.
set -eu
src=${1:?source dir}
fail=0
for f in "$src"/LICENSE "$src"/LICENSES/BSD-2-Clause.txt "$src"/LICENSES/GPL-2.0-only.txt; do
  [ -s "$f" ] || { echo "missing: $f"; fail=1; }
done
for f in "$src"/bpf/*.c "$src"/bpf/*.h; do
  head -1 "$f" | grep -q 'SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)' ||
    { echo "$f: SPDX line is not (GPL-2.0-only OR BSD-2-Clause)"; fail=1; }
done
for f in "$src"/bpf/*.bpf.c; do
  grep -q 'SEC("license") = "Dual BSD/GPL"' "$f" || { echo "$f: license section is not \"Dual BSD/GPL\""; fail=1; }
done
grep -q 'GPL-2.0-only OR BSD-2-Clause' "$src/LICENSE" || { echo "LICENSE does not name the BPF dual license"; fail=1; }
[ $fail = 0 ] && echo "licensing consistent"
exit $fail
