//! oci-layout: write dist/oci/{artifact,compat} from the built module (scripts/oci.sh, make oci).
//!
//!   oci-layout --wasm dist/subset_router.wasm --out dist/oci --tag 0.1.0
//!              [--native dist/libsubset_router.so --digests examples/oci-digests.json]
//!
//! Prints each layout's reference, manifest digest and sizes. With --digests, also writes that
//! file (wasm_sha256, compat_image_digest, artifact_manifest_digest, native_sha256; the keys
//! tests/manifests/oci_digests.py reads); --native is then required.
//! Last stdout line: the artifact's manifest digest.
use std::path::PathBuf;
use std::process::ExitCode;

use subset_router_oci::{artifact, compat, sha256_hex, Layout};

const USAGE: &str =
    "usage: oci-layout --wasm FILE --out DIR --tag TAG [--native FILE --digests FILE]";

struct Args {
    wasm: PathBuf,
    out: PathBuf,
    tag: String,
    native: Option<PathBuf>,
    digests: Option<PathBuf>,
}

fn parse() -> Result<Args, String> {
    let (mut wasm, mut out, mut tag, mut native, mut digests) = (None, None, None, None, None);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let slot = match flag.as_str() {
            "--wasm" => &mut wasm,
            "--out" => &mut out,
            "--tag" => &mut tag,
            "--native" => &mut native,
            "--digests" => &mut digests,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        };
        *slot = Some(
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?,
        );
    }
    let need =
        |v: Option<String>, name: &str| v.ok_or_else(|| format!("{name} is required\n{USAGE}"));
    let args = Args {
        wasm: need(wasm, "--wasm")?.into(),
        out: need(out, "--out")?.into(),
        tag: need(tag, "--tag")?,
        native: native.map(PathBuf::from),
        digests: digests.map(PathBuf::from),
    };
    if args.digests.is_some() && args.native.is_none() {
        return Err(format!("--digests needs --native (native_sha256)\n{USAGE}"));
    }
    Ok(args)
}

fn read(path: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn report(layout: &Layout, dir: &std::path::Path, tag: &str) {
    let m: serde_json::Value = serde_json::from_slice(&layout.manifest).expect("our own JSON");
    let layers: Vec<String> = m["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| l["size"].to_string())
        .collect();
    println!(
        "{:<9} oci:{}:{tag}  manifest {}  (manifest {} B, config {} B, layers {} B)",
        layout.kind,
        dir.display(),
        layout.manifest_digest(),
        layout.manifest.len(),
        m["config"]["size"],
        layers.join(" + "),
    );
}

fn run() -> Result<(), String> {
    let args = parse()?;
    let wasm = read(&args.wasm)?;
    let what = |e: String| format!("{}: {e}", args.wasm.display());
    let art = artifact(&wasm, &args.tag).map_err(what)?;
    let com = compat(&wasm, &args.tag).map_err(what)?;
    for layout in [&com, &art] {
        let dir = args.out.join(layout.kind);
        layout
            .write(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        report(layout, &dir, &args.tag);
    }
    let wasm_sha256 = sha256_hex(&wasm);
    println!(
        "{:<9} {} ({} bytes)  sha256 {wasm_sha256}",
        "module",
        args.wasm.display(),
        wasm.len()
    );
    if let (Some(path), Some(native)) = (&args.digests, &args.native) {
        let so = read(native)?;
        // Fixed key order (the one tests/manifests/oci_digests.py documents).
        let text = format!(
            "{{\n  \"wasm_sha256\": \"{wasm_sha256}\",\n  \"compat_image_digest\": \"{}\",\n  \
             \"artifact_manifest_digest\": \"{}\",\n  \"native_sha256\": \"{}\"\n}}\n",
            com.manifest_digest(),
            art.manifest_digest(),
            sha256_hex(&so),
        );
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        println!(
            "{:<9} {} (native_sha256 of {})",
            "wrote",
            path.display(),
            native.display()
        );
    }
    println!("{}", art.manifest_digest());
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oci-layout: {e}");
            ExitCode::FAILURE
        }
    }
}
