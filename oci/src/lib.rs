//! `dist/subset_router.wasm` as the two OCI image layouts Istio's and Envoy Gateway's Wasm image
//! fetchers accept, built without Docker and byte-for-byte reproducible.
//!
//! The fetchers (istio/istio `pkg/wasm/imagefetcher.go`, envoyproxy/gateway
//! `internal/wasm/imagefetcher.go`, the same code) read an image through go-containerregistry,
//! whose `img.Layers()` lists `manifest.layers` only (never the config), and accept:
//!
//! * **compat** (`extractOCIStandardImage`): the *last* layer has media type
//!   `application/vnd.oci.image.layer.v1.tar+gzip`; it is gunzipped and untarred and the first
//!   entry whose base name is `plugin.wasm` is the module. [`compat`] builds exactly one such
//!   layer holding exactly one regular file, `plugin.wasm`, under an ordinary image config
//!   (`application/vnd.oci.image.config.v1+json`, `rootfs.diff_ids` = the tar's sha256).
//! * **oci** variant (`extractOCIArtifactImage`, solo-io/wasm `spec/spec.md`): *exactly two*
//!   layers, one of them `application/vnd.module.wasm.content.layer.v1+wasm` holding the raw
//!   module. [`artifact`] builds the spec's pair, the runtime config
//!   (`application/vnd.module.wasm.config.v1+json`) first and the module second, and also uses
//!   that runtime config as the manifest's config blob. A manifest whose only layer is the wasm
//!   one (with or without a wasm config as `config`) fails both parsers: "number of layers must
//!   be 2 but got 1" (higress#4528, engineerd/wasm-to-oci#45).
//!
//! Determinism: JSON with sorted keys and no whitespace, a ustar entry with mode 0644, uid/gid 0,
//! no owner names and mtime 0, a gzip member without file name or mtime (OS byte 255), no
//! `created` timestamps, and nothing from the build host. The tag lives only in `index.json`
//! (`org.opencontainers.image.ref.name`), so the manifest digests depend on the module alone.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const IMAGE_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const TAR_GZIP_LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.module.wasm.config.v1+json";
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const TITLE: &str = "org.opencontainers.image.title";
/// The file the compat layer holds (solo-io/wasm `spec/spec-compat.md`).
pub const PLUGIN_FILE: &str = "plugin.wasm";
/// Platform of the compat image config: the module's target, wasm32-wasip1 (nothing reads it;
/// a constant keeps the bytes independent of the build host).
pub const COMPAT_OS: &str = "wasip1";
pub const COMPAT_ARCH: &str = "wasm";

/// Descriptive labels/annotations carried by both images (no version, date or revision:
/// those would change the digests without changing the module).
fn metadata() -> Value {
    json!({
        TITLE: "subset-router",
        "org.opencontainers.image.description":
            "proxy-wasm HTTP filter: debug-header rules, weighted and sticky subset selection",
        "org.opencontainers.image.licenses": "Apache-2.0",
    })
}

/// One OCI image layout: the manifest, the blobs it references, and `index.json` naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// "artifact" or "compat".
    pub kind: &'static str,
    pub manifest: Vec<u8>,
    /// Config and layer blobs (each once, even when referenced twice).
    pub blobs: Vec<Vec<u8>>,
    pub index: Vec<u8>,
}

impl Layout {
    /// `sha256:<hex>` of the manifest: the image digest registries, Istio and Envoy Gateway see.
    pub fn manifest_digest(&self) -> String {
        digest(&self.manifest)
    }

    /// Writes the layout to `dir`, replacing whatever was there (built next to it, then renamed).
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        let parent = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::create_dir_all(parent)?;
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("layout");
        let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        let blob_dir = tmp.join("blobs").join("sha256");
        fs::create_dir_all(&blob_dir)?;
        write_file(
            &tmp.join("oci-layout"),
            &canonical_json(&json!({"imageLayoutVersion": "1.0.0"})),
        )?;
        write_file(&tmp.join("index.json"), &self.index)?;
        for blob in self.blobs.iter().chain(std::iter::once(&self.manifest)) {
            write_file(&blob_dir.join(sha256_hex(blob)), blob)?;
        }
        if dir.exists() {
            fs::remove_dir_all(dir)?;
        }
        fs::rename(&tmp, dir)
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `sha256:<hex>`.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

fn descriptor(media_type: &str, bytes: &[u8], annotations: Option<Value>) -> Value {
    let mut d = json!({"mediaType": media_type, "digest": digest(bytes), "size": bytes.len()});
    if let Some(a) = annotations {
        d["annotations"] = a;
    }
    d
}

/// JSON with object keys sorted (byte order) and no insignificant whitespace, whatever
/// serde_json's map type is (its `preserve_order` feature may be on elsewhere in a build).
pub fn canonical_json(v: &Value) -> Vec<u8> {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out.into_bytes()
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn index(manifest: &[u8], tag: &str) -> Vec<u8> {
    canonical_json(&json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [descriptor(MANIFEST_MEDIA_TYPE, manifest, Some(json!({REF_NAME: tag})))],
    }))
}

/// A tag as OCI/Docker allow it: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn check_tag(tag: &str) -> Result<(), String> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && !tag.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{tag:?} is not a valid image tag ([A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})"
        ))
    }
}

/// The module's `proxy_abi_version_*` exports (the proxy-wasm ABI it speaks), sorted. An input
/// that is not a WebAssembly binary module, or exports none, is refused.
pub fn proxy_abi_versions(wasm: &[u8]) -> Result<Vec<String>, String> {
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" || wasm[4..8] != [1, 0, 0, 0] {
        return Err("not a WebAssembly binary module (magic \\0asm, version 1)".into());
    }
    let truncated = || "truncated WebAssembly module".to_string();
    let mut pos = 8;
    let mut found = Vec::new();
    while pos < wasm.len() {
        let id = wasm[pos];
        pos += 1;
        let size = leb_u32(wasm, &mut pos).ok_or_else(truncated)? as usize;
        let end = pos
            .checked_add(size)
            .filter(|&e| e <= wasm.len())
            .ok_or_else(truncated)?;
        if id == 7 {
            let sec = &wasm[..end];
            let mut p = pos;
            let count = leb_u32(sec, &mut p).ok_or_else(truncated)?;
            for _ in 0..count {
                let len = leb_u32(sec, &mut p).ok_or_else(truncated)? as usize;
                let name_end = p
                    .checked_add(len)
                    .filter(|&e| e <= end)
                    .ok_or_else(truncated)?;
                let name = std::str::from_utf8(&sec[p..name_end])
                    .map_err(|_| "export name is not UTF-8")?;
                if name.starts_with("proxy_abi_version_") {
                    found.push(name.to_string());
                }
                p = name_end + 1; // export kind
                leb_u32(sec, &mut p).ok_or_else(truncated)?; // index
            }
        }
        pos = end;
    }
    if found.is_empty() {
        return Err(
            "the module exports no proxy_abi_version_* function: not a proxy-wasm module".into(),
        );
    }
    found.sort();
    Ok(found)
}

fn leb_u32(b: &[u8], pos: &mut usize) -> Option<u32> {
    let mut result: u32 = 0;
    for shift in (0..35).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        result |= u32::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(result);
        }
    }
    None
}

/// The runtime config of the Wasm OCI artifact (solo-io/wasm `spec/spec.md`: `type`,
/// `abiVersions`, `config`).
pub fn wasm_runtime_config(wasm: &[u8]) -> Result<Vec<u8>, String> {
    let abi = proxy_abi_versions(wasm)?;
    Ok(canonical_json(
        &json!({"type": "envoy_proxy", "abiVersions": abi, "config": {}}),
    ))
}

/// The Wasm OCI artifact ("oci" variant): config = the runtime config; layers = [runtime
/// config, module].
pub fn artifact(wasm: &[u8], tag: &str) -> Result<Layout, String> {
    check_tag(tag)?;
    let config = wasm_runtime_config(wasm)?;
    let manifest = canonical_json(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": descriptor(WASM_CONFIG_MEDIA_TYPE, &config, None),
        "layers": [
            descriptor(WASM_CONFIG_MEDIA_TYPE, &config, Some(json!({TITLE: "runtime-config.json"}))),
            descriptor(WASM_LAYER_MEDIA_TYPE, wasm, Some(json!({TITLE: PLUGIN_FILE}))),
        ],
        "annotations": metadata(),
    }));
    let index = index(&manifest, tag);
    Ok(Layout {
        kind: "artifact",
        manifest,
        blobs: vec![config, wasm.to_vec()],
        index,
    })
}

/// A ustar archive holding one regular file, `plugin.wasm`: mode 0644, uid/gid 0, no owner
/// names, mtime 0, then the two zero blocks that end an archive.
pub fn plugin_tar(wasm: &[u8]) -> Vec<u8> {
    let mut header = tar::Header::new_ustar();
    header.set_path(PLUGIN_FILE).expect("a short relative path");
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(wasm.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, wasm).expect("writing to memory");
    builder.into_inner().expect("writing to memory")
}

/// gzip at level 9 with a bare header: no file name, no comment, mtime 0, OS 255 (unknown).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    enc.write_all(data).expect("writing to memory");
    enc.finish().expect("writing to memory")
}

/// Istio's compat image: an image config with `rootfs.diff_ids`, one tar+gzip layer holding
/// `plugin.wasm`.
pub fn compat(wasm: &[u8], tag: &str) -> Result<Layout, String> {
    check_tag(tag)?;
    proxy_abi_versions(wasm)?;
    let tar = plugin_tar(wasm);
    let layer = gzip(&tar);
    let config = canonical_json(&json!({
        "architecture": COMPAT_ARCH,
        "os": COMPAT_OS,
        "config": {"Labels": metadata()},
        "rootfs": {"type": "layers", "diff_ids": [digest(&tar)]},
    }));
    let manifest = canonical_json(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": descriptor(IMAGE_CONFIG_MEDIA_TYPE, &config, None),
        "layers": [descriptor(TAR_GZIP_LAYER_MEDIA_TYPE, &layer, None)],
        "annotations": metadata(),
    }));
    let index = index(&manifest, tag);
    Ok(Layout {
        kind: "compat",
        manifest,
        blobs: vec![config, layer],
        index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A minimal proxy-wasm-shaped module: one type, one function, exporting
    /// `proxy_abi_version_0_2_1`.
    fn tiny_module() -> Vec<u8> {
        let name = b"proxy_abi_version_0_2_1";
        let mut export = vec![1, name.len() as u8];
        export.extend_from_slice(name);
        export.extend_from_slice(&[0, 0]);
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        m.extend_from_slice(&[1, 4, 1, 0x60, 0, 0]); // type section: () -> ()
        m.extend_from_slice(&[3, 2, 1, 0]); // function section
        m.push(7);
        m.push(export.len() as u8);
        m.extend_from_slice(&export);
        m.extend_from_slice(&[10, 4, 1, 2, 0, 0x0b]); // code section
        m
    }

    fn json(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn reads_the_proxy_abi_and_refuses_other_input() {
        assert_eq!(
            proxy_abi_versions(&tiny_module()).unwrap(),
            ["proxy_abi_version_0_2_1"]
        );
        assert!(proxy_abi_versions(b"not wasm").is_err());
        assert!(proxy_abi_versions(b"\0asm\x01\0\0\0")
            .unwrap_err()
            .contains("no proxy_abi_version"));
        let mut cut = tiny_module();
        cut.truncate(cut.len() - 3);
        assert!(proxy_abi_versions(&cut).is_err());
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v = json!({"b": 1, "a": {"d": [true, null], "c": "x\"y"}});
        assert_eq!(
            canonical_json(&v),
            br#"{"a":{"c":"x\"y","d":[true,null]},"b":1}"#
        );
    }

    #[test]
    fn tags() {
        assert!(check_tag("0.1.0").is_ok());
        assert!(check_tag("0.1.0-compat").is_ok());
        for bad in ["", "-x", ".x", "a/b", "a:b", &"x".repeat(129)] {
            assert!(check_tag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn artifact_is_config_then_module_with_the_wasm_config_as_config() {
        let wasm = tiny_module();
        let a = artifact(&wasm, "0.1.0").unwrap();
        let m = json(&a.manifest);
        assert_eq!(m["mediaType"], MANIFEST_MEDIA_TYPE);
        assert_eq!(m["config"]["mediaType"], WASM_CONFIG_MEDIA_TYPE);
        let layers = m["layers"].as_array().unwrap();
        assert_eq!(
            layers.len(),
            2,
            "the fetchers' oci variant needs exactly two layers"
        );
        assert_eq!(layers[0]["mediaType"], WASM_CONFIG_MEDIA_TYPE);
        assert_eq!(layers[0]["digest"], m["config"]["digest"]);
        assert_eq!(layers[1]["mediaType"], WASM_LAYER_MEDIA_TYPE);
        assert_eq!(layers[1]["digest"], digest(&wasm));
        assert_eq!(layers[1]["size"], wasm.len());
        let config = json(&a.blobs[0]);
        assert_eq!(config["type"], "envoy_proxy");
        assert_eq!(config["abiVersions"], json!(["proxy_abi_version_0_2_1"]));
        let idx = json(&a.index);
        assert_eq!(idx["manifests"][0]["digest"], a.manifest_digest());
        assert_eq!(idx["manifests"][0]["size"], a.manifest.len());
        assert_eq!(idx["manifests"][0]["annotations"][REF_NAME], "0.1.0");
    }

    #[test]
    fn compat_layer_is_one_plugin_wasm_with_fixed_metadata() {
        let wasm = tiny_module();
        let c = compat(&wasm, "0.1.0").unwrap();
        let m = json(&c.manifest);
        assert_eq!(m["config"]["mediaType"], IMAGE_CONFIG_MEDIA_TYPE);
        let layers = m["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0]["mediaType"], TAR_GZIP_LAYER_MEDIA_TYPE);
        let gz = &c.blobs[1];
        assert_eq!(layers[0]["digest"], digest(gz));
        // gzip: magic, deflate, no flags (no name/comment/extra), mtime 0, XFL 2 (level 9), OS 255.
        assert_eq!(gz[..10], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 0xff]);
        let mut tar_bytes = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut tar_bytes)
            .unwrap();
        assert_eq!(tar_bytes, plugin_tar(&wasm));
        let config = json(&c.blobs[0]);
        assert_eq!(config["rootfs"]["diff_ids"], json!([digest(&tar_bytes)]));
        assert_eq!(config["os"], COMPAT_OS);
        let mut archive = tar::Archive::new(&tar_bytes[..]);
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut e = entry.unwrap();
            let h = e.header().clone();
            assert_eq!(h.entry_type(), tar::EntryType::Regular);
            assert_eq!(
                (
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    h.mtime().unwrap()
                ),
                (0o644, 0, 0, 0)
            );
            assert_eq!(
                (h.username().unwrap(), h.groupname().unwrap()),
                (Some(""), Some(""))
            );
            let mut body = Vec::new();
            e.read_to_end(&mut body).unwrap();
            seen.push((h.path().unwrap().to_str().unwrap().to_string(), body));
        }
        assert_eq!(seen.len(), 1, "exactly one entry");
        let (name, got) = seen.pop().unwrap();
        assert_eq!(name, PLUGIN_FILE);
        assert_eq!(got, wasm);
    }

    #[test]
    fn same_input_same_bytes_and_the_tag_only_touches_the_index() {
        let wasm = tiny_module();
        assert_eq!(
            artifact(&wasm, "0.1.0").unwrap(),
            artifact(&wasm, "0.1.0").unwrap()
        );
        assert_eq!(
            compat(&wasm, "0.1.0").unwrap(),
            compat(&wasm, "0.1.0").unwrap()
        );
        let (a, b) = (
            artifact(&wasm, "0.1.0").unwrap(),
            artifact(&wasm, "9.9.9").unwrap(),
        );
        assert_eq!(a.manifest, b.manifest);
        assert_ne!(a.index, b.index);
    }

    /// Golden digests for the tiny module: a change here (a dependency upgrade altering the gzip
    /// stream, a metadata edit) changes every pinned digest, so it must be deliberate.
    #[test]
    fn golden_digests() {
        let wasm = tiny_module();
        assert_eq!(
            artifact(&wasm, "0.1.0").unwrap().manifest_digest(),
            GOLDEN_ARTIFACT
        );
        assert_eq!(
            compat(&wasm, "0.1.0").unwrap().manifest_digest(),
            GOLDEN_COMPAT
        );
    }
    const GOLDEN_ARTIFACT: &str =
        "sha256:852dab97e34faf40cc8a16cbf756f6170e68d9e0394681c87653ed5b9a261d86";
    const GOLDEN_COMPAT: &str =
        "sha256:c21e7cd5b287d4ad03142891d6f2de0b80a446c91672fef6ae9a9e668b299cdd";

    #[test]
    fn write_replaces_the_layout() {
        let dir = std::env::temp_dir().join(format!("oci-layout-test-{}", std::process::id()));
        let out = dir.join("artifact");
        fs::create_dir_all(out.join("blobs/sha256")).unwrap();
        fs::write(out.join("blobs/sha256/stale"), b"x").unwrap();
        let a = artifact(&tiny_module(), "0.1.0").unwrap();
        a.write(&out).unwrap();
        let mut names: Vec<_> = fs::read_dir(out.join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(
            names.len(),
            3,
            "config, module, manifest; no stale blob: {names:?}"
        );
        assert_eq!(fs::read(out.join("index.json")).unwrap(), a.index);
        assert_eq!(
            fs::read(out.join("oci-layout")).unwrap(),
            br#"{"imageLayoutVersion":"1.0.0"}"#
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
