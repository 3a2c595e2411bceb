#!/usr/bin/env bash
# The main job on the bundled sample model: install and build if needed,
# validate the sample, mount it at a temporary mountpoint and show it.
# The mount stays up for you to explore; the last lines say how to unmount.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/stfs ] || scripts/setup.sh build
SAMPLE=$(pwd)/samples/tiny-llama.safetensors
MNT=$(mktemp -d /tmp/stfs-sample.XXXXXX)

build/stfs --check "$SAMPLE"
build/stfs "$SAMPLE" "$MNT"      # returns once the mount answers
echo
echo "\$ mount | grep $MNT"
mount | grep " $MNT "
echo
echo "\$ ls -l $MNT"
ls -l "$MNT"
echo
echo "\$ cat $MNT/__metadata__.json"
cat "$MNT/__metadata__.json"
echo
echo "\$ getfattr -d $MNT/lm_head.weight"
getfattr -d --absolute-names "$MNT/lm_head.weight"
echo "\$ dd if=$MNT/model.norm.weight bs=16 count=1 status=none | od -A d -t f4"
dd if="$MNT/model.norm.weight" bs=16 count=1 status=none | od -A d -t f4
echo
echo "The sample stays mounted at $MNT. To unmount:"
echo "  fusermount3 -u $MNT && rmdir $MNT"
