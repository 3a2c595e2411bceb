#!/usr/bin/env python3
"""The layering of docs/ARCHITECTURE.md, as the includes show it.

The link check (CMake's *_layercheck libraries) catches a call into a higher
layer; this catches an include of one, inline code included. It also keeps
fuse_lowlevel.h in the adapter alone. Prints one line per violation and
exits 1 if there is any; ends with "N passed, N failed".
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
ORDER = ["base", "format", "source", "namespace", "mount"]
INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.M)


def layer_of(path):
    rel = path.relative_to(ROOT).parts
    if rel[0] == "src" and len(rel) > 2:
        return rel[1]
    if rel[:2] == ("include", "stfs") and len(rel) > 3:
        return rel[2]
    return None


def main():
    failed = passed = 0
    files = sorted(list((ROOT / "src").rglob("*.[ch]pp")) + list((ROOT / "include").rglob("*.hpp")))
    for f in files:
        layer = layer_of(f)
        text = f.read_text()
        for inc in INCLUDE.findall(text):
            problem = None
            m = re.match(r"stfs/([a-z_]+)/", inc)
            if m and layer and m.group(1) in ORDER and ORDER.index(m.group(1)) > ORDER.index(layer):
                problem = f"{layer} includes the higher layer {m.group(1)}"
            if m is None and inc.startswith("stfs/"):
                problem = "include outside a layer folder"
            if inc.startswith("fuse") and f.name != "fuse_adapter.cpp":
                problem = "libfuse included outside the adapter"
            rel = f.relative_to(ROOT)
            if problem:
                failed += 1
                print(f"FAIL {rel}: #include \"{inc}\": {problem}")
            else:
                passed += 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
