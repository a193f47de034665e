#!/usr/bin/env python3
"""What each feature of the .wasm costs per proxy: builds the module without it, then weighs it.

    bench/variants.py              (make bench-variants)   builds, then runs the memory phase
    bench/variants.py --build-only                         builds target/variants/*.wasm only

Each variant is the checked-out tree (`git archive HEAD`, into target/variants/src-NAME/) with
a feature cut out by a few textual edits, built by scripts/build-wasm.sh exactly as the shipped
module is. The variants are measuring instruments only: they are never shipped and no suite runs
them (a cut-out feature simply stops working). Every edit must find its text exactly once, so a
change to the code it cuts fails here loudly instead of measuring the wrong thing.

  no-regex       the `regex` operator refuses every pattern (regex-lite replaced by a stub)
  routing-only   no-regex, and no ramps, guards or fleet: the reader drops `ramp` and
                 `guards`, the compiler builds no guard, the adapter's tick and call answers
                 return at once. The matcher, the rule index, `oneOf`, the weighted and sticky
                 selection and every validation of those remain.

Then `bench/run.sh --memory-only` weighs C, W, B and each variant at 1 worker, idle and after
load (into target/variants/results/): the "Memory per proxy" section of BENCHMARKS.md quotes it.
"""
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "target", "variants")

REGEX_STUB = {
    "stub/regex-lite/Cargo.toml": '[package]\nname = "regex-lite"\nversion = "0.1.9"\n'
    'edition = "2021"\n\n[lib]\npath = "src/lib.rs"\n',
    "stub/regex-lite/src/lib.rs": """//! regex-lite's API as the core uses it, refusing every pattern.
#[derive(Clone, Debug)]
pub struct Regex;
#[derive(Clone, Debug)]
pub struct Error;
impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("refused")
    }
}
impl Regex {
    pub fn new(_pattern: &str) -> Result<Regex, Error> {
        Err(Error)
    }
    pub fn is_match(&self, haystack: &str) -> bool {
        std::hint::black_box(haystack).is_empty()
    }
}
""",
}
NO_REGEX = [
    ("Cargo.toml", None, '\n[patch.crates-io]\nregex-lite = { path = "stub/regex-lite" }\n'),
]
NO_PROGRESSIVE = [
    ("filter/core/src/reader.rs", 'guards: root.list("guards", guard)?,', "guards: Vec::new(),"),
    ("filter/core/src/reader.rs",
     'ramp: match f.get("ramp") {\n'
     '            None | Some(Value::Null) => None,\n'
     '            Some(r) => Some(ramp(r, f.path_of("ramp"))?),\n'
     '        },',
     "ramp: None,"),
    ("filter/core/src/compile.rs", "let guards = c.guards(config);", "let guards = Vec::new();"),
    ("filter/wasm/src/lib.rs",
     "    fn on_tick(&mut self) {\n",
     "    #[allow(unreachable_code)]\n    fn on_tick(&mut self) {\n        return;\n"),
    ("filter/wasm/src/lib.rs",
     "    fn on_http_call_response(\n",
     "    #[allow(unreachable_code, unused_variables)]\n    fn on_http_call_response(\n"),
    ("filter/wasm/src/lib.rs",
     "        let (Some(query), Some(vm)) = (self.fleet_calls.remove(&token_id), &self.vm) else {",
     "        return;\n"
     "        let (Some(query), Some(vm)) = (self.fleet_calls.remove(&token_id), &self.vm) else {"),
]
VARIANTS = {
    "no-regex": (NO_REGEX, REGEX_STUB),
    "routing-only": (NO_REGEX + NO_PROGRESSIVE, REGEX_STUB),
}


def edit(tree, path, old, new):
    full = os.path.join(tree, path)
    text = open(full).read()
    if old is None:
        text += new
    else:
        if text.count(old) != 1:
            sys.exit(f"variants: {path}: the text to cut is not there exactly once "
                     f"({text.count(old)} times): {old.splitlines()[0]!r}")
        text = text.replace(old, new)
    open(full, "w").write(text)


def build(name, edits, files):
    tree = os.path.join(WORK, f"src-{name}")
    shutil.rmtree(tree, ignore_errors=True)
    os.makedirs(tree)
    archive = subprocess.run(["git", "-C", ROOT, "archive", "HEAD"], check=True,
                             stdout=subprocess.PIPE).stdout
    subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
    for path, text in files.items():
        os.makedirs(os.path.dirname(os.path.join(tree, path)), exist_ok=True)
        open(os.path.join(tree, path), "w").write(text)
    for path, old, new in edits:
        edit(tree, path, old, new)
    out = os.path.join(WORK, f"{name}.wasm")
    # Each variant's own target directory: the workspace's stays the shipped module's.
    env = dict(os.environ, WASM_FALLBACK_TARGET_DIR=os.path.join(WORK, "cargo", name),
               CARGO_TARGET_DIR=os.path.join(WORK, "cargo", name))
    subprocess.run([os.path.join(tree, "scripts", "build-wasm.sh"), "subset-router-wasm", out],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    return out


def main():
    built = {name: build(name, edits, files) for name, (edits, files) in VARIANTS.items()}
    for name, path in built.items():
        print(f"{name}: {os.path.getsize(path):,} bytes  {path}")
    if "--build-only" in sys.argv[1:]:
        return
    extras = []
    labels = []
    for i, (name, path) in enumerate(built.items()):
        label = f"B{'xyz'[i]}"
        labels.append(label)
        extras += ["--extra", f"{label}=B:{path}"]
    env = dict(os.environ, MEM_CONFIGS=",".join(["C", "W", "B"] + labels),
               MEM_WORKERS=os.environ.get("MEM_WORKERS", "1"), NO_PLOT="1", NO_ECDS="1",
               OUT=os.path.join(WORK, "results"))
    subprocess.run([os.path.join(ROOT, "bench", "run.sh"), "--memory-only", *extras],
                   env=env, check=True)


if __name__ == "__main__":
    main()
