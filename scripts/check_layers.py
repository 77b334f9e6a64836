#!/usr/bin/env python3
"""Holds every #include of the library to the layers' arrows that CMakeLists.txt declares.

A layer (src/X and include/imram/X, built as imram_X; bench/ as imram_bench) may include its own
headers, imram/error.h, and the headers of the layers it links, directly or through them. A
static library does not refuse a symbol of a layer above it at link time, so this is the check
that keeps the layers a ladder. Usage: check_layers.py LAYERS_TXT SOURCE_DIR (LAYERS_TXT is the
build's generated/layers.txt, one "imram_X:imram_Y,imram_Z" line a layer).
"""
import pathlib
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+[<"]([^>"]+)[>"]', re.M)


def read_arrows(path):
    arrows = {}
    for line in pathlib.Path(path).read_text().split():
        name, _, below = line.partition(":")
        arrows[name.removeprefix("imram_")] = [b.removeprefix("imram_") for b in below.split(",") if b]
    return arrows


def reachable(arrows, layer):
    seen, todo = set(), [layer]
    while todo:
        for below in arrows.get(todo.pop(), []):
            if below not in seen:
                seen.add(below)
                todo.append(below)
    return seen


def layer_files(root, layer):
    folders = [root / "bench"] if layer == "bench" else [root / "src" / layer, root / "include" / "imram" / layer]
    for folder in folders:
        if folder.is_dir():
            yield from sorted(p for p in folder.rglob("*") if p.suffix in (".h", ".cpp"))


def main():
    arrows = read_arrows(sys.argv[1])
    root = pathlib.Path(sys.argv[2])
    problems = []
    for layer in sorted(arrows):
        allowed = reachable(arrows, layer) | {layer}
        for path in layer_files(root, layer):
            for header in INCLUDE.findall(path.read_text(errors="replace")):
                if header.startswith("../"):
                    problems.append(f"{path.relative_to(root)}: includes {header} by a relative path out of its folder")
                parts = header.split("/")
                if parts[0] != "imram" or len(parts) < 3:
                    continue
                if parts[1] not in allowed:
                    problems.append(f"{path.relative_to(root)}: includes {header}, but imram_{layer} does not link "
                                    f"imram_{parts[1]} (its layers: {', '.join(sorted(allowed))})")
    folders = {p.name for p in (root / "src").iterdir() if p.is_dir()} | {
        p.name for p in (root / "include" / "imram").iterdir() if p.is_dir()}
    for folder in sorted(folders - set(arrows)):
        problems.append(f"src/{folder} or include/imram/{folder}: a folder that no layer of CMakeLists.txt builds")
    for problem in problems:
        print(problem)
    print(f"{len(arrows)} layers, {len(problems)} include(s) against their arrows")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
